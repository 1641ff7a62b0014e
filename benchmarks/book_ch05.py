"""Chapter 5, number for number: the book's the-verdict.txt pretraining run in book mode, beside its printed numbers.

``python benchmarks/book_ch05.py`` builds the book's model (GPT-2 124M sizes, context 256, dropout 0.1, a
separate output head, PyTorch's default initialization after ``torch.manual_seed(123)``:
``init_weights_like_the_book``), and trains it with ``pretrain(..., PretrainConfig(book_conventions=True))``
with the book's settings: AdamW lr 4e-4, weight decay 0.1, batch 2, 10 epochs of 9 batches, evaluation every 5
steps on 5 batches, a greedy 50-token sample of "Every effort moves you" after each epoch. It prints the initial
losses, each step's training loss, the 18 evaluations and the samples, each beside the book's, and a summary.

The book's numbers: the evaluations and samples are the 28 lines printed by the book's CPU notebook
(``ch05/01_main-chapter-code/ch05.ipynb`` in rasbt/LLMs-from-scratch, before the MPS re-run of October 2025);
the first three per-step losses come from running the book's own code on this CPU (it does not print them).
On 2 CPU cores the full run takes 10-20 minutes.

``--quick`` runs the same script on a tiny model (context 64, 2 layers, 64-wide embeddings) for 12 steps and
compares with per-step losses and evaluations obtained by running the book's own code
(``previous_chapters.GPTModel`` + ``train_model_simple``) with that configuration: a smoke test in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from machine_info import machine

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCH_GPT_DATA", REPO_ROOT.parent / "shared" / "data"))

# The book's CPU notebook: (0-based global_step, train loss, val loss) of its 18 evaluations.
BOOK_EVALS = [
    (0, 9.781, 9.933), (5, 8.111, 8.339), (10, 6.661, 7.048), (15, 5.961, 6.616), (20, 5.726, 6.600),
    (25, 5.201, 6.348), (30, 4.417, 6.278), (35, 4.069, 6.226), (40, 3.732, 6.160), (45, 2.850, 6.179),
    (50, 2.427, 6.141), (55, 2.104, 6.134), (60, 1.882, 6.233), (65, 1.320, 6.238), (70, 0.985, 6.242),
    (75, 0.717, 6.293), (80, 0.541, 6.393), (85, 0.391, 6.452),
]  # fmt: skip
BOOK_INITIAL = (10.98758, 10.98111)  # calc_loss_loader over all batches, before training
BOOK_FIRST_STEPS = (10.999969, 9.857111, 9.318081)  # the book's code on CPU: loss.item() of steps 1-3
BOOK_LAST_SAMPLE = (
    'Every effort moves you know," was one of the axioms he laid down across the Sevres and silver of an '
    "exquisitely appointed luncheon-table, when, on a later day, I had again run over from Monte Carlo; and Mrs. Gis"
)
# --quick: the book's own code (previous_chapters.GPTModel, train_model_simple, tiktoken's GPT-2 encoding
# built from the local files) with context 64, emb_dim 64, 2 layers, 4 heads, dropout 0.1, run on CPU.
QUICK_BOOK_STEPS = (
    10.929113388061523, 11.00162124633789, 10.949268341064453, 11.00839614868164, 10.994359970092773,
    10.870811462402344, 10.90371322631836, 10.954390525817871, 10.890735626220703, 10.94576644897461,
    10.923422813415527, 10.90510368347168,
)  # fmt: skip
QUICK_BOOK_EVALS = [
    (0, 11.004820632934571, 10.986723899841309), (5, 10.988140106201172, 10.948776721954346),
    (10, 10.859951210021972, 10.904012203216553),
]  # fmt: skip
QUICK_SIZES = dict(n_positions=64, n_embd=64, n_head=4, n_layer=2)
FULL_SIZES = dict(n_positions=256, n_embd=768, n_head=12, n_layer=12)  # GPT_CONFIG_124M, context 256


def run(quick: bool, output_dir: str, epochs: int) -> dict:
    from scratch_gpt import BPETokenizer, ScratchGPTConfig, ScratchGPTForCausalLM
    from scratch_gpt.data.sliding_window import GPTDatasetV1, train_val_split
    from scratch_gpt.generation import generate_text_simple, text_to_token_ids, token_ids_to_text
    from scratch_gpt.training.book_conventions import init_weights_like_the_book
    from scratch_gpt.training.pretrain import PretrainConfig, calc_loss_loader, pretrain

    sizes = QUICK_SIZES if quick else FULL_SIZES
    ctx = sizes["n_positions"]
    tokenizer = BPETokenizer.from_gpt2_files(DATA_DIR / "encoder.json", DATA_DIR / "vocab.bpe")
    train_text, val_text = train_val_split((DATA_DIR / "the-verdict.txt").read_text(encoding="utf-8"), 0.9)
    train = GPTDatasetV1(train_text, tokenizer, max_length=ctx, stride=ctx)
    val = GPTDatasetV1(val_text, tokenizer, max_length=ctx, stride=ctx)
    config = ScratchGPTConfig(vocab_size=50257, dropout=0.1, tie_word_embeddings=False, **sizes)
    model = init_weights_like_the_book(ScratchGPTForCausalLM(config), seed=123)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{machine()}\nthe book's model: {n_params:,} parameters, context {ctx}", flush=True)

    model.eval()  # the initial losses, over all batches (the book's calc_loss_loader)
    order = torch.Generator()  # a private generator: the global RNG is reset just below anyway
    loaders = [torch.utils.data.DataLoader(d, batch_size=2, generator=order) for d in (train, val)]
    initial = [calc_loss_loader(loader, model) for loader in loaders]
    if not quick:
        print(f"initial loss: train {initial[0]:.5f}, val {initial[1]:.5f} (book: 10.98758 / 10.98111)")
    init_weights_like_the_book(model, seed=123)  # the same weights again, and the RNG where the book's is

    batches_per_epoch = len(train) // 2
    book_steps = QUICK_BOOK_STEPS if quick else BOOK_FIRST_STEPS
    steps: list[float] = []
    samples: list[str] = []

    def on_step(step: int, loss: float) -> bool:
        steps.append(loss)
        book = f"  (book {book_steps[step - 1]:.6f})" if step <= len(book_steps) else ""
        print(f"step {step:3d}: train loss {loss:.6f}{book}", flush=True)
        if step % batches_per_epoch == 0 and not quick:  # the book's sample after each epoch: greedy, no RNG
            model.eval()
            ids = text_to_token_ids("Every effort moves you", tokenizer)
            text = token_ids_to_text(generate_text_simple(model, ids, 50, ctx), tokenizer).replace("\n", " ")
            samples.append(text)
            print(f"  epoch {step // batches_per_epoch} sample: {text}", flush=True)
            model.train()
        return quick and step >= len(QUICK_BOOK_STEPS)

    cfg = PretrainConfig(
        output_dir=output_dir,
        num_epochs=epochs,
        batch_size=2,
        learning_rate=4e-4,
        weight_decay=0.1,
        lr_schedule="constant",
        grad_clip=None,
        eval_interval=5,
        eval_batches=5,
        save_interval=None,
        sample_prompt=None,
        mixed_precision="no",
        show_progress=False,
        dataset_name="the-verdict.txt (book chapter 5)",
        book_conventions=True,
    )
    started = time.perf_counter()
    result = pretrain(model, train, val, cfg, on_step=on_step)
    seconds = time.perf_counter() - started

    h = result.history
    ours = [(s - 1, a, b) for s, a, b in zip(h.steps, h.train_losses, h.val_losses)]
    book_evals = QUICK_BOOK_EVALS if quick else BOOK_EVALS
    print("\nevaluations (the book's format), ours | book")
    for (step, a, b), (_, ba, bb) in zip(ours, book_evals):
        print(f"Step {step:06d}: Train loss {a:.3f}, Val loss {b:.3f} | {ba:.3f}, {bb:.3f}")
    first = min(len(steps), len(book_steps))
    summary = {
        "mode": "quick" if quick else "full",
        "machine": machine(),
        "parameters": n_params,
        "initial_losses": initial,
        "steps": len(steps),
        "step_losses": steps,
        "first_steps_max_abs_diff": max(abs(a - b) for a, b in zip(steps[:first], book_steps[:first])),
        "evals": ours,
        "evals_max_abs_diff": max(
            max(abs(a - ba), abs(b - bb)) for (_, a, b), (_, ba, bb) in zip(ours, book_evals)
        ),
        "evals_compared": min(len(ours), len(book_evals)),
        "final": ours[-1][1:],
        "book_final": book_evals[-1][1:] if not quick else None,
        "last_sample": samples[-1] if samples else None,
        "last_sample_equals_book": (samples[-1] == BOOK_LAST_SAMPLE) if samples else None,
        "seconds": seconds,
    }
    print(
        f"\nfirst {first} steps: max |ours - book| = {summary['first_steps_max_abs_diff']:.2e}; "
        f"{summary['evals_compared']} evaluations: max |ours - book| = {summary['evals_max_abs_diff']:.2e}"
    )
    if not quick:
        print(f"final: train {ours[-1][1]:.3f}, val {ours[-1][2]:.3f} (book: 0.391 / 6.452)")
        print(f"last sample equals the book's: {summary['last_sample_equals_book']}")
    print(f"{len(steps)} steps in {seconds:.0f} s")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model for 12 steps (a smoke test)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--output-dir", default="/tmp/scratch_gpt_book_ch05")
    parser.add_argument("--json", help="also write the summary to this file")
    args = parser.parse_args()
    summary = run(args.quick, args.output_dir, args.epochs)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
