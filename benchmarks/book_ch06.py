"""Chapter 6, mechanics number for number: the spam classifier fine-tuned in book mode from a GPT pretrained here.

The book fine-tunes OpenAI's GPT-2 124M (95.67% test accuracy); those weights cannot be downloaded here, so
this script compares the *mechanics* instead, on a GPT pretrained here:

1. a tiny GPT (GPT-2's tokenizer, context 128, 2 layers, 64-wide embeddings, the book's initialization) is
   pretrained in book mode on the-verdict.txt for 10 epochs (the book's chapter 5 settings otherwise) and
   saved with a GPT-2 tokenizer (``GPT2TokenizerFast`` from the local encoder.json / vocab.bpe, which pads with
   ``<|endoftext|>`` as the book does);
2. ``finetune_classifier(ClassifierFinetuneConfig(..., book_conventions=True))`` fine-tunes it on
   SMSSpamCollection.tsv with the book's settings (last block + final LayerNorm + the new head trained, AdamW
   lr 5e-5, weight decay 0.1, batch 8, 5 epochs, evaluation every 50 steps on 5 batches).

It prints the book's lines (losses every 50 steps, accuracies every epoch, the final accuracies) beside the
numbers the book's own code gives when run from the same pretrained weights (``previous_chapters.GPTModel``
with the book's ``train_classifier_simple``, run on this CPU with the weights copied over; recorded below).
``--quick``: a GPT pretrained for one epoch only, fine-tuned for 20 steps (a smoke test; no comparison).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCH_GPT_DATA", REPO_ROOT.parent / "shared" / "data"))
SIZES = dict(n_positions=128, n_embd=64, n_head=4, n_layer=2)

# The book's own code from the same pretrained weights (see the docstring): ((train, val) loss every 50 steps,
# (train, val) accuracy every epoch, final (train, val, test) accuracy), run on this CPU with one thread.
BOOK_LOSSES = [
    (0.8325783371925354, 0.7880780220031738),
    (0.6939886331558227, 0.6933688044548034),
    (0.6872707724571228, 0.6883929371833801),
    (0.693117356300354, 0.6922650218009949),
    (0.6837549686431885, 0.6882272362709045),
    (0.6855691075325012, 0.687047028541565),
    (0.684662926197052, 0.6862326025962829),
    (0.6851590752601624, 0.6872296094894409),
    (0.6573198080062866, 0.6850442290306091),
    (0.6831701874732972, 0.6821908831596375),
    (0.682143485546112, 0.6801008462905884),
    (0.6796293020248413, 0.677690064907074),
    (0.6917802095413208, 0.6769296169281006),
]  # fmt: skip
BOOK_ACCS = [(0.85, 0.825), (0.475, 0.5), (0.575, 0.5), (0.8, 0.825), (0.7, 0.6)]  # fmt: skip
BOOK_FINAL = (0.6605769230769231, 0.610738255033557, 0.68)


def gpt2_hf_tokenizer():
    """GPT-2's tokenizer as a Hugging Face tokenizer, from the local files, with no pad token: padding then uses
    ``<|endoftext|>`` (50256), as the book's code does."""
    from scratch_gpt import BPETokenizer, ScratchGPTTokenizerFast

    bpe = BPETokenizer.from_gpt2_files(DATA_DIR / "encoder.json", DATA_DIR / "vocab.bpe")
    return ScratchGPTTokenizerFast.from_bpe(bpe, model_max_length=SIZES["n_positions"], pad_token=None)


def pretrained_tiny_gpt(output_dir: Path, epochs: int = 10) -> Path:
    """Pretrain the tiny GPT in book mode on the-verdict.txt for ``epochs`` epochs and save it (with the tokenizer)
    to ``output_dir``; an existing one there is reused."""
    from scratch_gpt import BPETokenizer, ScratchGPTConfig, ScratchGPTForCausalLM
    from scratch_gpt.data.sliding_window import GPTDatasetV1, train_val_split
    from scratch_gpt.training.book_conventions import init_weights_like_the_book
    from scratch_gpt.training.pretrain import PretrainConfig, pretrain

    if (output_dir / "model.safetensors").is_file():
        return output_dir
    bpe = BPETokenizer.from_gpt2_files(DATA_DIR / "encoder.json", DATA_DIR / "vocab.bpe")
    train_text, val_text = train_val_split((DATA_DIR / "the-verdict.txt").read_text(encoding="utf-8"), 0.9)
    ctx = SIZES["n_positions"]
    train, val = (GPTDatasetV1(t, bpe, max_length=ctx, stride=ctx) for t in (train_text, val_text))
    config = ScratchGPTConfig(
        vocab_size=50257, dropout=0.1, tie_word_embeddings=False, eos_token_id=50256, **SIZES
    )
    model = init_weights_like_the_book(ScratchGPTForCausalLM(config), seed=123)
    cfg = PretrainConfig(
        output_dir=output_dir, num_epochs=epochs, batch_size=2, learning_rate=4e-4, weight_decay=0.1,
        lr_schedule="constant", grad_clip=None, eval_interval=5, eval_batches=5, save_interval=None,
        sample_prompt=None, mixed_precision="no", show_progress=False, book_conventions=True,
    )  # fmt: skip
    result = pretrain(model, train, val, cfg)
    h = result.history
    print(
        f"pretrained {result.step} steps: train loss {h.train_losses[-1]:.3f}, val loss {h.val_losses[-1]:.3f}"
    )
    gpt2_hf_tokenizer().save_pretrained(output_dir)
    return output_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one epoch, 20 steps (a smoke test)")
    parser.add_argument("--work-dir", default="/tmp/scratch_gpt_book_ch06")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread: the same float sums as the recorded run of the book's code
    from scratch_gpt.finetune.classifier_pipeline import ClassifierFinetuneConfig, finetune_classifier

    work = Path(args.work_dir)
    lm = (
        pretrained_tiny_gpt(work / "pretrained-quick", 1)
        if args.quick
        else pretrained_tiny_gpt(work / "pretrained")
    )
    out = work / ("classifier-quick" if args.quick else "classifier")
    config = ClassifierFinetuneConfig(
        lm, DATA_DIR / "SMSSpamCollection.tsv", out, overwrite=True, device="cpu", book_conventions=True,
        epochs=1 if args.quick else 5, max_steps=20 if args.quick else None, eval_freq=5 if args.quick else 50,
    )  # fmt: skip
    started = time.perf_counter()
    lines: list[str] = []
    result = finetune_classifier(config, log=lines.append)
    seconds = time.perf_counter() - started
    h = result["history"]
    before = result["accuracy_before"]
    print(f"accuracy before fine-tuning (10 batches): train {before['train']:.2%}, val {before['validation']:.2%}, "
          f"test {before['test']:.2%}")  # fmt: skip
    print(f"trainable parameters: {result['trainable_params']:,} of {result['total_params']:,}")
    print("\nours | the book's code from the same weights")
    for i, (step, tr, va) in enumerate(zip(h["steps"], h["train_losses"], h["val_losses"])):
        book = (
            f"{BOOK_LOSSES[i][0]:.6f}, {BOOK_LOSSES[i][1]:.6f}"
            if i < len(BOOK_LOSSES) and not args.quick
            else ""
        )
        print(f"Step {step:06d}: Train loss {tr:.6f}, Val loss {va:.6f} | {book}")
    for i, (tr, va) in enumerate(zip(h["train_accs"], h["val_accs"])):
        book = (
            f"{BOOK_ACCS[i][0]:.2%}, {BOOK_ACCS[i][1]:.2%}" if i < len(BOOK_ACCS) and not args.quick else ""
        )
        print(f"Epoch {i + 1}: Training accuracy {tr:.2%} | Validation accuracy {va:.2%} | {book}")
    acc = result["accuracy"]
    final = (acc["train"], acc["validation"], acc["test"])
    print(f"\nfinal accuracy: train {final[0]:.2%}, validation {final[1]:.2%}, test {final[2]:.2%}")
    if BOOK_FINAL and not args.quick:
        print(
            f"the book's code: train {BOOK_FINAL[0]:.2%}, validation {BOOK_FINAL[1]:.2%}, test {BOOK_FINAL[2]:.2%}"
        )
        losses = [x for pair in zip(h["train_losses"], h["val_losses"]) for x in pair]
        book = [x for pair in BOOK_LOSSES for x in pair]
        print(
            f"max |ours - book| over {len(book)} losses: {max(abs(a - b) for a, b in zip(losses, book)):.2e}"
        )
    print("(the book, with OpenAI's GPT-2 124M: train 97.21%, validation 97.32%, test 95.67%)")
    print(f"fine-tuning took {seconds:.0f} s")


if __name__ == "__main__":
    main()
