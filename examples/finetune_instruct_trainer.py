"""Instruction fine-tuning (book chapter 7) with Hugging Face ``Trainer`` instead of the book's loop.

The same data, prompt format and evaluation as ``scratch-gpt finetune-instruct`` (``scratch_gpt.finetune.instruction_pipeline``),
with the training done by ``transformers.Trainer``:

1. the training texts are made by the tokenizer's chat template: a user message (instruction, optional
   ``"input"``) plus an assistant message (the reference output) renders exactly as the book's
   ``format_input(entry) + "\\n\\n### Response:\\n" + output`` followed by ``<|endoftext|>``;
2. ``labels`` are the input ids (``transformers`` shifts them inside the loss), ``-100`` on padding and, with
   ``--mask-instruction``, on the tokens of ``format_input(entry)`` too (exercise 7.2); right padding with the tokenizer's ``<|pad|>``;
3. ``Trainer`` with the book's settings (AdamW, lr 5e-5, weight decay 0.1, constant learning rate, 2 epochs,
   8 records per optimizer step). **Gradient accumulation is exact**: ``ScratchGPTForCausalLM.forward`` hands
   ``Trainer``'s ``num_items_in_batch`` to the loss, so ``--batch-size 4 --grad-accum 2`` makes the same
   updates as ``--batch-size 8`` (the loss is summed over all label tokens of the 8 records and divided once);
4. the library's evaluation and saving: held-out response loss/perplexity, greedy answers for the test split
   with the ROUGE-L overlap score, the checkpoint with its chat template, ``results.json``.

Run (from the repository root)::

    .venv/bin/python examples/finetune_instruct_trainer.py --model runs/small-gpt --output runs/instruct-trainer

Not here: peft adapters (see docs/finetuning.md), multi-GPU launch settings, and logic the library already has.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from scratch_gpt.data.downloads import data_dir, missing_message

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = data_dir() / "instruction-data.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", required=True, help="pretrained checkpoint folder (model + tokenizer)")
    parser.add_argument(
        "--data", default=str(DEFAULT_DATA), help="instruction records (.json list or .jsonl)"
    )
    parser.add_argument(
        "--output", dest="output_dir", required=True, help="where the fine-tuned checkpoint and reports go"
    )
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch-size", type=int, default=8, help="records per device per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--mask-instruction", action="store_true", help="no loss on the prompt tokens")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest generated test answer")
    parser.add_argument("--num-test", type=int, default=None, help="answer only the first N test records")
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args(argv)
    if not Path(args.data).is_file():
        parser.error(f"--data {args.data}: no such file. " + missing_message(["instruction-data.json"]))
    return args


def encode_record(
    record: dict[str, str], tokenizer: Any, context_length: int, mask_instruction: bool
) -> dict:
    """Token ids and labels of one record, built with the chat template."""
    user = {"role": "user", "content": record["instruction"], "input": record.get("input", "")}
    text = tokenizer.apply_chat_template(
        [user, {"role": "assistant", "content": record["output"]}], tokenize=False
    )
    input_ids = tokenizer.encode(text)[:context_length]
    labels = list(input_ids)
    if mask_instruction:  # the book's exercise 7.2: no loss on the tokens of format_input(entry)
        prompt_ids = tokenizer.encode(tokenizer.apply_chat_template([user], tokenize=False))
        prompt_length = next(
            (i for i, (a, b) in enumerate(zip(prompt_ids, input_ids)) if a != b),
            min(len(prompt_ids), len(input_ids)),
        )  # the common prefix, in case BPE merges across the prompt/response boundary
        labels[:prompt_length] = [-100] * prompt_length
    return {"input_ids": input_ids, "labels": labels}


def make_collator(pad_token_id: int):
    """Right-pad a list of ``{"input_ids", "labels"}`` into tensors; padding gets label -100 and mask 0."""
    import torch

    def collate(features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        batch = {"input_ids": [], "labels": [], "attention_mask": []}
        for f in features:
            pad = longest - len(f["input_ids"])
            batch["input_ids"].append(f["input_ids"] + [pad_token_id] * pad)
            batch["labels"].append(f["labels"] + [-100] * pad)
            batch["attention_mask"].append([1] * len(f["input_ids"]) + [0] * pad)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}  # each (B, T)

    return collate


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from scratch_gpt.finetune.chat import add_chat_template, load_model_and_tokenizer
    from scratch_gpt.finetune.instruction_data import load_instruction_data, split_instruction_data
    from scratch_gpt.finetune.instruction_pipeline import save_instruction_checkpoint
    from scratch_gpt.finetune.instruction_training import (
        evaluate_instruction_model,
        generate_test_responses,
        make_instruction_loaders,
    )
    from scratch_gpt.training.checkpoints import atomic_write_text

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(args.model)
    add_chat_template(tokenizer)
    if tokenizer.pad_token_id is None:
        raise ValueError(f"the tokenizer in {args.model} has no pad token; build it with a '<|pad|>' token")
    context_length = model.config.n_positions
    splits = split_instruction_data(load_instruction_data(args.data))
    columns = {
        name: Dataset.from_list(
            [encode_record(r, tokenizer, context_length, args.mask_instruction) for r in records]
        )
        for name, records in (("train", splits.train), ("validation", splits.validation))
    }
    training_args = TrainingArguments(
        output_dir=str(Path(args.output_dir) / "trainer"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        lr_scheduler_type="constant",  # the book's chapter 7 loop keeps the learning rate fixed
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        eval_strategy="epoch",
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        seed=args.seed,
        remove_unused_columns=False,
        dataloader_drop_last=True,  # as the book's training loader
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=columns["train"],
        eval_dataset=columns["validation"],
        data_collator=make_collator(tokenizer.pad_token_id),
        processing_class=tokenizer,
    )
    train_output = trainer.train()
    train_seconds = time.perf_counter() - started

    model = trainer.model.eval()
    device = next(model.parameters()).device
    loaders = make_instruction_loaders(
        splits, tokenizer, batch_size=args.batch_size, context_length=context_length, seed=args.seed
    )
    metrics = evaluate_instruction_model(model, loaders, device)
    test_records = splits.test if args.num_test is None else splits.test[: args.num_test]
    answered = generate_test_responses(model, tokenizer, test_records, max_new_tokens=args.max_new_tokens)
    output_dir = save_instruction_checkpoint(model, tokenizer, args.output_dir)
    results = {
        "route": "transformers.Trainer",
        "settings": vars(args),
        "train_loss": train_output.training_loss,
        "steps": train_output.global_step,
        "train_seconds": train_seconds,
        "after": metrics,
        "rouge_l_f1_overlap_mean": sum(a["rouge_l_f1"] for a in answered) / max(len(answered), 1),
        "log_history": trainer.state.log_history,
    }
    atomic_write_text(output_dir / "test_responses.json", json.dumps(answered, indent=1, ensure_ascii=False))
    atomic_write_text(output_dir / "results.json", json.dumps(results, indent=1, default=str))
    print(
        f"{results['steps']} steps in {train_seconds:.0f} s; test response loss {metrics['test_response_loss']:.3f} "
        f"(perplexity {metrics['test_response_perplexity']:.2f}); ROUGE-L F1 overlap "
        f"{results['rouge_l_f1_overlap_mean']:.3f}; saved to {output_dir}"
    )
    return results


if __name__ == "__main__":
    main()
