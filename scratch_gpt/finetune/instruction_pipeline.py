"""Instruction fine-tuning end to end (book chapter 7): train, save with a chat template, answer, evaluate.

The book's recipe, in order, and where each step lives:

1. load a pretrained causal LM and its tokenizer (``chat.load_model_and_tokenizer``), the records
   (``instruction.load_instruction_data``) and split them 85/10/5 (``instruction.split_instruction_data``);
2. ``instruction_training.make_instruction_loaders``: ``InstructionDataset`` + ``custom_collate_fn`` (pad with
   end-of-text, targets -100 past the first end-of-text, cut to the context length, optionally mask the prompt
   tokens);
3. ``instruction_training.train_model_simple``: chapter 5's loop (AdamW, lr 5e-5, weight decay 0.1, 2 epochs,
   batch 8) with the train/val loss every ``eval_freq`` steps and a greedy sample for the first validation
   prompt after every epoch; optionally LoRA (appendix E, ``lora.py``) on the blocks' Linear layers
   (``LORA_TARGETS``, here), merged back before saving;
4. ``save_instruction_checkpoint`` (here): the model + tokenizer, with the Alpaca chat template attached
   (``chat.CHAT_TEMPLATE``), as a Hugging Face folder, written to a temp folder and moved in file by file;
5. ``instruction_training.generate_test_responses``: a greedy answer to every test instruction (the book's
   ``instruction-data-with-response.json``, key ``"model_response"``) with its ROUGE-L F1;
6. ``instruction_training.evaluate_instruction_model``: loss and perplexity on the *responses* of held-out
   records (prompt tokens masked, the closing end-of-text included, averaged per token) and the book's
   unmasked batch loss; the mean ROUGE-L is computed here.

ROUGE-L is a word-overlap score, **not** a judgment of correctness: the book grades answers with a Llama 3
judge (Ollama), which cannot run here, so no judged score is reported.

``finetune_instruct`` (here) runs all of it and writes into ``output_dir``: the checkpoint (``config.json``,
``model.safetensors``, ``tokenizer.json``, ``chat_template.jinja``, ...), ``training_history.json``,
``loss_plot.png``, ``test_responses.json`` and ``results.json``.

Deliberately not here: the chapter 7 pieces that work on a model that is already loaded (loaders, training
loop, answering, evaluation: ``instruction_training.py``); resuming, multi-GPU, mixed precision and
learning-rate schedules (see ``pretrain.py``; the book's chapter 7 loop has none of them), judge-model
scoring, and peft adapters (see ``examples/finetune_instruct_trainer.py`` for the ``Trainer`` route).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..atomic_io import atomic_write_text, write_dir_atomically
from ..kernels import use_fast_kernels
from ..training.checkpoints import ensure_writable_dir
from ..training.pretrain import calc_loss_loader
from .chat import add_chat_template, build_prompt, load_model_and_tokenizer
from .instruction_data import load_instruction_data, split_instruction_data
from .instruction_training import (
    ROUGE_NOTE,
    evaluate_instruction_model,
    generate_test_responses,
    make_instruction_loaders,
    train_model_simple,
)
from .lora import count_parameters, freeze_for_lora, merge_lora, replace_linear_with_lora

__all__ = [
    "LORA_TARGETS",
    "finetune_instruct",
    "save_instruction_checkpoint",
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


def _silent(_: str) -> None:
    return None


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
    use_fast_kernels(model)  # same math, faster CPU kernels (scratch_gpt.kernels)
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
