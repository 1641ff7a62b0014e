"""Chapter 6's spam classifier the Hugging Face way: ``Trainer`` + ``AutoModelForSequenceClassification`` + ``datasets``.

The same data (``classifier_data.load_spam_splits``: the book's balanced 70/10/20 split) and the same model class
as ``scratch-gpt finetune-classifier``, but the loop, batching and evaluation are ``transformers``' own:

* the splits become a ``datasets.DatasetDict`` of ``{"text", "label"}`` rows, tokenized with ``Dataset.map``;
* ``DataCollatorWithPadding`` pads each batch to its longest message and passes the ``attention_mask``, from
  which ``ScratchGPTForSequenceClassification`` finds the last real token (the book's better pooling);
* ``Trainer`` trains (AdamW, the book's lr 5e-5 and weight decay 0.1 by default, linear decay), evaluates
  accuracy every epoch through ``compute_metrics``, and ``save_model`` writes the classifier with its tokenizer.

Run (from the repository root)::

    .venv/bin/python examples/finetune_classifier_trainer.py --model runs/small-gpt --output runs/spam-trainer --freeze all

``--model`` may also be a GPT-2 folder; ``AutoModelForSequenceClassification`` then builds GPT-2's own classifier.

Not here: hand-written LoRA (use ``scratch-gpt finetune-classifier --freeze lora``) and the book's "last
position" pooling ablation, which needs every message padded to the same length.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from scratch_gpt.data.downloads import data_dir, missing_message

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = data_dir()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", required=True, help="pretrained checkpoint folder (with its tokenizer)")
    parser.add_argument(
        "--data", default=str(DEFAULT_DATA / "SMSSpamCollection.tsv"), help="label<TAB>text file"
    )
    parser.add_argument("--output", required=True, help="folder for the fine-tuned classifier")
    parser.add_argument("--freeze", choices=["all", "last_block"], default="last_block", help="what to train")
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after N steps (-1: run all epochs)")
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args(argv)
    if not Path(args.data).is_file():
        parser.error(f"--data {args.data}: no such file. " + missing_message(["SMSSpamCollection.tsv"]))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import numpy as np
    import torch
    from datasets import Dataset, DatasetDict
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    import scratch_gpt  # noqa: F401  (registers model_type "scratch_gpt" with the Auto classes)
    from scratch_gpt.finetune.classifier_data import SPAM_LABELS, load_spam_splits
    from scratch_gpt.finetune.classifier_training import apply_freeze_policy

    set_seed(args.seed)
    splits = load_spam_splits(args.data)
    data = DatasetDict(
        {
            name: Dataset.from_dict({"text": [ex.text for ex in split], "label": [ex.label for ex in split]})
            for name, split in splits._asdict().items()
        }
    )
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:  # GPT-2 has no pad token; the book pads with <|endoftext|>
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model,
        num_labels=len(SPAM_LABELS),
        id2label={i: name for name, i in SPAM_LABELS.items()},
        label2id=dict(SPAM_LABELS),
        pad_token_id=tokenizer.pad_token_id,
    )
    if type(model).__name__ == "ScratchGPTForSequenceClassification":
        apply_freeze_policy(model, args.freeze)
    context = model.config.max_position_embeddings
    data = data.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=context),
        batched=True,
        remove_columns="text",
    )

    def compute_metrics(prediction: Any) -> dict[str, float]:
        return {
            "accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())
        }

    training_args = TrainingArguments(
        output_dir=str(Path(args.output) / "trainer"),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        eval_strategy="epoch",
        save_strategy="no",
        logging_steps=50,
        report_to="none",
        seed=args.seed,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )
    train_output = trainer.train()
    results = {
        name: trainer.evaluate(data[name], metric_key_prefix=name) for name in ("train", "validation", "test")
    }
    trainer.save_model(args.output)  # the classifier and its tokenizer
    summary = {
        "accuracy": {name: metrics[f"{name}_accuracy"] for name, metrics in results.items()},
        "loss": {name: metrics[f"{name}_loss"] for name, metrics in results.items()},
        "train_seconds": train_output.metrics["train_runtime"],
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "steps": train_output.global_step,
        "settings": vars(args),
    }
    (Path(args.output) / "results.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    for name, accuracy in summary["accuracy"].items():
        print(f"{name:>10} accuracy: {accuracy * 100:6.2f}%")
    return summary


if __name__ == "__main__":
    main()
