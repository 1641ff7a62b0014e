"""Benchmark compiled greedy decoding on a static KV cache: scratch_gpt against GPT-2, and against our dynamic path.

Greedy generation of 200 new tokens after a 4-token prompt, batch 1, on CPU, with the GPT-2 124M config and random
weights (a random ``GPT2LMHeadModel`` is built and converted with ``load_gpt2``, so all models have the same weights
and must produce the same tokens). Five ways to decode, all through ``model.generate()``:

* ``ours static+compile`` — ``cache_implementation="static"`` and a ``CompileConfig(fullgraph=True)``: transformers
  compiles the one-token decoding step of ``ScratchGPTForCausalLM`` with ``torch.compile`` (inductor). The model is
  on the package's CPU kernels (``use_fast_kernels``, as ``pretrain`` and the fine-tuning pipelines put it; the
  oneDNN product is a registered operator, so the compiled graph keeps it);
* ``hf static+compile`` — the same for ``GPT2LMHeadModel`` (target: ours / hf >= 1.0 in tokens/s);
* ``ours plain static+compile`` — ours as ``from_pretrained`` returns it (plain ``nn.Linear``: the compiler sends
  its products to MKL, as it does GPT-2's); reported;
* ``hf fast-head static+compile`` — GPT-2 with ``use_fast_kernels`` applied too: its output head (its one
  ``nn.Linear``; the blocks are ``Conv1D``) on the oneDNN operator; reported, to show how much of our lead is the
  kernel for the output head alone;
* ``ours dynamic`` — the first model on the default ``DynamicCache``, not compiled (reported, for the speedup
  compilation buys).

The tokens of all five are checked equal (every run). Compilation happens once per model in a warm-up call and is
timed separately; then the methods run side by side in one process, alternating with the order rotating every
round, each round is printed as it ends, and the median of the per-round ratios is printed at the end.
``transformers`` compiles automatically only on accelerators, so the config sets ``_compile_all_devices``. Inductor
on CPU needs a C++ compiler (``g++``).

Run from the repository root: ``python benchmarks/bench_static_compile.py`` (``--quick``: a tiny model and 16
tokens, a smoke run, with the kernels' size threshold lifted so the tiny layers take the oneDNN path too;
``--backend aot_eager`` compiles without C++, for checking only).

Not here: batched or sampled decoding, GPUs, prefill speed (the prompt is 4 tokens; prefill is not compiled).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch
import transformers
from machine_info import cpu_model
from transformers import CompileConfig, GPT2Config, GPT2LMHeadModel

from scratch_gpt import load_gpt2
from scratch_gpt.kernels import linear as kernels_linear
from scratch_gpt.kernels import use_fast_kernels
from scratch_gpt.kernels.linear import onednn_linear_enabled


def build_models(quick: bool) -> dict[str, torch.nn.Module]:
    """GPT-2, GPT-2 with its output head on the fast kernels, ours on the fast kernels, and ours plain: one set of
    random weights."""
    torch.manual_seed(0)
    if quick:
        config = GPT2Config(
            vocab_size=500, n_positions=64, n_embd=64, n_layer=2, n_head=4, bos_token_id=499, eos_token_id=499
        )
    else:
        config = GPT2Config()  # 124M: 12 layers, 12 heads, 768 wide, 1,024 positions, 50,257 tokens
    config.eos_token_id = config.bos_token_id
    hf = GPT2LMHeadModel(config).eval()
    hf_fast_head = GPT2LMHeadModel(config).eval()
    hf_fast_head.load_state_dict(hf.state_dict())
    if (
        quick
    ):  # the tiny layers are under the oneDNN size threshold: lifted, so the smoke run takes that path too
        kernels_linear.MIN_ONEDNN_WEIGHTS = 0
    models = {
        "hf": hf,
        "hf fast-head": use_fast_kernels(hf_fast_head, measure=not quick),  # quick: oneDNN on, unmeasured
        "ours": use_fast_kernels(load_gpt2(hf), measure=not quick).eval(),
        "ours plain": load_gpt2(hf).eval(),
    }
    for model in models.values():
        model.set_attn_implementation("sdpa")
    return models


def make_generate(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int, compile_backend: str | None):
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    if compile_backend is not None:
        config = CompileConfig(fullgraph=True, dynamic=False, backend=compile_backend, mode=None)
        config._compile_all_devices = True  # transformers compiles on accelerators only unless asked
        kwargs.update(cache_implementation="static", compile_config=config)

    @torch.no_grad()
    def run() -> torch.Tensor:
        return model.generate(prompt, **kwargs)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 16 tokens, 1 round (smoke run)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5, quick 1)")
    parser.add_argument(
        "--new-tokens", type=int, default=None, help="tokens to generate (default 200, quick 16)"
    )
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (default inductor)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    new_tokens = args.new_tokens or (16 if args.quick else 200)

    print(f"# bench_static_compile ({'quick' if args.quick else 'full'}), {datetime.date.today()}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, backend {args.backend}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    models = build_models(args.quick)
    kept = sorted(kernels_linear._f_linear_faster)  # weight shapes where F.linear measured faster here
    print(
        f"use_fast_kernels measured here: oneDNN product {'on' if onednn_linear_enabled() else 'off'}"
        + (f", F.linear kept for weight shapes {kept}" if kept else ", for every large layer")
    )
    vocab_size = models["hf"].config.vocab_size
    prompt = torch.randint(0, vocab_size - 1, (1, 4), generator=torch.Generator().manual_seed(1))
    methods = {f"{name} static+compile": make_generate(model, prompt, new_tokens, args.backend)
               for name, model in models.items()}  # fmt: skip
    methods["ours dynamic"] = make_generate(models["ours"], prompt, new_tokens, None)

    tokens = {}
    for name, run in methods.items():
        if "compile" in name:  # warm-up: compiles the decoding step (the dynamic path needs none)
            start = time.perf_counter()
            tokens[name] = run()
            print(f"warm-up (incl. compilation) {name}: {time.perf_counter() - start:.1f} s", flush=True)

    speeds: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order every round
            start = time.perf_counter()
            ids = methods[name]()
            speeds[name].append(new_tokens / (time.perf_counter() - start))
            tokens.setdefault(name, ids)
            if not torch.equal(ids, tokens[name]) or not torch.equal(ids, next(iter(tokens.values()))):
                raise SystemExit(f"{name} generated different tokens than the others: the comparison is void")
        if r == 0:
            print(f"same tokens from all five checked ({new_tokens} new tokens, greedy)")
        print(
            f"round {r + 1}: " + ", ".join(f"{name} {speeds[name][-1]:.1f} tokens/s" for name in names),
            flush=True,
        )
    print()
    print("| method | tokens/s (median) |")
    print("|---|---|")
    for name in names:
        print(f"| {name} | {statistics.median(speeds[name]):.1f} |")

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(speeds[a], speeds[b]))

    print()
    print(
        "median speed ratio ours/hf (static+compile) = "
        f"{ratio('ours static+compile', 'hf static+compile'):.3f} (target >= 1.0)"
    )
    print(
        "median speed ratio ours plain/hf (static+compile) = "
        f"{ratio('ours plain static+compile', 'hf static+compile'):.3f} (reported)"
    )
    print(
        "median speed ratio ours/hf fast-head (static+compile) = "
        f"{ratio('ours static+compile', 'hf fast-head static+compile'):.3f} (reported)"
    )
    print(
        "median speed ratio ours static+compile / ours dynamic = "
        f"{ratio('ours static+compile', 'ours dynamic'):.3f}"
    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
