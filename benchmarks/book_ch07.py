"""Chapter 7, the first steps number for number: instruction fine-tuning in book mode from a GPT pretrained here.

The book fine-tunes OpenAI's GPT-2 355M, which cannot be downloaded here; this script compares the mechanics on
the tiny GPT that ``book_ch06.py`` pretrains (GPT-2's tokenizer, context 128, 2 layers, 64-wide embeddings):
``finetune_instruct(InstructFinetuneConfig(..., book_conventions=True))`` on instruction-data.json with the
book's settings (AdamW lr 5e-5, weight decay 0.1, batch 8, evaluation every 5 steps on 5 batches), stopped after
``--steps`` steps (default 12). It prints each step's training loss and the evaluations beside the numbers the
book's own code gives from the same weights (``gpt_instruction_finetuning.py``'s ``InstructionDataset`` and
``custom_collate_fn`` with ``allowed_max_length`` = the context, ``previous_chapters.train_model_simple``, run on
this CPU; recorded below). ``--quick``: 6 steps from a GPT pretrained for one epoch only (a smoke test; no
comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCH_GPT_DATA", REPO_ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The book's own code from the same pretrained weights: per-step losses, and (0-based step, train, val) evals.
# (The book's "before" train loss differs: its batches come from the RNG state its model construction leaves.)
BOOK_STEPS = [
    8.409934997558594, 8.6508207321167, 8.361289978027344, 8.328622817993164,
    8.549221992492676, 8.57308578491211, 8.226151466369629, 8.342100143432617,
    8.426231384277344, 8.328633308410645, 8.405834197998047, 8.558976173400879,
]  # fmt: skip
BOOK_EVALS = [(0, 8.587432670593262, 8.528708457946777), (5, 8.412448501586914, 8.497216415405273), (10, 8.524551391601562, 8.465650749206542)]  # fmt: skip
BOOK_BEFORE = (8.546655654907227, 8.53493881225586)


def main() -> None:
    from book_ch06 import pretrained_tiny_gpt

    from scratch_gpt.finetune.instruction_pipeline import InstructFinetuneConfig, finetune_instruct

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 steps (a smoke test)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--work-dir", default="/tmp/scratch_gpt_book_ch06")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread: the same float sums as the recorded run of the book's code
    work = Path(args.work_dir)
    lm = (
        pretrained_tiny_gpt(work / "pretrained-quick", 1)
        if args.quick
        else pretrained_tiny_gpt(work / "pretrained")
    )
    steps = 6 if args.quick else args.steps
    book_steps, book_evals = ([], []) if args.quick else (BOOK_STEPS, BOOK_EVALS)
    out = work / f"instruct-{steps}"
    config = InstructFinetuneConfig(
        lm, DATA_DIR / "instruction-data.json", out, book_conventions=True, max_steps=steps, device="cpu",
        num_test=2, max_new_tokens=8,
    )  # fmt: skip
    lines: list[str] = []
    result = finetune_instruct(config, log=lines.append)
    history = json.loads((out / "training_history.json").read_text())
    losses = history["step_log"]["losses"]
    before = result["before"]
    book_before = "" if args.quick else f" (the book's code: {BOOK_BEFORE[0]:.6f}, {BOOK_BEFORE[1]:.6f})"
    print(
        f"before fine-tuning (5 batches): train {before['train_loss']:.6f}, val {before['val_loss']:.6f}{book_before}"
    )
    print("step | train loss ours | the book's code")
    for i, loss in enumerate(losses):
        book = f"{book_steps[i]:.6f}" if i < len(book_steps) else ""
        print(f"{i + 1:4d} | {loss:.6f}        | {book}")
    evals = list(zip(history["steps"], history["train_losses"], history["val_losses"]))
    for i, (step, tr, va) in enumerate(evals):
        book = f"{book_evals[i][1]:.6f}, {book_evals[i][2]:.6f}" if i < len(book_evals) else ""
        print(f"Step {step - 1:06d}: Train loss {tr:.6f}, Val loss {va:.6f} | {book}")
    n = min(len(losses), len(book_steps))
    if n:
        diff = max(abs(a - b) for a, b in zip(losses, book_steps))
        eval_diff = max(max(abs(a - c), abs(b - d)) for (_, a, b), (_, c, d) in zip(evals, book_evals))
        print(f"{n} steps: max |ours - book| = {diff:.2e}; {min(len(evals), len(book_evals))} evaluations: "
              f"{eval_diff:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
