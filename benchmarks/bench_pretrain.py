"""Pretraining results to reproduce (the book's runs) and speed; figures go to docs/pretraining.md.

Modes (run from the repository root; data from ``SCRATCH_GPT_DATA``, default ``../shared/data``):

* ``verdict`` — the book's chapter 5 run on the-verdict.txt: GPT-2 124M config with context 256, dropout 0.1
  (``--init book``, the default: a separate output head and PyTorch's default initialization, as the book's
  ``GPTModel``, 163M parameters; ``--init gpt2``: tied head and GPT-2's std-0.02 initialization),
  AdamW lr 4e-4 / weight decay 0.1, batch 2, 10 epochs, 90/10 split by characters, evaluation every 5 steps on
  5 batches, greedy samples of "Every effort moves you". Also prints the initial losses (book: ~10.99). On 2
  CPU cores this takes tens of minutes; run it with nohup and read the log.
* ``shakespeare`` — a small GPT on tinyshakespeare.txt for a fixed budget of CPU seconds of this process
  (``--budget-s``, default 300): its validation loss when the budget is spent.
* ``vs-trainer`` — tokens/s of our loop against ``transformers.Trainer`` on ``GPT2LMHeadModel`` with the same
  configuration and data (same windows, batch, AdamW, no evaluation), alternating runs; prints the ratio.
* ``gpu`` — when CUDA is available: the 124M model with bf16 and ``torch.compile``, training tokens/s and MFU.

Not here: multi-node runs, or tokenizer speed (benchmarks/bench_tokenizer.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from machine_info import machine

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCH_GPT_DATA", REPO_ROOT.parent / "shared" / "data"))


def gpt2_bpe():
    from scratch_gpt import BPETokenizer

    return BPETokenizer.from_gpt2_files(DATA_DIR / "encoder.json", DATA_DIR / "vocab.bpe")


def verdict(args: argparse.Namespace) -> dict:
    """The book's chapter 5 training run, with our loop."""
    from scratch_gpt import ScratchGPTConfig, ScratchGPTForCausalLM
    from scratch_gpt.data.sliding_window import create_dataloader_v1, train_val_split
    from scratch_gpt.training.pretrain import PretrainConfig, calc_loss_loader, pretrain

    tokenizer = gpt2_bpe()
    text = (DATA_DIR / "the-verdict.txt").read_text(encoding="utf-8")
    train_text, val_text = train_val_split(text, 0.9)
    loaders = {
        "train": create_dataloader_v1(
            train_text, 2, 256, 256, shuffle=False, drop_last=True, tokenizer=tokenizer
        ),
        "val": create_dataloader_v1(
            val_text, 2, 256, 256, shuffle=False, drop_last=False, tokenizer=tokenizer
        ),
    }
    torch.manual_seed(123)
    book = args.init == "book"
    config = ScratchGPTConfig.from_preset(
        "gpt2-small", vocab_size=50257, n_positions=256, dropout=0.1, tie_word_embeddings=not book
    )
    model = ScratchGPTForCausalLM(config)
    if book:  # the book's GPTModel: a separate output head, PyTorch's default initialization
        torch.manual_seed(123)
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                module.reset_parameters()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.init} initialization, {n_params:,} parameters", flush=True)
    model.eval()
    initial = {name: calc_loss_loader(loader, model) for name, loader in loaders.items()}
    print(
        f"initial loss: train {initial['train']:.3f}, val {initial['val']:.3f} (book: 10.988 / 10.981)",
        flush=True,
    )
    cfg = PretrainConfig(
        output_dir=args.output_dir,
        num_epochs=args.epochs,
        batch_size=2,
        learning_rate=4e-4,
        weight_decay=0.1,
        lr_schedule="constant",
        grad_clip=None,
        eval_interval=5,
        eval_batches=5,
        save_interval=None,
        sample_prompt="Every effort moves you",
        sample_tokens=50,
        seed=123,
        mixed_precision="no",
        dataset_name="the-verdict.txt (book chapter 5)",
        show_progress=args.progress,
    )
    started = time.perf_counter()
    result = pretrain(
        model, loaders["train"].dataset, loaders["val"].dataset, cfg, tokenizer=tokenizer, on_step=_print_step
    )
    seconds = time.perf_counter() - started
    h = result.history
    summary = {
        "mode": "verdict",
        "machine": machine(),
        "init": args.init,
        "parameters": n_params,
        "initial_train_loss": initial["train"],
        "initial_val_loss": initial["val"],
        "steps": result.step,
        "final_train_loss": h.train_losses[-1],
        "final_val_loss": h.val_losses[-1],
        "min_val_loss": min(h.val_losses),
        "evals": list(zip(h.steps, h.train_losses, h.val_losses)),
        "last_sample": h.samples[-1],
        "seconds": seconds,
        "plot": str(result.plot_path),
    }
    return summary


def _print_step(step: int, loss: float) -> None:
    print(f"step {step} loss {loss:.4f}", flush=True)


def shakespeare(args: argparse.Namespace) -> dict:
    """A small GPT on tinyshakespeare for a fixed CPU-time budget; the validation loss at the end."""
    from scratch_gpt import BPETokenizer, ScratchGPTConfig, ScratchGPTForCausalLM
    from scratch_gpt.data.sliding_window import GPTDatasetV1, train_val_split
    from scratch_gpt.training.pretrain import PretrainConfig, pretrain

    text = (DATA_DIR / "tinyshakespeare.txt").read_text(encoding="utf-8")
    started = time.perf_counter()
    bpe = BPETokenizer.train(text, args.vocab_size)
    ids = bpe.encode_ordinary(text)
    tokenize_s = time.perf_counter() - started
    train_ids, val_ids = train_val_split(ids, 0.9)
    ctx = args.context_length
    train, val = (
        GPTDatasetV1(train_ids, max_length=ctx, stride=ctx),
        GPTDatasetV1(val_ids, max_length=ctx, stride=ctx),
    )
    torch.manual_seed(123)
    config = ScratchGPTConfig(
        vocab_size=bpe.vocab_size,
        n_positions=ctx,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        dropout=0.0,
    )
    model = ScratchGPTForCausalLM(config)
    cfg = PretrainConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=1e-3,
        lr_schedule="constant",  # the run ends at the time limit, not at a planned step
        warmup_steps=50,
        eval_interval=10**9,  # evaluate once, when the time is up
        eval_batches=40,  # at batch 8 and context 128 this covers the whole validation split
        save_interval=None,
        sample_prompt=None,
        mixed_precision="no",
        show_progress=args.progress,
    )
    cpu_start = time.process_time()  # a CPU-time budget: other jobs on the machine do not shorten the run
    result = pretrain(
        model, train, val, cfg, on_step=lambda step, loss: time.process_time() - cpu_start > args.budget_s
    )
    val_loss = result.history.val_losses[-1]
    return {
        "mode": "shakespeare",
        "machine": machine(),
        "vocab_size": bpe.vocab_size,
        "tokens": len(ids),
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": {"n_layer": args.n_layer, "n_embd": args.n_embd, "n_head": args.n_head, "context": ctx},
        "batch_size": args.batch_size,
        "steps": result.step,
        "train_tokens": result.tokens_seen,
        "tokenizer_s": tokenize_s,
        "train_wall_s": result.seconds,
        "train_cpu_s": time.process_time() - cpu_start,
        "val_loss": val_loss,
        "val_perplexity": math.exp(val_loss),
    }


def vs_trainer(args: argparse.Namespace) -> dict:
    """Tokens/s of ``pretrain`` (ScratchGPTForCausalLM) vs ``Trainer`` (GPT2LMHeadModel), same config and data."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from scratch_gpt import BPETokenizer, ScratchGPTConfig, ScratchGPTForCausalLM
    from scratch_gpt.data.sliding_window import GPTDatasetV1
    from scratch_gpt.training.pretrain import PretrainConfig, pretrain

    text = (DATA_DIR / "tinyshakespeare.txt").read_text(encoding="utf-8")[:300_000]
    bpe = BPETokenizer.train(text, 2048)
    ids = bpe.encode_ordinary(text)
    ctx, bs, steps = args.context_length, args.batch_size, args.steps
    windows = GPTDatasetV1(ids, max_length=ctx, stride=ctx)
    sizes = dict(n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head)

    class Blocks(torch.utils.data.Dataset):  # the same windows, as Trainer rows (ctx + 1 ids, labels = ids)
        def __len__(self):
            return len(windows)

        def __getitem__(self, i):
            x, y = windows[i]
            row = torch.cat([x, y[-1:]])
            return {"input_ids": row, "labels": row}

    def steady_rate(stamps: list[tuple[float, float]]) -> tuple[float, float]:
        """Tokens per wall second and per CPU second of this process, between the end of step 2 and the last
        step (setup, warm-up and saving excluded). CPU seconds are less disturbed by other jobs."""
        tokens = (len(stamps) - 2) * bs * ctx
        return tokens / (stamps[-1][0] - stamps[1][0]), tokens / (stamps[-1][1] - stamps[1][1])

    def stamp() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def ours() -> float:
        torch.manual_seed(0)
        model = ScratchGPTForCausalLM(
            ScratchGPTConfig(vocab_size=bpe.vocab_size, n_positions=ctx + 1, dropout=0.0, **sizes)
        )
        cfg = PretrainConfig(
            output_dir=args.output_dir + "/ours",
            max_steps=steps,
            batch_size=bs,
            eval_interval=10**9,
            eval_batches=1,
            save_interval=None,
            sample_prompt=None,
            mixed_precision="no",
            show_progress=False,
        )
        stamps: list[tuple[float, float]] = []
        pretrain(model, windows, None, cfg, on_step=lambda step, loss: stamps.append(stamp()))
        return steady_rate(stamps)

    def trainer() -> float:
        from transformers import TrainerCallback

        class Stamps(TrainerCallback):
            def __init__(self):
                self.stamps: list[tuple[float, float]] = []

            def on_step_end(self, args, state, control, **kwargs):
                self.stamps.append(stamp())

        torch.manual_seed(0)
        config = GPT2Config(
            vocab_size=bpe.vocab_size,
            n_positions=ctx + 1,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **sizes,
        )
        model = GPT2LMHeadModel(config)
        targs = TrainingArguments(
            output_dir=args.output_dir + "/trainer",
            max_steps=steps,
            per_device_train_batch_size=bs,
            learning_rate=4e-4,
            weight_decay=0.1,
            lr_scheduler_type="cosine",
            max_grad_norm=1.0,
            save_strategy="no",
            report_to=[],
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=0,
            seed=0,
        )
        callback = Stamps()
        Trainer(model=model, args=targs, train_dataset=Blocks(), callbacks=[callback]).train()
        return steady_rate(callback.stamps)  # the same tokens per step: ctx predictions per row

    rounds = []
    for r in range(args.rounds):
        first, second = (ours, trainer) if r % 2 == 0 else (trainer, ours)  # alternate who goes first
        a, b = first(), second()
        (o_wall, o_cpu), (t_wall, t_cpu) = (a, b) if first is ours else (b, a)
        rounds.append({"ours_tok_s": o_wall, "trainer_tok_s": t_wall, "wall_ratio": o_wall / t_wall,
                       "ours_tok_cpu_s": o_cpu, "trainer_tok_cpu_s": t_cpu, "cpu_ratio": o_cpu / t_cpu})  # fmt: skip
        print(rounds[-1], flush=True)
    median = lambda key: sorted(r[key] for r in rounds)[len(rounds) // 2]  # noqa: E731
    return {
        "mode": "vs-trainer",
        "machine": machine(),
        "config": {**sizes, "context": ctx, "batch": bs, "steps": steps, "vocab": bpe.vocab_size},
        "rounds": rounds,
        "median_wall_ratio": median("wall_ratio"),
        "median_cpu_ratio": median("cpu_ratio"),
    }


def gpu(args: argparse.Namespace) -> dict:
    """124M, bf16 autocast, torch.compile: training tokens/s and MFU on one GPU."""
    if not torch.cuda.is_available():
        return {"mode": "gpu", "skipped": "no CUDA device"}
    from scratch_gpt import ScratchGPTConfig, ScratchGPTForCausalLM
    from scratch_gpt.data.sliding_window import GPTDatasetV1
    from scratch_gpt.training.pretrain import PretrainConfig, pretrain

    ctx, bs, steps = 1024, args.batch_size, args.steps
    ids = torch.randint(0, 50257, (bs * (ctx + 1) * (steps + 10),)).tolist()
    data = GPTDatasetV1(ids, max_length=ctx, stride=ctx)
    config = ScratchGPTConfig.from_preset("gpt2-small", vocab_size=50304, n_positions=ctx, dropout=0.0)
    model = ScratchGPTForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    times = []
    cfg = PretrainConfig(
        output_dir=args.output_dir,
        max_steps=steps,
        batch_size=bs,
        eval_interval=10**9,
        eval_batches=1,
        save_interval=None,
        sample_prompt=None,
        mixed_precision="bf16",
        compile=True,
        show_progress=False,
    )

    def on_step(step: int, loss: float) -> None:
        torch.cuda.synchronize()
        times.append(time.perf_counter())

    pretrain(model, data, None, cfg, on_step=on_step)
    warm = times[len(times) // 2 :]  # skip compilation and warm-up
    step_s = (warm[-1] - warm[0]) / (len(warm) - 1)
    tok_s = bs * ctx / step_s
    flops_per_token = 6 * n_params + 12 * config.n_layer * config.n_embd * ctx  # PaLM appendix B estimate
    peak = args.peak_tflops * 1e12
    return {
        "mode": "gpu",
        "device": torch.cuda.get_device_name(),
        "batch": bs,
        "context": ctx,
        "tokens_per_s": tok_s,
        "mfu": tok_s * flops_per_token / peak,
        "peak_tflops_assumed": args.peak_tflops,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["verdict", "shakespeare", "vs-trainer", "gpu"])
    parser.add_argument("--output-dir", default="/tmp/scratch_gpt_bench_pretrain")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--init", choices=["book", "gpt2"], default="book",
                        help="verdict: the book's model (untied head, PyTorch init) or GPT-2's (tied, std 0.02)")  # fmt: skip
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100 SXM: 989)")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", help="also write the summary to this file")
    args = parser.parse_args()
    summary = {"verdict": verdict, "shakespeare": shakespeare, "vs-trainer": vs_trainer, "gpu": gpu}[
        args.mode
    ](args)
    text = json.dumps(summary, indent=1, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
