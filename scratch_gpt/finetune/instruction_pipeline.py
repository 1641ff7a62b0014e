"""Instruction fine-tuning end to end (book chapter 7): train, save with a chat template, answer, evaluate.

The book's recipe, in order, and where each step lives:

1. load a pretrained causal LM and its tokenizer (``chat.load_model_and_tokenizer``), the records
   (``instruction_data.load_instruction_data``) and split them 85/10/5
   (``instruction_data.split_instruction_data``);
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

``finetune_instruct(InstructFinetuneConfig(model_dir, data_path, output_dir, ...))`` (here) runs all of it in
five steps (load -> data -> train -> evaluate -> save) and writes into ``output_dir``: the checkpoint
(``config.json``, ``model.safetensors``, ``tokenizer.json``, ``chat_template.jinja``, ...),
``training_history.json``, ``loss_plot.png``, ``test_responses.json`` and ``results.json`` (whose ``settings``
are ``asdict(config)``).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..atomic_io import atomic_write_text, write_dir_atomically
from ..constants import LORA_TARGETS  # every Linear inside the blocks; the LM head stays
from ..kernels import use_fast_kernels
from ..training.checkpoints import ensure_writable_dir
from ..training.config_checks import (
    book_dropout,
    check_choice,
    check_int,
    check_number,
    config_to_json,
    reject_non_finite,
)
from ..training.pretrain import calc_loss_loader
from ..training.run_folder import claim_run_folder
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
    "InstructFinetuneConfig",
    "LORA_TARGETS",
    "finetune_instruct",
    "save_instruction_checkpoint",
]


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


@dataclass
class InstructFinetuneConfig:
    """Settings of one instruction fine-tuning run (book chapter 7); the defaults are the book's.

    Args:
        model_dir: a causal-LM checkpoint folder with its tokenizer (ours, or one converted from GPT-2).
        data_path: instruction records, JSON list or JSON Lines (the book's ``instruction-data.json``).
        output_dir: where the fine-tuned checkpoint and the reports go (created; must differ from model_dir).
        epochs, batch_size, lr, weight_decay: the book's chapter 7 settings by default (2, 8, 5e-5, 0.1).
        mask_instruction: also ignore the prompt tokens in the training loss (the book's exercise 7.2).
        lora_rank, lora_alpha: train LoRA adapters (book scaling, ``alpha * x @ A @ B``) on ``LORA_TARGETS``
            instead of all weights; they are merged into the weights before saving. None: train all weights.
        seed: seeds the weights' RNG (dropout, LoRA init) and the shuffling.
        eval_freq, eval_iter: evaluate every ``eval_freq`` steps on ``eval_iter`` batches (the book: 5 and 5).
        max_steps: stop after this many optimizer steps (None: run all epochs).
        grad_clip: clip the gradient norm (None: no clipping, as in the book).
        dropout: override the checkpoint's dropout rate (None: keep it).
        max_new_tokens: the longest answer generated per test instruction.
        num_test: answer only the first N test records (None: all of them).
        on_error: bad records raise (``"raise"``) or are skipped with a warning (``"skip"``).
        device: ``"cpu"``, ``"cuda"``, ...; None picks CUDA when available.
        overwrite: replace an ``output_dir`` that holds anything but an earlier instruction run's output (the
            old content is removed once the new run has finished; see ``training.run_folder``).
        book_conventions: reproduce the book's chapter 7 run: the training order from the global RNG
            (re-seeded with ``seed`` right before training, as the book does), evaluations after steps 1, 6,
            11, ... (ours: 5, 10, ...), the book's end-of-text rule in ``custom_collate_fn`` (a literal
            end-of-text inside a response hides the closing one; ours keeps both) and dropout 0.0.
    """

    model_dir: str | os.PathLike[str]
    data_path: str | os.PathLike[str]
    output_dir: str | os.PathLike[str]
    epochs: int = 2
    batch_size: int = 8
    lr: float = 5e-5
    weight_decay: float = 0.1
    mask_instruction: bool = False
    lora_rank: int | None = None
    lora_alpha: float = 16.0
    seed: int = 123
    eval_freq: int = 5
    eval_iter: int = 5
    max_steps: int | None = None
    grad_clip: float | None = None
    dropout: float | None = None
    max_new_tokens: int = 256
    num_test: int | None = None
    on_error: Literal["raise", "skip"] = "raise"
    device: str | None = None
    overwrite: bool = False
    book_conventions: bool = False

    def __post_init__(self) -> None:
        reject_non_finite(self)
        self.dropout = book_dropout(self.book_conventions, self.dropout)  # the book's drop_rate 0.0
        for name in ("epochs", "batch_size", "eval_freq", "eval_iter", "max_new_tokens"):
            check_int(name, getattr(self, name))
        for name in ("max_steps", "lora_rank"):
            check_int(name, getattr(self, name), optional=True)
        check_int("num_test", self.num_test, minimum=0, optional=True)
        check_int("seed", self.seed, minimum=0)
        check_number("lr", self.lr, above=0, hint="the book uses 5e-5")
        check_number("weight_decay", self.weight_decay, minimum=0, hint="the book uses 0.1")
        check_number("lora_alpha", self.lora_alpha, above=0)
        check_number("grad_clip", self.grad_clip, above=0, optional=True)
        check_number("dropout", self.dropout, minimum=0, below=1, optional=True)
        check_choice("on_error", self.on_error, ("raise", "skip"))
        if Path(self.model_dir).resolve() == Path(self.output_dir).resolve():
            raise ValueError(
                f"output_dir {str(self.output_dir)!r} is the model folder; write the fine-tuned model elsewhere"
            )


@dataclass
class _InstructRun:
    """What the load and data steps hand on: model, tokenizer, the splits and their loaders."""

    model: nn.Module
    tokenizer: Any
    splits: Any  # instruction_data.InstructionSplits
    loaders: dict[str, Any]  # train / val / test DataLoaders
    device: torch.device
    context_length: int


def finetune_instruct(
    config: InstructFinetuneConfig, *, log: Callable[[str], None] | None = print
) -> dict[str, Any]:
    """Instruction-fine-tune ``config.model_dir`` on ``config.data_path``; write everything into ``output_dir``.

    The steps, each a function here: load (``_load``: records, model, tokenizer) -> data (``_data``: loaders)
    -> train (``_train``: LoRA if asked, losses before, the book's loop) -> evaluate (``_evaluate``: held-out
    response loss, greedy test answers, ROUGE-L) -> save (``_save``). Progress lines go to ``log`` (None:
    silent).

    Returns:
        The contents of ``results.json``: the settings (``asdict(config)``), split sizes, parameter counts,
        time, losses before and after, held-out response loss/perplexity, mean ROUGE-L (an overlap score),
        samples and file paths.
    """
    with claim_run_folder(
        config.output_dir,
        "instruct",
        command="finetune-instruct",
        settings=config_to_json(config),
        overwrite=config.overwrite,
    ):
        return _finetune_instruct(config, log or _silent)


def _finetune_instruct(config: InstructFinetuneConfig, log: Callable[[str], None]) -> dict[str, Any]:
    started = time.perf_counter()
    run = _load(config)
    _data(config, run)
    log(
        f"{len(run.splits.train)} train / {len(run.splits.validation)} validation / "
        f"{len(run.splits.test)} test records"
    )
    trained = _train(config, run, log)
    evaluated = _evaluate(config, run, log)
    return _save(config, run, trained, evaluated, started)


def _load(config: InstructFinetuneConfig) -> _InstructRun:
    """Load: the records (split 85/10/5), then the model and its tokenizer, on the fast kernels."""
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    records = load_instruction_data(config.data_path, on_error=config.on_error)
    splits = split_instruction_data(records)
    model_kwargs = {} if config.dropout is None else {"dropout": config.dropout}
    model, tokenizer = load_model_and_tokenizer(config.model_dir, device=device, **model_kwargs)
    use_fast_kernels(model)  # same math, faster CPU kernels (scratch_gpt.kernels)
    ensure_writable_dir(Path(config.output_dir))
    return _InstructRun(model, tokenizer, splits, {}, device, int(model.config.n_positions))


def _data(config: InstructFinetuneConfig, run: _InstructRun) -> None:
    """Data: the book's ``InstructionDataset`` + ``custom_collate_fn`` loaders for the three splits."""
    run.loaders = make_instruction_loaders(
        run.splits,
        run.tokenizer,
        batch_size=config.batch_size,
        context_length=run.context_length,
        mask_instruction=config.mask_instruction,
        seed=config.seed,
        book_conventions=config.book_conventions,
    )


def _train(config: InstructFinetuneConfig, run: _InstructRun, log: Callable[[str], None]) -> dict[str, Any]:
    """Train: LoRA adapters if asked, the losses before, the book's ``train_model_simple``, LoRA merged back."""
    model, device, eval_iter = run.model, run.device, config.eval_iter
    torch.manual_seed(config.seed)
    total_parameters = count_parameters(model)
    if config.lora_rank is not None:
        replace_linear_with_lora(
            model, config.lora_rank, config.lora_alpha, target_modules=list(LORA_TARGETS)
        )
        freeze_for_lora(model)
        model.to(device)
    trainable = count_parameters(model, trainable_only=True)
    log(f"trainable parameters: {trainable:,} of {total_parameters:,}")

    model.eval()
    before = {
        "train_loss": calc_loss_loader(run.loaders["train"], model, device, num_batches=eval_iter),
        "val_loss": calc_loss_loader(run.loaders["val"], model, device, num_batches=eval_iter),
    }
    log(f"before fine-tuning: train loss {before['train_loss']:.3f}, val loss {before['val_loss']:.3f}")
    if config.book_conventions:
        torch.manual_seed(config.seed)  # the book seeds right before train_model_simple
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    first = run.splits.validation[0]
    start_context = build_prompt(run.tokenizer, first["instruction"], first["input"])
    train_started = time.perf_counter()
    outcome = train_model_simple(
        model,
        run.loaders["train"],
        run.loaders["val"],
        optimizer,
        device,
        config.epochs,
        config.eval_freq,
        eval_iter,
        start_context,
        run.tokenizer,
        max_steps=config.max_steps,
        grad_clip=config.grad_clip,
        log_fn=log,
        book_conventions=config.book_conventions,
    )
    train_seconds = time.perf_counter() - train_started
    if config.lora_rank is not None:
        merge_lora(model)
    for param in model.parameters():
        param.requires_grad_(True)
    return {
        "outcome": outcome,
        "before": before,
        "total_parameters": total_parameters,
        "trainable_parameters": trainable,
        "train_seconds": train_seconds,
    }


def _evaluate(
    config: InstructFinetuneConfig, run: _InstructRun, log: Callable[[str], None]
) -> dict[str, Any]:
    """Evaluate: response loss/perplexity on held-out records, greedy answers to the test split, ROUGE-L."""
    after = evaluate_instruction_model(run.model, run.loaders, run.device)
    log(
        f"after fine-tuning: val response loss {after['val_response_loss']:.3f} "
        f"(perplexity {after['val_response_perplexity']:.2f}), test response loss {after['test_response_loss']:.3f} "
        f"(perplexity {after['test_response_perplexity']:.2f})"
    )
    test_records = run.splits.test if config.num_test is None else run.splits.test[: config.num_test]
    generation_started = time.perf_counter()
    answered = generate_test_responses(
        run.model, run.tokenizer, test_records, max_new_tokens=config.max_new_tokens, log_fn=log
    )
    generation_seconds = time.perf_counter() - generation_started
    rouge = sum(r["rouge_l_f1"] for r in answered) / len(answered) if answered else float("nan")
    log(f"mean ROUGE-L F1 (word overlap, not correctness) on {len(answered)} test answers: {rouge:.3f}")
    return {"after": after, "answered": answered, "generation_seconds": generation_seconds, "rouge": rouge}


def _save(
    config: InstructFinetuneConfig,
    run: _InstructRun,
    trained: dict[str, Any],
    evaluated: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """Save: the checkpoint with its chat template, the loss history and plot, the test answers, results.json."""
    output_dir = Path(config.output_dir)
    outcome, answered = trained["outcome"], evaluated["answered"]
    save_instruction_checkpoint(run.model, run.tokenizer, output_dir)
    history_path = outcome.history.save(output_dir)
    plot_path = outcome.history.plot(output_dir / "loss_plot.png")
    responses_path = output_dir / "test_responses.json"
    atomic_write_text(responses_path, json.dumps(answered, indent=1, ensure_ascii=False))
    results: dict[str, Any] = {
        "settings": config_to_json(config),
        "device": str(run.device),
        "context_length": run.context_length,
        "num_records": {
            "train": len(run.splits.train),
            "validation": len(run.splits.validation),
            "test": len(run.splits.test),
        },
        "total_parameters": trained["total_parameters"],
        "trainable_parameters": trained["trainable_parameters"],
        "steps": outcome.steps,
        "tokens_seen": outcome.tokens_seen,
        "train_seconds": trained["train_seconds"],
        "generation_seconds": evaluated["generation_seconds"],
        "total_seconds": time.perf_counter() - started,
        "before": trained["before"],
        "after": evaluated["after"],
        "rouge_l_f1_overlap_mean": evaluated["rouge"],
        "rouge_l_note": ROUGE_NOTE,
        "num_test_answered": len(answered),
        "samples": outcome.samples,
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
