"""Benchmark scratch_gpt's model against Hugging Face's ``GPT2LMHeadModel``: training step, memory, generation.

Both models get the same configuration and the *same weights* (a random GPT-2 is built first and converted
with ``load_gpt2``), the outputs are checked to agree, and then the peers run side by side in one process, alternating
(the order rotates every round), so that noise from other processes hits both alike. Each round gives a ratio;
the median ratio is printed.

1. Training step (forward + backward + AdamW) at 4 layers / 4 heads / 256 wide / T=256 / B=8, and at the GPT-2
   124M config with B=1 / T=512: time ratio ours / HF (target <= 0.90) and peak memory. Peak memory on CPU is the
   growth of the resident set (``VmHWM`` in ``/proc/self/status``, reset through ``/proc/self/clear_refs``) during
   two training steps after a warm-up step, measured in a fresh subprocess per model. The subprocess runs with
   ``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc hands every tensor-sized block back to the system when it is
   freed; the resident set then follows the live allocations instead of malloc's cache. Parameters and AdamW
   state are the same for both models and are excluded (they exist before the measured steps).
2. Generation: 124M random init, 4-token prompt, 200 new tokens, B=1, greedy, KV cache: ours via
   ``model.generate()`` and via the book-style ``scratch_gpt.generation.generate`` (on the core ``GPTModel``), vs
   HF's ``generate()``, in tokens/s (target >= 1.2x HF); plus the book-style loop without the cache, for the
   cache speedup (the book reports 5.3x on a laptop CPU).
3. ``--gpu``: when CUDA is available, the 124M model in bf16 with ``torch.compile`` and SDPA: training tokens/s
   and MFU (model FLOPs utilization), and generation tokens/s.

Run from the repository root: ``python benchmarks/bench_model.py`` (``--quick`` for a fast sanity run,
``--profile`` for torch.profiler tables of one training step and one generation of each model).

Not here: tokenizer or data-loading speed (other benchmarks), multi-GPU, numbers for sampling strategies.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

from scratch_gpt import ScratchGPTForCausalLM, load_gpt2
from scratch_gpt.generation import generate as book_generate
from scratch_gpt.kernels import use_fast_kernels
from scratch_gpt.model import GPTModel


@dataclass
class Case:
    """One model size and input shape."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    batch_size: int
    num_tokens: int
    n_positions: int = 1024
    vocab_size: int = 50257


TRAIN_CASES = {
    "small": Case("4 layers / 4 heads / 256 wide, B=8 T=256", 4, 4, 256, 8, 256, n_positions=256),
    "124m": Case("GPT-2 124M, B=1 T=512", 12, 12, 768, 1, 512),
}
QUICK_TRAIN_CASES = {
    "small": Case("quick: 2 layers / 2 heads / 64 wide, B=2 T=32", 2, 2, 64, 2, 32, 64, 1000)
}
GEN_CASE = Case("GPT-2 124M, B=1, 4-token prompt", 12, 12, 768, 1, 4)
QUICK_GEN_CASE = Case("quick: 2 layers / 64 wide, B=1, 4-token prompt", 2, 2, 64, 1, 4, 256, 1000)


# ----------------------------------------------------------------------------------------------- the model pair
def build_pair(case: Case, seed: int = 0) -> tuple[ScratchGPTForCausalLM, GPT2LMHeadModel]:
    """A random ``GPT2LMHeadModel`` (sdpa, no dropout, no eos) and ``ScratchGPTForCausalLM`` with its weights."""
    torch.manual_seed(seed)
    sizes = dict(
        vocab_size=case.vocab_size, n_positions=case.n_positions, n_embd=case.n_embd, n_layer=case.n_layer
    )
    hf_config = GPT2Config(
        **sizes, n_head=case.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    hf = GPT2LMHeadModel(hf_config).eval()
    hf.set_attn_implementation("sdpa")
    hf.loss_type = "ForCausalLM"  # the loss GPT2LMHeadModel uses anyway; set to silence a warning
    ours = use_fast_kernels(load_gpt2(hf))  # the package's converter (a copy) on its fast CPU kernels
    ours.set_attn_implementation("sdpa")
    return ours.eval(), hf


def core_model(ours: ScratchGPTForCausalLM) -> GPTModel:
    """The plain book-style ``GPTModel`` (with ``out_head``) sharing ``ours``' weights, on the same fast kernels."""
    core = GPTModel(ours.config, with_lm_head=True)
    state = {
        name.removeprefix("transformer.gpt."): t for name, t in ours.state_dict().items() if "gpt." in name
    }
    core.load_state_dict({**state, "out_head.weight": ours.lm_head.weight})
    return use_fast_kernels(core).eval()


def random_ids(case: Case, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, case.vocab_size, (case.batch_size, case.num_tokens), generator=generator)


def check_same_logits(ours: ScratchGPTForCausalLM, hf: GPT2LMHeadModel, ids: torch.Tensor) -> float:
    """Max |logits difference| between the two models on ``ids`` (raises if they disagree beyond 1e-4)."""
    with torch.no_grad():
        diff = (ours(input_ids=ids).logits - hf(input_ids=ids).logits).abs().max().item()
    if diff > 1e-4:
        raise RuntimeError(f"the models disagree (max logit diff {diff:.2e}): the weight mapping is wrong")
    return diff


# ----------------------------------------------------------------------------------------------- timing helpers
def time_alternating(
    peers: dict[str, Callable[[], object]], rounds: int, warmup: int = 1, cpu_times: dict | None = None
) -> dict[str, list[float]]:
    """Run every peer once per round, rotating the order each round; return the wall seconds of each run per peer.

    If ``cpu_times`` is a dict, it receives the process CPU seconds of each run (all threads), which other
    processes on the machine disturb much less than the wall time.
    """
    names = list(peers)
    for _ in range(warmup):
        for name in names:
            peers[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            peers[name]()
            times[name].append(time.perf_counter() - start)
            if cpu_times is not None:
                cpu_times.setdefault(name, []).append(time.process_time() - start_cpu)
    return times


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of ``numerator[r] / denominator[r]`` (the runs of one round are close in time)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def ratio_range(numerator: list[float], denominator: list[float]) -> str:
    """The lowest and highest per-round ratio, e.g. ``"0.91-1.05"``: how much the machine's noise moved them."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def make_train_step(model: torch.nn.Module, ids: torch.Tensor) -> Callable[[], float]:
    """One training step, the same for both models: LM loss on ``ids``, backward, AdamW.

    AdamW is torch's fused kernel, what both ``Trainer`` (its default ``adamw_torch_fused``) and our ``pretrain``
    loop use."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


# ----------------------------------------------------------------------------------------------- memory (subprocess)
def _rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", open("/proc/self/status").read()).group(1))


def memory_child(which: str, case: Case) -> dict[str, float]:
    """(Runs in a fresh process.) Peak RSS growth over two training steps, after one warm-up step."""
    ours, hf = build_pair(case)
    model = ours if which == "ours" else hf
    del ours, hf
    step = make_train_step(model, random_ids(case))
    step()  # creates gradients and the AdamW state, which then stay allocated
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (the peak resident set) to the current resident set
    before = _rss_kib("VmRSS")
    step()
    step()
    return {"steady_mib": before / 1024, "step_peak_growth_mib": (_rss_kib("VmHWM") - before) / 1024}


def measure_memory(which: str, case_key: str, quick: bool, threads: int) -> dict[str, float] | None:
    """Run ``memory_child`` in a subprocess; None where /proc is not available (not Linux)."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    cmd = [sys.executable, __file__, "--memory-child", which, "--case", case_key, "--threads", str(threads)]
    out = subprocess.run(
        cmd + (["--quick"] if quick else []), env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------- the benchmarks
def bench_training(case_key: str, case: Case, rounds: int, quick: bool, threads: int) -> dict:
    print(f"\n== Training step (forward + backward + AdamW): {case.name} ==")
    ours, hf = build_pair(case)
    ids = random_ids(case)
    print(f"same weights: max |logit diff| = {check_same_logits(ours, hf, ids):.1e}")
    peers = {"ours": make_train_step(ours, ids), "hf": make_train_step(hf, ids)}
    first_losses = {name: step() for name, step in peers.items()}
    print(f"first-step loss: ours {first_losses['ours']:.6f}, hf {first_losses['hf']:.6f}")
    cpu: dict[str, list[float]] = {}
    times = time_alternating(peers, rounds, warmup=1, cpu_times=cpu)
    ratio = median_ratio(times["ours"], times["hf"])
    del ours, hf, peers
    memory = {name: measure_memory(name, case_key, quick, threads) for name in ("ours", "hf")}
    result = {"case": case.name, "ours_s": statistics.median(times["ours"]), "hf_s": statistics.median(times["hf"]),
              "ratio": ratio, "cpu_ratio": median_ratio(cpu["ours"], cpu["hf"]), "rounds": rounds,
              "ratio_range": ratio_range(times["ours"], times["hf"]),
              "memory": memory}  # fmt: skip
    print(f"median step: ours {result['ours_s'] * 1e3:.0f} ms, hf {result['hf_s'] * 1e3:.0f} ms over {rounds} rounds; "
          f"median ratio ours/hf = {ratio:.3f} (rounds {result['ratio_range']}; target <= 0.90); "
          f"CPU-time ratio {result['cpu_ratio']:.3f}")  # fmt: skip
    if memory["ours"] is not None:
        for name, m in memory.items():
            print(f"peak RSS growth during a step, {name}: {m['step_peak_growth_mib']:.0f} MiB "
                  f"(above {m['steady_mib']:.0f} MiB of weights, AdamW state and runtime)")  # fmt: skip
    return result


def bench_generation(case: Case, new_tokens: int, rounds: int, no_cache_rounds: int) -> dict:
    print(f"\n== Generation: {case.name}, {new_tokens} new tokens, greedy ==")
    ours, hf = build_pair(case)
    core = core_model(ours)
    prompt = random_ids(case, seed=1)
    mask = torch.ones_like(prompt)
    print(f"same weights: max |logit diff| = {check_same_logits(ours, hf, prompt):.1e}")
    kwargs = dict(attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    outputs: dict[str, torch.Tensor] = {}

    def run(name: str, fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            outputs[name] = fn()
            return outputs[name]

        return call

    peers = {
        "ours generate()": run("ours generate()", lambda: ours.generate(prompt, **kwargs)),
        "ours book generate": run("ours book generate", lambda: book_generate(core, prompt, new_tokens)),
        "hf generate()": run("hf generate()", lambda: hf.generate(prompt, **kwargs)),
    }
    cpu: dict[str, list[float]] = {}
    with torch.no_grad():
        times = time_alternating(peers, rounds, warmup=1, cpu_times=cpu)
    for name, ids in outputs.items():
        if ids.shape[1] != prompt.shape[1] + new_tokens or not torch.equal(ids, outputs["hf generate()"]):
            raise RuntimeError(
                f"{name} generated different tokens than HF's generate(); the comparison is invalid"
            )
    no_cache = time_alternating(
        {"book no cache": lambda: book_generate(core, prompt, new_tokens, use_cache=False),
         "book cache": peers["ours book generate"]},
        no_cache_rounds, warmup=0,
    )  # fmt: skip
    result = {"case": case.name, "new_tokens": new_tokens, "rounds": rounds}
    for name, seconds in times.items():
        result[f"{name} tok/s"] = new_tokens / statistics.median(seconds)
        speedup = median_ratio(times["hf generate()"], seconds)
        result[f"{name} vs hf"] = speedup
        result[f"{name} vs hf (cpu time)"] = median_ratio(cpu["hf generate()"], cpu[name])
        result[f"{name} vs hf range"] = ratio_range(times["hf generate()"], seconds)
        print(f"{name:20s} {result[f'{name} tok/s']:7.1f} tokens/s   median speed ratio vs hf {speedup:.3f} "
              f"(rounds {result[f'{name} vs hf range']}; CPU time: {result[f'{name} vs hf (cpu time)']:.3f})")  # fmt: skip
    result["book no cache tok/s"] = new_tokens / statistics.median(no_cache["book no cache"])
    result["cache speedup"] = median_ratio(no_cache["book no cache"], no_cache["book cache"])
    print(f"{'book no cache':20s} {result['book no cache tok/s']:7.1f} tokens/s   "
          f"cache speedup {result['cache speedup']:.2f}x over {no_cache_rounds} round(s) (book: 5.3x)")  # fmt: skip
    print("(identical greedy tokens from all three checked; target ours >= 1.2x hf)")
    return result


def bench_gpu(case: Case, steps: int, device: str = "cuda", compile_model: bool = True) -> dict:
    """Training tokens/s and MFU in bf16 with torch.compile and SDPA, and generation tokens/s, on ``device``."""
    print(f"\n== GPU ({device}): {case.name}, bf16 autocast, torch.compile={compile_model}, SDPA ==")
    torch.backends.cuda.matmul.allow_tf32 = True
    ours, hf = build_pair(case)
    ids = random_ids(case).to(device)
    peak = gpu_peak_flops(device)
    # FLOPs per token: 6 per weight (forward + backward) for all weights but the position embedding,
    # plus the attention scores and weighted sum: 12 * n_layer * n_embd * T (PaLM, appendix B).
    n_params = sum(p.numel() for p in hf.parameters()) - case.n_positions * case.n_embd
    flops_per_token = 6 * n_params + 12 * case.n_layer * case.n_embd * case.num_tokens
    result: dict = {"case": case.name, "peak_tflops": peak / 1e12 if peak else None}
    for name, model in (("ours", ours), ("hf", hf)):
        model.to(device)
        tokens_per_s, memory = gpu_train_throughput(model, ids, steps, device, compile_model)
        mfu = flops_per_token * tokens_per_s / peak if peak else None
        result[name] = {"train tok/s": tokens_per_s, "mfu": mfu, "peak_mib": memory}
        mfu_text = f"{mfu:.1%}" if mfu is not None else "n/a (unknown GPU peak; set GPU_PEAK_TFLOPS)"
        print(f"train {name:5s}: {tokens_per_s:10.0f} tokens/s  MFU {mfu_text}  peak memory {memory} MiB")
        new_tokens = min(200, case.n_positions - 4)
        result[name]["generate tok/s"] = gpu_generate_throughput(
            model.eval(), ids[:1, :4], new_tokens, device
        )
        print(
            f"generate {name:5s}: {result[name]['generate tok/s']:.0f} tokens/s (B=1, bf16 autocast, KV cache)"
        )
        model.to("cpu")
    print(f"train time ratio ours/hf = {result['hf']['train tok/s'] / result['ours']['train tok/s']:.3f}")
    return result


def gpu_train_throughput(
    model: torch.nn.Module, ids: torch.Tensor, steps: int, device: str, compile_model: bool
) -> tuple[float, float | None]:
    """Training tokens/s (bf16 autocast, fp32 weights, AdamW) and the peak allocated MiB on CUDA."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    forward = torch.compile(model) if compile_model else model

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = forward(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()

    for _ in range(3):  # compilation and warm-up
        step()
    synchronize(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    tokens_per_s = ids.numel() * steps / (time.perf_counter() - start)
    return tokens_per_s, torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def gpu_generate_throughput(
    model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int, device: str
) -> float:
    """Greedy ``generate()`` tokens/s with the KV cache under bf16 autocast (second run, after a warm-up)."""
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    with torch.no_grad(), torch.autocast(device_type=device, dtype=torch.bfloat16):
        model.generate(prompt, **kwargs)
        synchronize(device)
        start = time.perf_counter()
        model.generate(prompt, **kwargs)
        synchronize(device)
    return new_tokens / (time.perf_counter() - start)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def gpu_peak_flops(device: str) -> float | None:
    """Dense bf16 peak FLOP/s of known GPUs (vendor data sheets), or ``$GPU_PEAK_TFLOPS``; None if unknown."""
    if os.environ.get("GPU_PEAK_TFLOPS"):
        return float(os.environ["GPU_PEAK_TFLOPS"]) * 1e12
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    for key, tflops in (
        ("H200", 989.0),
        ("H100 PCIe", 756.0),
        ("H100", 989.0),
        ("A100", 312.0),
        ("L4", 121.0),
    ):
        if key in name:
            return tflops * 1e12
    return None


# ----------------------------------------------------------------------------------------------- profiling
def profile(case: Case, new_tokens: int) -> None:
    """torch.profiler tables: one training step and one generation of each model (top ops by CPU time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    ours, hf = build_pair(case)
    ids = random_ids(case)
    for name, model in (("ours", ours), ("hf", hf)):
        step = make_train_step(model, ids)
        step()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        print(f"\n-- profile: training step, {name} ({case.name}) --")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    prompt = random_ids(case, seed=1)[:1, :4]
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    for name, model in (("ours", ours.eval()), ("hf", hf.eval())):
        with torch.no_grad():
            model.generate(prompt, **kwargs)
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                model.generate(prompt, **kwargs)
        print(f"\n-- profile: generate(), {name}, {new_tokens} tokens --")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


# ----------------------------------------------------------------------------------------------- main
def machine_info(threads: int) -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = re.search(r"Model name:\s+(.+)", lscpu).group(1).strip()
    except (OSError, subprocess.CalledProcessError, AttributeError):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "date": datetime.date.today().isoformat(), "cpu": cpu, "cores": str(os.cpu_count()),
        "torch threads": str(threads), "load average (1/5/15 min)": load, "python": platform.python_version(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else "not available",
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny models and few rounds: a sanity run in seconds"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed rounds per benchmark (default 5, quick 3)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)"
    )
    parser.add_argument("--only", choices=("train", "generate"), help="run just one of the CPU benchmarks")
    parser.add_argument("--gpu", action="store_true", help="also run the GPU benchmark (needs CUDA)")
    parser.add_argument(
        "--profile", action="store_true", help="print torch.profiler tables instead of benchmarking"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--memory-child", choices=("ours", "hf"), help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_cases = QUICK_TRAIN_CASES if args.quick else TRAIN_CASES
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, train_cases[args.case])))
        return

    info = machine_info(args.threads)
    for key, value in info.items():
        print(f"{key:26s} {value}")
    gen_case = QUICK_GEN_CASE if args.quick else GEN_CASE
    if args.profile:
        profile(train_cases["small"], new_tokens=20)
        return
    rounds = args.rounds or (3 if args.quick else 5)
    results: dict = {"machine": info, "train": [], "generate": None, "gpu": None}
    if args.only in (None, "train"):
        for key, case in train_cases.items():
            results["train"].append(bench_training(key, case, rounds, args.quick, args.threads))
    if args.only in (None, "generate"):
        new_tokens = 20 if args.quick else 200
        results["generate"] = bench_generation(gen_case, new_tokens, rounds, no_cache_rounds=1)
    if args.gpu:
        if torch.cuda.is_available():
            gpu_case = Case("GPT-2 124M, B=16 T=1024", 12, 12, 768, 16, 1024)
            results["gpu"] = bench_gpu(gpu_case, steps=20)
        else:
            print("\n--gpu: CUDA is not available on this machine; skipped")
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:  # written atomically: a temporary file, then renamed over the target
        with open(args.json + ".tmp", "w") as f:
            json.dump({**results, "cases": {k: asdict(c) for k, c in train_cases.items()}}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
