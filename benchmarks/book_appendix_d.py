"""Appendix D, number for number: the book's learning-rate schedule, and its training loop in book mode.

``python benchmarks/book_appendix_d.py`` prints two things, ours beside the book's:

1. The learning-rate sequences of the appendix's illustration (15 epochs of 9 batches: 135 steps, 20% = 27
   warmup steps, initial 1e-4, peak 1e-2, minimum 1e-5): warmup then constant, and warmup then cosine. The
   book's numbers are computed here by the appendix's own loop (``lr = initial_lr + global_step *
   lr_increment``, then the cosine), ours by ``book_lr_at_step`` (``book_conventions=True``) and, for
   contrast, our default ``lr_at_step``.
2. Appendix D's ``train_model`` (warmup, cosine decay, clipping only after warmup) on a tiny GPT (context 64,
   2 layers, 64-wide embeddings, dropout 0.1) for one epoch of the-verdict.txt (36 steps, 7 warmup steps,
   peak 1e-2 from 1e-4, minimum 1e-5, clipping at norm 1, evaluation every 5 steps on 1 batch): our
   ``pretrain`` in book mode against the per-step losses and learning rates the book's own code gives
   (``previous_chapters.GPTModel`` and the appendix's ``train_model``, current version, run on this CPU).

``--quick``: part 2 stops after 12 steps.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCH_GPT_DATA", REPO_ROOT.parent / "shared" / "data"))

# The book's appendix D train_model on the tiny GPT (see the docstring), run with the book's code on CPU.
BOOK_TINY_STEPS = (
    10.929113388061523, 11.006723403930664, 10.934856414794922, 10.939196586608887, 10.850217819213867,
    10.586471557617188, 10.232830047607422, 9.874441146850586, 9.501090049743652, 9.034431457519531,
    8.470354080200195, 8.199932098388672, 7.74639368057251, 7.8159379959106445, 8.126715660095215,
    7.401263236999512, 7.260335922241211, 7.226983070373535, 7.647290229797363, 8.562054634094238,
    8.133199691772461, 8.183085441589355, 7.943409442901611, 7.8128886222839355, 7.076930046081543,
    7.308722496032715, 7.67786169052124, 7.056339740753174, 7.552484512329102, 7.594289302825928,
    7.067171573638916, 7.228827953338623, 7.889512538909912, 7.417698860168457, 7.2306013107299805,
    7.65966272354126,
)  # fmt: skip
BOOK_TINY_EVALS = [
    (0, 10.97315502166748, 10.986845016479492), (5, 10.507888793945312, 10.344467163085938),
    (10, 7.609479904174805, 7.752851963043213), (15, 7.702132701873779, 7.398584842681885),
    (20, 7.637528419494629, 7.371146202087402), (25, 7.168684482574463, 7.166245937347412),
    (30, 6.0547051429748535, 7.041082859039307), (35, 6.621458530426025, 7.018057823181152),
]  # fmt: skip


def appendix_lrs(total: int, warmup: int, initial: float, peak: float, min_lr: float, cosine: bool) -> list:
    """The appendix's own loop (its variable names), one learning rate per step."""
    lr_increment = (peak - initial) / warmup
    lrs = []
    for global_step in range(total):
        if global_step < warmup:
            lr = initial + global_step * lr_increment
        elif cosine:
            progress = (global_step - warmup) / (total - warmup)
            lr = min_lr + (peak - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        else:
            lr = peak
        lrs.append(lr)
    return lrs


def schedules() -> None:
    from scratch_gpt.training.book_conventions import book_lr_at_step
    from scratch_gpt.training.pretrain import lr_at_step

    total, initial, peak, min_lr = 15 * 9, 1e-4, 1e-2, 1e-5
    warmup = int(0.2 * total)
    print(f"1. learning rates: {total} steps, {warmup} warmup, initial {initial}, peak {peak}, min {min_lr}")
    for cosine in (False, True):
        kind = "cosine" if cosine else "constant"
        book = appendix_lrs(total, warmup, initial, peak, min_lr, cosine)
        ours = [
            book_lr_at_step(s, peak_lr=peak, total_steps=total, warmup_steps=warmup, initial_lr=initial,
                            min_lr=min_lr, schedule=kind)
            for s in range(total)
        ]  # fmt: skip
        default = [
            lr_at_step(s, peak_lr=peak, total_steps=total, warmup_steps=warmup, min_lr=min_lr, schedule=kind)
            for s in range(total)
        ]
        same = sum(a == b for a, b in zip(ours, book))
        print(f"\nwarmup + {kind}: book mode equals the book's loop bit for bit at {same} of {total} steps")
        print("step | book               | book mode          | our default")
        for s in (0, 1, 2, warmup - 1, warmup, warmup + 1, total // 2, total - 2, total - 1):
            print(f"{s:4d} | {book[s]:.16f} | {ours[s]:.16f} | {default[s]:.16f}")


def tiny_run(quick: bool, output_dir: str) -> None:
    from scratch_gpt import BPETokenizer, ScratchGPTConfig, ScratchGPTForCausalLM
    from scratch_gpt.data.sliding_window import GPTDatasetV1, train_val_split
    from scratch_gpt.training.book_conventions import init_weights_like_the_book
    from scratch_gpt.training.pretrain import PretrainConfig, pretrain

    tokenizer = BPETokenizer.from_gpt2_files(DATA_DIR / "encoder.json", DATA_DIR / "vocab.bpe")
    train_text, val_text = train_val_split((DATA_DIR / "the-verdict.txt").read_text(encoding="utf-8"), 0.9)
    train, val = (GPTDatasetV1(t, tokenizer, max_length=64, stride=64) for t in (train_text, val_text))
    config = ScratchGPTConfig(
        vocab_size=50257,
        n_positions=64,
        n_embd=64,
        n_head=4,
        n_layer=2,
        dropout=0.1,
        tie_word_embeddings=False,
    )
    model = init_weights_like_the_book(ScratchGPTForCausalLM(config), seed=123)
    total = len(train) // 2
    limit = 12 if quick else total
    cfg = PretrainConfig(
        output_dir=output_dir,
        num_epochs=1,
        batch_size=2,
        learning_rate=1e-2,
        initial_lr=1e-4,
        min_lr=1e-5,
        warmup_steps=int(0.2 * total),
        lr_schedule="cosine",
        weight_decay=0.1,
        grad_clip=1.0,
        eval_interval=5,
        eval_batches=1,
        save_interval=None,
        sample_prompt=None,
        mixed_precision="no",
        show_progress=False,
        book_conventions=True,
    )
    print(f"\n2. appendix D's train_model on a tiny GPT: {total} steps, {cfg.warmup_steps} warmup steps")
    losses: list[float] = []
    result = pretrain(model, train, val, cfg, on_step=lambda s, loss: losses.append(loss) or s >= limit)
    book_lrs = appendix_lrs(total, cfg.warmup_steps, 1e-4, 1e-2, 1e-5, cosine=True)
    lrs = result.history.step_log["lrs"]
    print("global_step | lr: ours = book's loop | train loss: ours | book")
    for s, (loss, lr) in enumerate(zip(losses, lrs)):
        same = "=" if lr == book_lrs[s] else "!="
        print(f"{s:11d} | {lr:.12f} {same}       | {loss:.6f}         | {BOOK_TINY_STEPS[s]:.6f}")
    h = result.history
    evals = [(s - 1, a, b) for s, a, b in zip(h.steps, h.train_losses, h.val_losses)]
    for (step, a, b), (_, ba, bb) in zip(evals, BOOK_TINY_EVALS):
        print(f"eval at global_step {step:2d}: train {a:.6f} val {b:.6f} | book {ba:.6f} {bb:.6f}")
    diff = max(abs(a - b) for a, b in zip(losses, BOOK_TINY_STEPS))
    eval_diff = max(max(abs(a - ba), abs(b - bb)) for (_, a, b), (_, ba, bb) in zip(evals, BOOK_TINY_EVALS))
    same_lrs = sum(a == b for a, b in zip(lrs, book_lrs))
    print(
        f"{len(losses)} steps: learning rates equal the book's at {same_lrs} of {len(lrs)} steps; "
        f"max |ours - book| = {diff:.2e} (losses), {eval_diff:.2e} ({len(evals)} evaluations)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="stop the tiny training run after 12 steps")
    parser.add_argument("--output-dir", default="/tmp/scratch_gpt_book_appendix_d")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    schedules()
    tiny_run(args.quick, args.output_dir)


if __name__ == "__main__":
    main()
