"""Pretraining (book chapter 5) with Hugging Face ``Trainer`` instead of scratch_gpt's own loop.

The same job as ``scratch-gpt pretrain``, the Hugging Face way:

1. the corpus becomes a ``datasets.Dataset`` (``data.hf_datasets.load_text_dataset``), is tokenized and packed into
   blocks of ``--context-length`` ids with ``Dataset.map(batched=True, num_proc=...)``
   (``data.hf_datasets.tokenize_and_pack``; every document followed by ``<|endoftext|>``, ``labels == input_ids``:
   the model shifts them inside its loss); the last 10% of the blocks are held out for evaluation;
2. the tokenizer is a byte-level BPE trained on the corpus (``training.from_corpus.train_tokenizer``) or loaded
   (``--tokenizer``);
3. ``Trainer`` trains a ``ScratchGPTForCausalLM`` with AdamW (weight decay only on weight matrices, as in our
   loop: ``pretrain.param_groups``), linear warmup + cosine decay, gradient clipping at 1.0.
   **Gradient accumulation is exact**: ``ScratchGPTForCausalLM.forward`` passes ``Trainer``'s
   ``num_items_in_batch`` on to the loss, so ``--batch-size 2 --grad-accum 4`` makes the same updates as
   ``--batch-size 8`` (the loss is summed over every target token of the 8 blocks and divided once);
4. the model and tokenizer are saved in ``--output`` (loadable with ``AutoModelForCausalLM``), with a
   ``training_history.json`` in the format ``scratch_gpt.hub.model_card`` reads.

Run (from the repository root; the corpus defaults to tinyshakespeare.txt in the data folder that ``scratch-gpt data``
fills)::

    .venv/bin/python examples/pretrain_with_trainer.py --output runs/trainer-gpt --max-steps 500

Not here: multi-GPU launch settings (``accelerate launch`` / ``torchrun`` work with Trainer as usual) and
anything the library already does.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from scratch_gpt.data.downloads import data_dir, missing_message

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = data_dir() / "tinyshakespeare.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--corpus", nargs="+", default=[str(DEFAULT_CORPUS)], help="text/.jsonl files or folders"
    )
    parser.add_argument(
        "--output", dest="output_dir", required=True, help="where the model, tokenizer and history go"
    )
    parser.add_argument("--tokenizer", help="a tokenizer folder; default: train a BPE on the corpus")
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=192)
    parser.add_argument("--n-head", type=int, default=6)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=16, help="blocks per device per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--eval-steps", type=int, default=100)
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument("--num-proc", type=int, default=None, help="processes for tokenizing (datasets.map)")
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args(argv)
    missing = [c for c in args.corpus if not Path(c).exists()]
    if missing:
        hint = (
            missing_message(["tinyshakespeare.txt"])
            if args.corpus == [str(DEFAULT_CORPUS)]
            else "give existing files"
        )
        parser.error(f"--corpus {' '.join(missing)}: no such file or folder. {hint}")
    return args


def history_from_trainer(log_history: list[dict[str, Any]], tokens_per_step: int, dataset: str) -> Any:
    """Trainer's ``state.log_history`` as our ``LossHistory`` (one entry per evaluation)."""
    from scratch_gpt.training.history import LossHistory

    history = LossHistory(dataset=dataset)
    last_train = {}
    for record in log_history:
        if "loss" in record:
            last_train = record
            history.add_step(
                record["step"],
                record["step"] * tokens_per_step,
                record.get("epoch", 0.0),
                record["loss"],
                record.get("learning_rate", 0.0),
            )
        if "eval_loss" in record and record["step"] not in history.steps:  # once per step
            train_loss = last_train.get("loss", float("nan"))
            step = record["step"]
            history.add_eval(
                step, step * tokens_per_step, record.get("epoch", 0.0), train_loss, record["eval_loss"]
            )
    return history


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch
    from transformers import Trainer, TrainingArguments, default_data_collator

    from scratch_gpt import ScratchGPTConfig, ScratchGPTForCausalLM
    from scratch_gpt.constants import END_OF_TEXT
    from scratch_gpt.data.hf_datasets import load_text_dataset, tokenize_and_pack
    from scratch_gpt.data.sliding_window import iter_documents
    from scratch_gpt.training.from_corpus import load_tokenizer, train_tokenizer
    from scratch_gpt.training.pretrain import param_groups

    started = time.perf_counter()
    texts = load_text_dataset(args.corpus[0]) if len(args.corpus) == 1 else None
    if texts is None:
        import datasets

        texts = datasets.Dataset.from_dict({"text": [d for c in args.corpus for d in iter_documents(c)]})
    if args.tokenizer:
        tok = load_tokenizer(args.tokenizer, model_max_length=args.context_length)
    else:
        tok = train_tokenizer(texts["text"], args.vocab_size, model_max_length=args.context_length)
    eos_id = tok.convert_tokens_to_ids(END_OF_TEXT)
    blocks = tokenize_and_pack(texts, tok, args.context_length, eos_id=eos_id, num_proc=args.num_proc)
    n_eval = max(1, len(blocks) // 10)
    train, held_out = (
        blocks.select(range(len(blocks) - n_eval)),
        blocks.select(range(len(blocks) - n_eval, len(blocks))),
    )
    print(f"{len(blocks)} blocks of {args.context_length} tokens: {len(train)} train, {len(held_out)} eval")

    torch.manual_seed(args.seed)
    config = ScratchGPTConfig(
        vocab_size=len(tok), n_positions=args.context_length, n_embd=args.n_embd, n_layer=args.n_layer,
        n_head=args.n_head, dropout=args.dropout, eos_token_id=eos_id, bos_token_id=eos_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    model = ScratchGPTForCausalLM(config)
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr)
    targs = TrainingArguments(
        output_dir=str(Path(args.output_dir) / "trainer"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_steps,
        max_grad_norm=1.0,
        max_steps=args.max_steps,
        eval_strategy="steps",
        eval_steps=args.eval_steps,
        logging_steps=args.logging_steps,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=args.seed,
        dataloader_drop_last=True,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train,
        eval_dataset=held_out,
        data_collator=default_data_collator,
        processing_class=tok,
        optimizers=(optimizer, None),  # our decay groups; Trainer builds the warmup + cosine schedule
    )
    trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]
    trainer.save_model(args.output_dir)  # model + tokenizer, Hugging Face format
    tokens_per_step = args.batch_size * args.grad_accum * args.context_length * trainer.args.world_size
    history = history_from_trainer(trainer.state.log_history, tokens_per_step, ", ".join(args.corpus))
    history.save(args.output_dir)
    results = {
        "steps": trainer.state.global_step,
        "train_losses": history.step_log["losses"],
        "eval_loss": eval_loss,
        "eval_perplexity": math.exp(eval_loss),
        "seconds": time.perf_counter() - started,
    }
    print(f"done: {results['steps']} steps, eval loss {eval_loss:.3f} (perplexity {results['eval_perplexity']:.1f}), "
          f"{results['seconds']:.0f} s; saved to {args.output_dir}")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
