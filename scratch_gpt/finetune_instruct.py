"""Instruction fine-tuning end to end (book chapter 7): train, save with a chat template, answer, evaluate.

The book's recipe, in order, each step a function here:

1. load a pretrained causal LM and its tokenizer (``chat.load_model_and_tokenizer``), the records
   (``instruction.load_instruction_data``) and split them 85/10/5 (``split_instruction_data``);
2. ``make_instruction_loaders``: ``InstructionDataset`` + ``custom_collate_fn`` (pad with end-of-text, targets
   -100 past the first end-of-text, cut to the context length, optionally mask the prompt tokens);
3. ``train_model_simple``: chapter 5's loop (AdamW, lr 5e-5, weight decay 0.1, 2 epochs, batch 8) with the
   train/val loss every ``eval_freq`` steps and a greedy sample for the first validation prompt after every
   epoch; optionally LoRA (appendix E) on the blocks' Linear layers, merged back before saving;
4. ``save_instruction_checkpoint``: the model + tokenizer, with the Alpaca chat template attached
   (``chat.CHAT_TEMPLATE``), as a Hugging Face folder, written to a temp folder and moved in file by file;
5. ``generate_test_responses``: a greedy answer to every test instruction (the book's
   ``instruction-data-with-response.json``, key ``"model_response"``);
6. ``evaluate_instruction_model``: loss and perplexity on the *responses* of held-out records (prompt tokens
   masked, the closing end-of-text included, averaged per token), the book's unmasked batch loss, and ROUGE-L.

ROUGE-L is a word-overlap score, **not** a judgment of correctness: the book grades answers with a Llama 3
judge (Ollama), which cannot run here, so no judged score is reported.

``finetune_instruct`` runs all of it and writes into ``output_dir``: the checkpoint (``config.json``,
``model.safetensors``, ``tokenizer.json``, ``chat_template.jinja``, ...), ``training_history.json``,
``loss_plot.png``, ``test_responses.json`` and ``results.json``.

Deliberately not here: resuming, multi-GPU, mixed precision and learning-rate schedules (see ``pretrain.py``;
the book's chapter 7 loop has none of them), judge-model scoring, and peft adapters (see
``examples/finetune_instruct_trainer.py`` for the ``Trainer`` route).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from .atomic_io import atomic_write_text, write_dir_atomically
from .chat import add_chat_template, build_prompt, load_model_and_tokenizer
from .checkpoints import ensure_writable_dir
from .generation import generate
from .instruction import (
    InstructionDataset,
    custom_collate_fn,
    extract_response,
    load_instruction_data,
    rouge_l_f1,
    split_instruction_data,
)
from .lora import count_parameters, freeze_for_lora, merge_lora, replace_linear_with_lora
from .loss import cross_entropy
from .loss_history import LossHistory
from .pretrain import calc_logits, calc_loss_batch, calc_loss_loader

__all__ = [
    "LORA_TARGETS",
    "TrainingRun",
    "evaluate_instruction_model",
    "finetune_instruct",
    "generate_test_responses",
    "make_instruction_loaders",
    "response_loss",
    "save_instruction_checkpoint",
    "train_model_simple",
]

# LoRA goes on every Linear inside the transformer blocks; the LM head stays as it is (it is tied to the
# token embedding, and a merged LoRA delta would untie it).
LORA_TARGETS: tuple[str, ...] = (
    "att.W_query",
    "att.W_key",
    "att.W_value",
    "att.out_proj",
    "ff.fc_in",
    "ff.fc_out",
)
ROUGE_NOTE = (
    "ROUGE-L F1 is a word-overlap score between the model's answer and the reference answer (longest common "
    "subsequence of words), not a measure of correctness; no judge model was used."
)


def _silent(_: str) -> None:
    return None


def make_instruction_loaders(
    splits: Any,
    tokenizer: Any,
    *,
    batch_size: int,
    context_length: int,
    mask_instruction: bool = False,
    seed: int = 123,
) -> dict[str, DataLoader]:
    """DataLoaders of ``(inputs, targets)`` for the book's splits.

    ``train`` is shuffled (a generator seeded with ``seed``) and drops the last incomplete batch, as in the
    book; ``val``/``test`` keep their order and every record. ``val_responses``/``test_responses`` always mask
    the prompt tokens: their loss is the loss of the answers alone.
    """
    eos_id = getattr(tokenizer, "eos_token_id", None)
    if eos_id is None:
        raise ValueError(
            "the tokenizer has no eos_token_id; instruction data is padded and ended with end-of-text"
        )
    datasets = {
        name: InstructionDataset(getattr(splits, name), tokenizer, include_instruction_length=True)
        for name in ("train", "validation", "test")
    }
    collate = partial(custom_collate_fn, pad_token_id=eos_id, allowed_max_length=context_length)
    train_collate = partial(collate, mask_instruction=mask_instruction)
    answers_only = partial(collate, mask_instruction=True)
    if len(datasets["train"]) < batch_size:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {len(datasets['train'])} training records, so no full "
            "batch exists (the book drops incomplete batches); use a smaller batch_size or more data"
        )
    generator = torch.Generator().manual_seed(seed)
    return {
        "train": DataLoader(
            datasets["train"],
            batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=train_collate,
            generator=generator,
        ),
        "val": DataLoader(datasets["validation"], batch_size, collate_fn=train_collate),
        "test": DataLoader(datasets["test"], batch_size, collate_fn=train_collate),
        "val_responses": DataLoader(datasets["validation"], batch_size, collate_fn=answers_only),
        "test_responses": DataLoader(datasets["test"], batch_size, collate_fn=answers_only),
    }


@torch.no_grad()
def response_loss(model: nn.Module, data_loader: DataLoader, device: Any = None) -> tuple[float, int]:
    """Mean cross-entropy per target token over a whole loader, and the number of target tokens.

    Unlike the book's ``calc_loss_loader`` (a mean of batch means), every token counts once, so
    ``exp(loss)`` is the perplexity of the text. With an answers-only loader (prompt masked) this is the loss of
    the held-out *responses*, end-of-text token included.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for inputs, targets in data_loader:
        if device is not None:
            inputs, targets = inputs.to(device), targets.to(device)
        logits = calc_logits(model, inputs)  # (B, T, vocab_size)
        total += cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()  # (B*T, V)
        count += int((targets != -100).sum())
    model.train(was_training)
    if count == 0:
        return float("nan"), 0
    return total / count, count


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def _greedy_answer(model: nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int) -> tuple[str, bool]:
    """The greedy answer to ``prompt`` and whether it had to be cut short by the context length."""
    context = int(model.config.n_positions)
    prompt_ids = tokenizer.encode(prompt)
    room = context - len(prompt_ids)
    if room <= 0:
        return "", True
    device = next(model.parameters()).device
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, T)
    out = generate(model, idx, min(max_new_tokens, room), eos_id=tokenizer.eos_token_id)
    new_ids = out[0, len(prompt_ids) :].tolist()
    stopped = tokenizer.eos_token_id in new_ids
    truncated = not stopped and room < max_new_tokens and len(new_ids) == room  # the context ran out
    return extract_response(tokenizer.decode(new_ids)), truncated


class TrainingRun(NamedTuple):
    """What ``train_model_simple`` returns: the loss history, the per-epoch samples, steps and tokens seen."""

    history: LossHistory
    samples: list[dict[str, Any]]
    steps: int
    tokens_seen: int


def train_model_simple(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: Any,
    num_epochs: int,
    eval_freq: int,
    eval_iter: int,
    start_context: str,
    tokenizer: Any,
    *,
    max_steps: int | None = None,
    grad_clip: float | None = None,
    log_fn: Callable[[str], None] = print,
) -> TrainingRun:
    """Chapter 5's ``train_model_simple``, as chapter 7 uses it: returns the loss history and the samples.

    Every ``eval_freq`` optimizer steps the train and validation loss over ``eval_iter`` batches are recorded;
    after every epoch the model answers ``start_context`` greedily (the book's ``generate_and_print_sample``).
    ``max_steps`` stops early (for quick runs).
    """
    history, samples = LossHistory(), []
    tokens_seen, step = 0, 0
    batches_per_epoch = max(len(train_loader), 1)
    for epoch in range(num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            tokens_seen += input_batch.numel()
            step += 1
            epochs_done = step / batches_per_epoch
            history.add_step(step, tokens_seen, epochs_done, loss.item(), optimizer.param_groups[0]["lr"])
            if step % eval_freq == 0:
                model.eval()
                train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
                val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
                model.train()
                history.add_eval(step, tokens_seen, epochs_done, train_loss, val_loss)
                log_fn(
                    f"Ep {epoch + 1} (Step {step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
                )
            if max_steps is not None and step >= max_steps:
                break
        model.eval()
        answer, _ = _greedy_answer(model, tokenizer, start_context, max_new_tokens=35)
        samples.append({"epoch": epoch + 1, "step": step, "prompt": start_context, "response": answer})
        log_fn(f"Sample after epoch {epoch + 1}: {answer!r}")
        if max_steps is not None and step >= max_steps:
            break
    return TrainingRun(history, samples, step, tokens_seen)


def generate_test_responses(
    model: nn.Module,
    tokenizer: Any,
    records: Sequence[dict[str, str]],
    *,
    max_new_tokens: int = 256,
    log_fn: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Answer every record greedily; returns copies with ``"model_response"`` and ``"rouge_l_f1"`` added.

    The prompt is the chat template's (``format_input`` + ``"\\n\\n### Response:\\n"``); the answer stops at
    end-of-text, is cut out with ``extract_response`` and may be at most the room the context leaves.
    ``"rouge_l_f1"`` is an overlap score (see the module docstring). ``"truncated"`` marks answers cut short
    by the context length.
    """
    model.eval()
    answered = []
    for index, record in enumerate(records):
        prompt = build_prompt(tokenizer, record["instruction"], record.get("input", ""))
        response, truncated = _greedy_answer(model, tokenizer, prompt, max_new_tokens)
        answered.append(
            {
                **record,
                "model_response": response,
                "rouge_l_f1": rouge_l_f1(response, record["output"]),
                "truncated": truncated,
            }
        )
        if (index + 1) % 10 == 0 or index + 1 == len(records):
            log_fn(f"answered {index + 1}/{len(records)} test instructions")
    return answered


def evaluate_instruction_model(
    model: nn.Module, loaders: dict[str, DataLoader], device: Any = None, train_batches: int | None = 10
) -> dict[str, float | int]:
    """Held-out numbers: the book's batch-mean loss (train/val/test) and per-token response loss/perplexity.

    Validation and test use every record; the training loss uses the first ``train_batches`` batches of the
    (shuffled) training loader, as the book's ``evaluate_model`` does (None: all of them, slow on a CPU).
    """
    model.eval()
    metrics: dict[str, float | int] = {
        "train_loss": calc_loss_loader(loaders["train"], model, device, num_batches=train_batches),
        "val_loss": calc_loss_loader(loaders["val"], model, device),
        "test_loss": calc_loss_loader(loaders["test"], model, device),
    }
    for split in ("val", "test"):
        loss, tokens = response_loss(model, loaders[f"{split}_responses"], device)
        metrics[f"{split}_response_loss"] = loss
        metrics[f"{split}_response_perplexity"] = _perplexity(loss)
        metrics[f"{split}_response_tokens"] = tokens
    return metrics


def save_instruction_checkpoint(model: nn.Module, tokenizer: Any, output_dir: str | os.PathLike[str]) -> Path:
    """Save ``model`` and ``tokenizer`` (with the Alpaca chat template) into ``output_dir``, atomically per file.

    Everything is written to a temporary sibling folder first and then moved in with ``os.replace``,
    so a crash never leaves a half-written file. ``generation_config`` gets the tokenizer's eos/pad ids, so
    ``model.generate()`` stops at end-of-text too.
    """
    output_dir = ensure_writable_dir(output_dir)
    add_chat_template(tokenizer)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))

    return write_dir_atomically(output_dir, write)


def _check_settings(**values: Any) -> None:
    for name in (
        "epochs",
        "batch_size",
        "eval_freq",
        "eval_iter",
        "max_new_tokens",
        "max_steps",
        "lora_rank",
    ):
        value = values.get(name)
        if value is None and name in ("max_steps", "lora_rank"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(values["lr"], (int, float)) and values["lr"] > 0):
        raise ValueError(f"lr must be a positive number (the book uses 5e-5), got {values['lr']!r}")
    if values["weight_decay"] < 0:
        raise ValueError(f"weight_decay must be >= 0, got {values['weight_decay']}")
    if values["num_test"] is not None and (not isinstance(values["num_test"], int) or values["num_test"] < 0):
        raise ValueError(
            f"num_test must be None (all test records) or an integer >= 0, got {values['num_test']!r}"
        )


def finetune_instruct(
    model_dir: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    epochs: int = 2,
    batch_size: int = 8,
    lr: float = 5e-5,
    weight_decay: float = 0.1,
    mask_instruction: bool = False,
    lora_rank: int | None = None,
    lora_alpha: float = 16.0,
    seed: int = 123,
    eval_freq: int = 5,
    eval_iter: int = 5,
    max_steps: int | None = None,
    grad_clip: float | None = None,
    dropout: float | None = None,
    max_new_tokens: int = 256,
    num_test: int | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    device: str | None = None,
    log_fn: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Instruction-fine-tune the model in ``model_dir`` on ``data_path``; write everything into ``output_dir``.

    Args:
        model_dir: a causal-LM checkpoint folder with its tokenizer (ours, or one converted from GPT-2).
        data_path: instruction records, JSON list or JSON Lines (the book's ``instruction-data.json``).
        output_dir: where the fine-tuned checkpoint and the reports go (created; must differ from model_dir).
        epochs, batch_size, lr, weight_decay: the book's chapter 7 settings by default (2, 8, 5e-5, 0.1).
        mask_instruction: also ignore the prompt tokens in the training loss (the book's exercise 7.2).
        lora_rank, lora_alpha: train LoRA adapters (book scaling, ``alpha * x @ A @ B``) on ``LORA_TARGETS``
            instead of all weights; they are merged into the weights before saving.
        seed: seeds the weights' RNG (dropout, LoRA init) and the shuffling.
        eval_freq, eval_iter: evaluate every ``eval_freq`` steps on ``eval_iter`` batches (the book: 5 and 5).
        max_steps: stop after this many optimizer steps (None: run all epochs).
        grad_clip: clip the gradient norm (None: no clipping, as in the book).
        dropout: override the checkpoint's dropout rate (None: keep it).
        max_new_tokens: the longest answer generated per test instruction.
        num_test: answer only the first N test records (None: all of them).
        on_error: bad records raise (``"raise"``) or are skipped with a warning (``"skip"``).
        device: ``"cpu"``, ``"cuda"``, ...; None picks CUDA when available.
        log_fn: progress lines go here (None: silent).

    Returns:
        The contents of ``results.json``: settings, split sizes, parameter counts, time, losses before and
        after, held-out response loss/perplexity, mean ROUGE-L (an overlap score), samples and file paths.
    """
    _check_settings(
        epochs=epochs,
        batch_size=batch_size,
        eval_freq=eval_freq,
        eval_iter=eval_iter,
        max_new_tokens=max_new_tokens,
        max_steps=max_steps,
        lora_rank=lora_rank,
        lr=lr,
        weight_decay=weight_decay,
        num_test=num_test,
    )
    log = log_fn or _silent
    output_dir = Path(output_dir)
    if Path(model_dir).resolve() == output_dir.resolve():
        raise ValueError(
            f"output_dir {str(output_dir)!r} is the model folder; write the fine-tuned model elsewhere"
        )
    started = time.perf_counter()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    records = load_instruction_data(data_path, on_error=on_error)
    splits = split_instruction_data(records)
    model_kwargs = {} if dropout is None else {"dropout": dropout}
    model, tokenizer = load_model_and_tokenizer(model_dir, device=device, **model_kwargs)
    ensure_writable_dir(output_dir)
    context_length = int(model.config.n_positions)
    loaders = make_instruction_loaders(
        splits,
        tokenizer,
        batch_size=batch_size,
        context_length=context_length,
        mask_instruction=mask_instruction,
        seed=seed,
    )
    log(f"{len(splits.train)} train / {len(splits.validation)} validation / {len(splits.test)} test records")

    torch.manual_seed(seed)
    total_parameters = count_parameters(model)
    if lora_rank is not None:
        replace_linear_with_lora(model, lora_rank, lora_alpha, target_modules=list(LORA_TARGETS))
        freeze_for_lora(model)
        model.to(device)
    trainable = count_parameters(model, trainable_only=True)
    log(f"trainable parameters: {trainable:,} of {total_parameters:,}")

    model.eval()
    before = {
        "train_loss": calc_loss_loader(loaders["train"], model, device, num_batches=eval_iter),
        "val_loss": calc_loss_loader(loaders["val"], model, device, num_batches=eval_iter),
    }
    log(f"before fine-tuning: train loss {before['train_loss']:.3f}, val loss {before['val_loss']:.3f}")
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
    )
    start_context = build_prompt(
        tokenizer, splits.validation[0]["instruction"], splits.validation[0]["input"]
    )
    train_started = time.perf_counter()
    run = train_model_simple(
        model,
        loaders["train"],
        loaders["val"],
        optimizer,
        device,
        epochs,
        eval_freq,
        eval_iter,
        start_context,
        tokenizer,
        max_steps=max_steps,
        grad_clip=grad_clip,
        log_fn=log,
    )
    train_seconds = time.perf_counter() - train_started
    if lora_rank is not None:
        merge_lora(model)
    for param in model.parameters():
        param.requires_grad_(True)

    after = evaluate_instruction_model(model, loaders, device)
    log(
        f"after fine-tuning: val response loss {after['val_response_loss']:.3f} "
        f"(perplexity {after['val_response_perplexity']:.2f}), test response loss {after['test_response_loss']:.3f} "
        f"(perplexity {after['test_response_perplexity']:.2f})"
    )
    test_records = splits.test if num_test is None else splits.test[:num_test]
    generation_started = time.perf_counter()
    answered = generate_test_responses(
        model, tokenizer, test_records, max_new_tokens=max_new_tokens, log_fn=log
    )
    generation_seconds = time.perf_counter() - generation_started
    rouge = sum(r["rouge_l_f1"] for r in answered) / len(answered) if answered else float("nan")
    log(f"mean ROUGE-L F1 (word overlap, not correctness) on {len(answered)} test answers: {rouge:.3f}")

    save_instruction_checkpoint(model, tokenizer, output_dir)
    history_path = run.history.save(output_dir)
    plot_path = run.history.plot(output_dir / "loss_plot.png")
    responses_path = output_dir / "test_responses.json"
    atomic_write_text(responses_path, json.dumps(answered, indent=1, ensure_ascii=False))
    results: dict[str, Any] = {
        "model_dir": str(model_dir),
        "data_path": str(data_path),
        "output_dir": str(output_dir),
        "settings": {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "mask_instruction": mask_instruction,
            "lora_rank": lora_rank,
            "lora_alpha": lora_alpha if lora_rank is not None else None,
            "seed": seed,
            "eval_freq": eval_freq,
            "eval_iter": eval_iter,
            "max_steps": max_steps,
            "grad_clip": grad_clip,
            "dropout": dropout,
            "max_new_tokens": max_new_tokens,
            "context_length": context_length,
            "device": str(device),
        },
        "num_records": {
            "train": len(splits.train),
            "validation": len(splits.validation),
            "test": len(splits.test),
        },
        "total_parameters": total_parameters,
        "trainable_parameters": trainable,
        "steps": run.steps,
        "tokens_seen": run.tokens_seen,
        "train_seconds": train_seconds,
        "generation_seconds": generation_seconds,
        "total_seconds": time.perf_counter() - started,
        "before": before,
        "after": after,
        "rouge_l_f1_overlap_mean": rouge,
        "rouge_l_note": ROUGE_NOTE,
        "num_test_answered": len(answered),
        "samples": run.samples,
        "examples": answered[:3],
        "files": {
            "checkpoint": str(output_dir),
            "loss_history": str(history_path),
            "loss_plot": str(plot_path) if plot_path else None,
            "test_responses": str(responses_path),
            "results": str(output_dir / "results.json"),
        },
    }
    atomic_write_text(output_dir / "results.json", json.dumps(results, indent=1, ensure_ascii=False))
    return results
