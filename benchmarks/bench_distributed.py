"""Data-parallel (DDP) vs sharded (FSDP2) pretraining speed, through ``pretrain`` under ``accelerate launch``;
figures go to docs/distributed.md.

Run from the repository root: ``python benchmarks/bench_distributed.py [--quick]``. It launches itself as workers
(``accelerate launch``) and prints one summary:

* without a GPU: 2 processes on CPU (gloo), DDP and FSDP alternately (``--rounds``), a small GPT; prints the
  median optimizer-step time of each and the ratio FSDP/DDP. FSDP gathers every block's weights in forward and
  backward and reduce-scatters gradients, so on CPU, where the model fits anyway, it is expected to be slower;
* with GPUs: (1) one GPU, GPT-2 124M (vocabulary padded to 50,304), context 1024, bf16, ``torch.compile``,
  SDPA attention: training tokens/s and MFU; (2) the same model under DDP and under FSDP2 on every GPU present:
  tokens/s summed over GPUs and MFU per GPU.

MFU = tokens/s x (6 x parameters + 12 x layers x width x context) / peak FLOP/s (PaLM, appendix B);
``--peak-tflops`` is the bf16 dense peak per GPU (H100/H200 SXM: 989). Timing skips the first half of the steps
(compilation, warm-up). ``--quick``: a tiny model and few steps, to check the script runs (tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine_info import cpu_model

REPO_ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = cpu_model()
    gpus = torch.cuda.device_count()
    gpu = f", {gpus} x {torch.cuda.get_device_name()}" if gpus else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


# ---------------------------------------------------------------- the worker (one process of a launch)


def worker(args: argparse.Namespace) -> None:
    """Train ``args.steps`` steps with ``pretrain`` on random tokens; rank 0 writes timings to ``args.result``."""
    from scratch_gpt import ScratchGPTConfig, ScratchGPTForCausalLM
    from scratch_gpt.data.sliding_window import GPTDatasetV1
    from scratch_gpt.training.launch import end_process_group, exit_process
    from scratch_gpt.training.pretrain import PretrainConfig, pretrain

    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ctx, bs, steps = args.context_length, args.batch_size, args.steps
    if args.model == "gpt2-small":
        config = ScratchGPTConfig.from_preset("gpt2-small", vocab_size=50304, n_positions=ctx, dropout=0.0)
    else:
        config = ScratchGPTConfig(vocab_size=args.vocab_size, n_positions=ctx, n_embd=args.n_embd,
                                  n_layer=args.n_layer, n_head=args.n_head, dropout=0.0)  # fmt: skip
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (bs * world * ctx * (steps + 2) + 1,), generator=g).tolist()
    data = GPTDatasetV1(ids, max_length=ctx, stride=ctx)
    times: list[float] = []

    def on_step(step: int, loss: float) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    cfg = PretrainConfig(
        output_dir=tempfile.mkdtemp(prefix="bench_distributed_"),
        max_steps=steps,
        batch_size=bs,
        eval_interval=10**9,
        eval_batches=1,
        save_interval=None,
        sample_prompt=None,
        mixed_precision="bf16" if torch.cuda.is_available() else "no",
        compile=torch.cuda.is_available() and not args.no_compile,
        show_progress=False,
        shuffle=False,
    )
    pretrain(model, data, None, cfg, on_step=on_step)
    if int(os.environ.get("RANK", "0")) == 0:
        warm = times[len(times) // 2 :]
        steps_s = [b - a for a, b in zip(warm, warm[1:], strict=False)]
        step_s = statistics.median(steps_s)
        tokens_per_step = bs * world * ctx
        flops_per_token = 6 * n_params + 12 * config.n_layer * config.n_embd * ctx
        tok_s = tokens_per_step / step_s
        result = {"step_s": step_s, "tokens_per_s": tok_s, "params": n_params, "world": world,
                  "mfu_per_gpu": tok_s * flops_per_token / (args.peak_tflops * 1e12 * world)}  # fmt: skip
        Path(args.result).write_text(json.dumps(result))
        shutil.rmtree(cfg.output_dir, ignore_errors=True)
    if end_process_group():
        exit_process(0)  # without Python's shutdown, where gloo can abort (training/launch.py)


# ---------------------------------------------------------------- the driver


def _launch(mode: str, processes: int, args: argparse.Namespace, port: int) -> dict:
    """Run this script as ``processes`` workers under ``accelerate launch`` (``mode``: single, ddp or fsdp)."""
    result = Path(tempfile.mkdtemp(prefix="bench_distributed_")) / "result.json"
    launcher = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    worker_args = [str(Path(__file__).resolve()), "--worker", "--result", str(result), "--model", args.model,
                   "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                   "--context-length", str(args.context_length), "--n-layer", str(args.n_layer),
                   "--n-embd", str(args.n_embd), "--n-head", str(args.n_head), "--vocab-size", str(args.vocab_size),
                   "--peak-tflops", str(args.peak_tflops)] + (["--no-compile"] if args.no_compile else [])  # fmt: skip
    if processes == 1:
        cmd = [sys.executable, *worker_args]
    else:
        flags = ["--use_fsdp", "--fsdp_version", "2"] if mode == "fsdp" else ["--multi_gpu"]
        cmd = [launcher, "launch", *flags, "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
               *worker_args]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FSDP_"))}
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run on {processes} processes failed:\n{proc.stderr[-3000:]}")
    return json.loads(result.read_text())


def cpu_comparison(args: argparse.Namespace) -> dict:
    ddp, fsdp = [], []
    for r in range(args.rounds):  # alternate, so a change in machine load hits both
        ddp.append(_launch("ddp", 2, args, 29611 + 2 * r)["step_s"])
        fsdp.append(_launch("fsdp", 2, args, 29612 + 2 * r)["step_s"])
    d, f = statistics.median(ddp), statistics.median(fsdp)
    print(f"2 processes on CPU (gloo), {args.n_layer} layers x {args.n_embd}, batch {args.batch_size} x "
          f"{args.context_length} tokens per process")  # fmt: skip
    print(f"  DDP  median step {d * 1000:8.1f} ms   (rounds: {', '.join(f'{x * 1000:.1f}' for x in ddp)})")
    print(f"  FSDP median step {f * 1000:8.1f} ms   (rounds: {', '.join(f'{x * 1000:.1f}' for x in fsdp)})")
    print(f"  step-time ratio FSDP/DDP = {f / d:.2f}")
    return {"mode": "cpu", "ddp_step_s": ddp, "fsdp_step_s": fsdp, "ratio_fsdp_over_ddp": f / d}


def gpu_runs(args: argparse.Namespace) -> dict:
    gpus = torch.cuda.device_count()
    summary = {"mode": "gpu", "gpus": gpus}
    one = _launch("single", 1, args, 29621)
    print(f"1 GPU, {args.model} ({one['params'] / 1e6:.0f}M), bf16 + torch.compile + SDPA, batch "
          f"{args.batch_size} x {args.context_length}: {one['tokens_per_s']:,.0f} tokens/s, MFU "
          f"{one['mfu_per_gpu']:.1%} (peak {args.peak_tflops:g} TFLOP/s)")  # fmt: skip
    summary["single"] = one
    if gpus > 1:
        for mode, port in (("ddp", 29622), ("fsdp", 29623)):
            res = _launch(mode, gpus, args, port)
            print(
                f"{gpus} GPUs, {mode.upper():4}: {res['tokens_per_s']:,.0f} tokens/s in all, MFU "
                f"{res['mfu_per_gpu']:.1%} per GPU, scaling {res['tokens_per_s'] / one['tokens_per_s'] / gpus:.0%}"
            )
            summary[mode] = res
    else:
        print("only one GPU: no DDP/FSDP throughput to measure")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model and few steps (smoke test)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=["gpt2-small", "custom"], default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--context-length", type=int, default=None)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=256)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="bf16 dense peak per GPU (H100: 989)"
    )
    parser.add_argument("--json", help="also write the summary to this file")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    if args.model is None:
        args.model = "gpt2-small" if gpu and not args.quick else "custom"
    if args.quick:
        args.n_layer, args.n_embd, args.n_head, args.vocab_size = 2, 64, 4, 256
        args.rounds = 1
    defaults = {"steps": 6 if args.quick else (40 if gpu else 20), "batch_size": 2 if args.quick else (16 if gpu else 4),
                "context_length": 32 if args.quick else (1024 if gpu else 128)}  # fmt: skip
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.worker:
        worker(args)
        return
    print(f"bench_distributed on {machine()}")
    summary = gpu_runs(args) if gpu else cpu_comparison(args)
    summary["machine"] = machine()
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
