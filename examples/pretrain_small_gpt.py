"""Pretrain a small GPT from scratch on the text available here (book chapters 2 and 5), for fine-tuning later.

OpenAI's GPT-2 weights cannot be downloaded here, so chapter 6's spam classifier starts from this model instead.
The recipe, on the reference data (the folder ``scratch-gpt data`` fills: ``$SCRATCH_GPT_DATA``, else the user
cache):

1. train a byte-level BPE (``BPETokenizer.train``, 4,096 tokens including ``<|endoftext|>`` and ``<|pad|>``) on
   tinyshakespeare.txt + the-verdict.txt (about 1.1 MB of text, a few seconds);
2. tokenize both texts (an ``<|endoftext|>`` between them; about 350k tokens), split 90/10, cut into
   non-overlapping windows of the context length (``GPTDatasetV1``);
3. pretrain a 4-layer, 128-wide GPT (context 128, about 1.3M parameters) with ``scratch_gpt.training.pretrain.pretrain``
   (AdamW, warmup + cosine decay, gradient clipping) and save it with its tokenizer as a Hugging Face checkpoint.

Run (from the repository root; about 10 minutes on 2 CPU cores)::

    .venv/bin/python examples/pretrain_small_gpt.py --output runs/small-gpt

Then fine-tune it: ``scratch-gpt finetune-classifier --model runs/small-gpt ...`` (see docs/finetuning.md).

Not here: anything the library does not already do; this script only wires library calls together.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scratch_gpt.data.downloads import data_dir, missing_message

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = data_dir()
CORPUS_FILES = ("tinyshakespeare.txt", "the-verdict.txt")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--output",
        dest="output_dir",
        required=True,
        help="where the checkpoint (model + tokenizer) is written",
    )
    parser.add_argument(
        "--data-dir", default=str(DEFAULT_DATA), help="folder holding tinyshakespeare.txt etc."
    )
    parser.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary size, specials included")
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument(
        "--max-steps", type=int, default=300, help="optimizer steps; 0 saves the untrained model (a baseline)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--eval-interval", type=int, default=50)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args(argv)
    missing = [name for name in CORPUS_FILES if not (Path(args.data_dir) / name).is_file()]
    if missing:
        parser.error(missing_message(missing, args.data_dir))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from scratch_gpt import BPETokenizer, ScratchGPTConfig, ScratchGPTForCausalLM, ScratchGPTTokenizerFast
    from scratch_gpt.data.sliding_window import GPTDatasetV1, train_val_split
    from scratch_gpt.training.pretrain import PretrainConfig, pretrain

    started = time.perf_counter()
    texts = [(Path(args.data_dir) / name).read_text(encoding="utf-8") for name in CORPUS_FILES]
    bpe = BPETokenizer.train(texts, args.vocab_size, special_tokens=("<|endoftext|>", "<|pad|>"))
    tokenizer = ScratchGPTTokenizerFast.from_bpe(bpe, model_max_length=args.context_length)
    eos = bpe.special_tokens["<|endoftext|>"]
    ids: list[int] = []
    for text in texts:
        ids += bpe.encode_ordinary(text) + [eos]
    train_ids, val_ids = train_val_split(ids, 0.9)
    train_data = GPTDatasetV1(train_ids, max_length=args.context_length, stride=args.context_length)
    val_data = GPTDatasetV1(val_ids, max_length=args.context_length, stride=args.context_length)
    print(
        f"tokenizer: {bpe} ({time.perf_counter() - started:.1f} s); {len(ids):,} tokens, "
        f"{len(train_data)} train / {len(val_data)} val windows"
    )

    torch.manual_seed(args.seed)
    config = ScratchGPTConfig(
        vocab_size=len(tokenizer),
        n_positions=args.context_length,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        dropout=args.dropout,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = ScratchGPTForCausalLM(config)
    print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters")
    if args.max_steps == 0:  # the "no pretraining" baseline: same tokenizer and sizes, random weights
        model.save_pretrained(args.output_dir)
        tokenizer.save_pretrained(args.output_dir)
        print(f"saved the untrained model to {args.output_dir}")
        return
    result = pretrain(
        model,
        train_data,
        val_data,
        PretrainConfig(
            output_dir=args.output_dir,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            min_lr=args.lr / 10,
            warmup_steps=args.warmup_steps,
            eval_interval=args.eval_interval,
            eval_batches=10,
            sample_prompt="First Citizen:",
            seed=args.seed,
            mixed_precision="no",
            show_progress=False,
        ),
        tokenizer=tokenizer,
    )
    last = result.history.last_eval()
    print(f"done in {time.perf_counter() - started:.0f} s: step {result.step}, {last}")
    print(f"saved to {result.output_dir}")


if __name__ == "__main__":
    main()
