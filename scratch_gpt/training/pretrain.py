"""The pretraining loop, written out (book chapter 5, with appendix D's extras), running on ``accelerate``.

Chapter 5's ``train_model_simple`` is: for each batch, ``calc_loss_batch`` -> ``loss.backward()`` ->
``optimizer.step()``; every ``eval_freq`` steps print train/val loss (``evaluate_model``) and a generated
sample. Appendix D adds linear warmup, cosine decay and gradient clipping. ``pretrain`` is that loop, plus
what a real run needs:

* ``accelerate`` underneath, so the same code runs on CPU, one GPU, or many GPUs/nodes with
  ``accelerate launch`` (DDP, or FSDP2 with ``--use_fsdp --fsdp_version 2``: see ``fsdp.py`` and
  ``sharded_checkpoints.py``), with bf16 mixed precision where the hardware has it;
* AdamW with two parameter groups (weight decay only on matrices, ``dim() >= 2``, not on biases and
  LayerNorm parameters), gradient accumulation, optional ``torch.compile``;
* evaluation (loss and perplexity) and a greedy sample every ``eval_interval`` steps, a tqdm bar with
  loss and tokens/s, and the loss history as JSON and a PNG plot in the output folder;
* atomic checkpoints every ``save_interval`` steps (see ``checkpoints.py``) with optimizer, scheduler, RNG
  states and the data position, and ``resume=True``, which on CPU with a fixed seed reproduces the
  uninterrupted run's losses exactly.

Data: ``train_data``/``val_data`` are map-style datasets of ``(input, target)`` windows (``GPTDatasetV1``,
``TokenFileDataset``). The order of windows is a permutation seeded by ``(seed, epoch)``, and the global
batch (``batch_size`` x processes) is cut into one slice per process, so a resumed or multi-process run sees
exactly the batches a single uninterrupted process would.

Deliberately not here: tokenizer training, corpus reading and model construction (``from_corpus.py``),
and early stopping.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..generation import generate, text_to_token_ids, token_ids_to_text
from ..kernels import use_fast_kernels
from ..tokenizer_protocol import end_of_text_id
from . import fsdp
from .book_conventions import book_evaluate, book_lr_at_step, book_param_groups, book_train_batches
from .checkpoints import find_resumable_checkpoint, list_checkpoints
from .config_checks import config_to_json, reject_non_finite
from .history import HISTORY_FILE, LossHistory
from .losses import calc_loss_batch, calc_loss_loader  # chapter 5's loss, also exported from here
from .run_folder import claim_run_folder
from .run_state import (
    NonFiniteError,
    check_finite_weights,
    restore_training_checkpoint,
    save_final_model,
    save_training_checkpoint,
)
from .sharded_checkpoints import (
    is_sharded_checkpoint,
    restore_sharded_training_checkpoint,
    save_sharded_training_checkpoint,
)

__all__ = [
    "NonFiniteError",
    "PretrainConfig",
    "PretrainResult",
    "calc_loss_batch",
    "calc_loss_loader",
    "check_output_dir",
    "lr_at_step",
    "param_groups",
    "pretrain",
]


@dataclass
class PretrainConfig:
    """Settings of one pretraining run. Set ``max_steps`` or ``num_epochs`` (optimizer steps or passes).

    ``batch_size`` is per process and per micro-step; one optimizer step sees
    ``batch_size * num_processes * grad_accum_steps`` windows. Every ``eval_interval`` steps the model is
    evaluated on the first ``eval_batches`` batches of each split (the book's ``eval_iter``; None = all)
    and, given a tokenizer, greedily continues ``sample_prompt``. A checkpoint is written every
    ``save_interval`` steps and at the end (None: never); the ``keep_checkpoints`` newest are kept.
    ``mixed_precision="auto"`` is bf16 on GPUs that support it, full precision elsewhere. ``time_limit_s``
    ends training early, cleanly (final evaluation, checkpoint and model), once that many seconds of training
    have passed; ``resume`` then continues towards ``max_steps``.

    ``book_conventions=True`` trains as the book's ``train_model_simple`` / appendix D ``train_model`` do, to
    reproduce its printed numbers (see ``book_conventions.py``): no re-seeding (seed and build the model
    first, e.g. with ``init_weights_like_the_book``), each epoch's order and the evaluation's training batches
    drawn from the global RNG, weight decay on every parameter, evaluation after steps 1, 6, 11, ... (for
    ``eval_interval=5``), appendix D's warmup from ``initial_lr``, cosine and clipping only after warmup.
    ``initial_lr`` is used only then. One process, no ``resume``.
    """

    output_dir: str | Path
    max_steps: int | None = None
    num_epochs: int | None = None
    batch_size: int = 8
    grad_accum_steps: int = 1
    learning_rate: float = 4e-4
    min_lr: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "cosine"
    weight_decay: float = 0.1
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0
    eval_interval: int = 50
    eval_batches: int | None = 10
    save_interval: int | None = 500
    keep_checkpoints: int = 2
    sample_prompt: str | None = "Every effort moves you"
    sample_tokens: int = 30
    seed: int = 123
    shuffle: bool = True
    mixed_precision: str = "auto"
    compile: bool = False
    num_workers: int = 0
    resume: bool = False
    show_progress: bool = True
    dataset_name: str | None = None
    time_limit_s: float | None = None
    book_conventions: bool = False
    initial_lr: float = 0.0
    # reliability (docs/reliability.md)
    overwrite: bool = False
    on_nonfinite: str = "stop"
    allow_changed_settings: bool = False

    def __post_init__(self) -> None:
        reject_non_finite(self)
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {self.on_nonfinite!r}")
        if (self.max_steps is None) == (self.num_epochs is None):
            raise ValueError(
                "set exactly one of max_steps (optimizer steps) or num_epochs (passes over the data)"
            )
        optional = ("max_steps", "num_epochs", "save_interval", "eval_batches")  # None = not used
        positive = ("batch_size", "grad_accum_steps", "eval_interval", "keep_checkpoints", "sample_tokens")
        for name in positive + tuple(n for n in optional if getattr(self, n) is not None):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not self.learning_rate > 0 or not 0 <= self.min_lr <= self.learning_rate:
            raise ValueError(
                f"need learning_rate > 0 and 0 <= min_lr <= learning_rate, got {self.learning_rate}, {self.min_lr}"
            )
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.weight_decay < 0 or (self.grad_clip is not None and self.grad_clip <= 0):
            raise ValueError("weight_decay must be >= 0 and grad_clip > 0 (or None for no clipping)")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError(f"time_limit_s must be a positive number of seconds, got {self.time_limit_s!r}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be auto, no, bf16 or fp16, got {self.mixed_precision!r}")
        if not isinstance(self.book_conventions, bool):
            raise ValueError(f"book_conventions must be True or False, got {self.book_conventions!r}")
        if not 0 <= self.initial_lr <= self.learning_rate:
            raise ValueError(
                f"need 0 <= initial_lr <= learning_rate, got {self.initial_lr}, {self.learning_rate}"
            )
        if self.initial_lr and not self.book_conventions:
            raise ValueError(
                "initial_lr is appendix D's warmup start, used with book_conventions=True; our default warmup "
                "starts at learning_rate / warmup_steps (leave initial_lr at 0)"
            )
        if self.book_conventions and self.resume:
            raise ValueError(
                "book_conventions=True cannot resume: the book's batch order comes from the global RNG of "
                "the uninterrupted run; train without resume, or without book_conventions"
            )
        self.adam_betas = tuple(self.adam_betas)  # JSON round trips give lists


@dataclass
class PretrainResult:
    """What ``pretrain`` returns: the final step, the history, and where things were written."""

    step: int
    tokens_seen: int
    history: LossHistory
    output_dir: Path
    history_path: Path
    plot_path: Path | None
    checkpoint: Path | None
    resumed_from: Path | None = None
    seconds: float = 0.0
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------
# The pure pieces: loss, learning-rate schedule, parameter groups
# --------------------------------------------------------------------------------------------------------


def lr_at_step(
    step: int,
    *,
    peak_lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    schedule: str = "cosine",
) -> float:
    """Appendix D's learning rate for optimizer step ``step`` (0-based): linear warmup, then cosine decay.

    Warmup goes linearly from ``peak_lr / warmup_steps`` (step 0) to ``peak_lr`` (step ``warmup_steps - 1``);
    cosine decay then goes from ``peak_lr`` down to ``min_lr`` at the last step (``total_steps - 1``).
    ``schedule="constant"`` keeps ``peak_lr`` after warmup (the book's chapter 5 run).
    """
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak_lr
    decay_steps = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _lr_multiplier(step: int, **kwargs: Any) -> float:
    return lr_at_step(step, **kwargs) / kwargs["peak_lr"]


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on parameters with ``dim() >= 2`` (weight matrices, embeddings), none on
    biases and LayerNorm scale/shift. Tied parameters appear once."""
    decay, no_decay = [], []
    for param in model.parameters():  # .parameters() yields a tied tensor only once
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# --------------------------------------------------------------------------------------------------------
# Data order: a reproducible stream of global micro-batches, sliced per process
# --------------------------------------------------------------------------------------------------------


class _BatchStream:
    """Global micro-batch ``m`` (counting across epochs) -> this process's slice of it.

    Epoch ``e`` visits the windows in ``randperm(len, seed + e)`` order (or in order without shuffle);
    incomplete last batches are dropped (the book's ``drop_last=True`` for training).
    """

    def __init__(self, data: Dataset, batch_size: int, rank: int, world: int, cfg: PretrainConfig) -> None:
        self.data, self.batch_size, self.rank, self.world, self.cfg = data, batch_size, rank, world, cfg
        self.global_batch = batch_size * world
        self.batches_per_epoch = len(data) // self.global_batch  # type: ignore[arg-type]
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the training data has {len(data)} windows, fewer than one global batch of "  # type: ignore[arg-type]
                f"{self.global_batch} (batch_size {batch_size} x {world} processes); use more data or a "
                "smaller batch_size / max_length"
            )

    def _order(self, epoch: int) -> torch.Tensor:
        n = len(self.data)  # type: ignore[arg-type]
        if not self.cfg.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed + epoch))

    def iterate(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        m = start
        while True:
            epoch, first = divmod(m, self.batches_per_epoch)
            order = self._order(epoch).tolist()
            lo = self.rank * self.batch_size
            batches = [
                order[b * self.global_batch + lo : b * self.global_batch + lo + self.batch_size]
                for b in range(first, self.batches_per_epoch)
            ]
            # a private generator: creating a DataLoader iterator must not consume the global RNG (dropout's)
            loader = DataLoader(
                self.data,
                batch_sampler=batches,
                num_workers=self.cfg.num_workers,
                generator=torch.Generator(),
            )
            yield from loader
            m = (epoch + 1) * self.batches_per_epoch


def _eval_loader(data: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(
        data, batch_size=batch_size, shuffle=False, drop_last=False, generator=torch.Generator()
    )


@torch.no_grad()
def _evaluate(model: torch.nn.Module, data: Dataset | None, cfg: PretrainConfig, accelerator: Any) -> float:
    """Mean loss per target token over the first ``eval_batches`` batches (NaN without data).

    Batches are spread over processes. Unlike the book's ``calc_loss_loader`` (a mean of batch means), a
    smaller last batch gets its proper weight, so the result does not depend on the batch size.
    """
    if data is None or len(data) == 0:  # type: ignore[arg-type]
        return float("nan")
    loader = _eval_loader(data, cfg.batch_size)
    limit = len(loader) if cfg.eval_batches is None else min(cfg.eval_batches, len(loader))
    total = torch.zeros(2, device=accelerator.device, dtype=torch.float64)  # (sum of token losses, tokens)
    forwards, first = 0, None
    for i, (x, y) in enumerate(loader):
        if i >= limit:
            break
        first = (x, y) if first is None else first
        if i % accelerator.num_processes == accelerator.process_index:
            total[0] += calc_loss_batch(x, y, model, accelerator.device).item() * y.numel()
            total[1] += y.numel()
            forwards += 1
    if fsdp.is_sharded(accelerator):  # a sharded forward is a collective: all processes make as many
        for _ in range(fsdp.lockstep_rounds(limit, accelerator) - forwards):
            calc_loss_batch(*first, model, accelerator.device)
    total = accelerator.reduce(total, reduction="sum")
    return float(total[0] / total[1])


def _sample(model: torch.nn.Module, tokenizer: Any, cfg: PretrainConfig, device: Any) -> str | None:
    if cfg.sample_prompt is None or tokenizer is None:
        return None
    idx = text_to_token_ids(cfg.sample_prompt, tokenizer).to(device)
    eos_id = end_of_text_id(tokenizer)
    out = generate(model, idx, max_new_tokens=cfg.sample_tokens, eos_id=eos_id)  # greedy: touches no RNG
    return token_ids_to_text(out, tokenizer).replace("\n", " ")


# --------------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------------


def _accumulate_gradients(
    model: torch.nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    accum_steps: int,
    accelerator: Any,
) -> tuple[torch.Tensor, int]:
    """Forward/backward ``accum_steps`` micro-batches (gradients add up; DDP syncs only on the last one).

    Each micro-batch loss is divided by ``accum_steps``, so the summed gradient is the gradient of the mean
    loss over the whole accumulated batch. Returns that mean loss and the tokens seen by all processes.
    """
    model.train()
    step_loss = torch.zeros((), device=accelerator.device)
    tokens = 0
    for micro in range(accum_steps):
        x, y = next(batches)
        x, y = x.to(accelerator.device), y.to(accelerator.device)
        last = micro == accum_steps - 1
        with nullcontext() if last else accelerator.no_sync(model):
            loss = calc_loss_batch(x, y, model) / accum_steps
            accelerator.backward(loss)
        step_loss += loss.detach()
        tokens += x.numel() * accelerator.num_processes
    return step_loss, tokens


def check_output_dir(output_dir: str | Path, resume: bool) -> None:
    """Refuse to start over on top of an earlier run's checkpoints (they would be mixed with, and pruned
    against, the new ones) unless ``resume``; refuse ``resume`` where there is nothing to resume.

    Who may write into the folder at all is ``run_folder.claim_run_folder``'s business.
    """
    output_dir = Path(output_dir)
    found = list_checkpoints(output_dir / "checkpoints")
    if not resume and found:
        raise FileExistsError(
            f"{output_dir} already holds checkpoints of an earlier run; resume it (resume=True, CLI: --resume), "
            "start over with overwrite=True (CLI: --overwrite), or choose another output directory"
        )
    if resume and not found:
        raise FileNotFoundError(
            f"nothing to resume: {output_dir / 'checkpoints'} holds no checkpoint; start without resume "
            "(CLI: drop --resume)"
        )


@contextmanager
def claimed_output_dir(cfg: PretrainConfig, accelerator: Any, command: str = "pretrain") -> Iterator[None]:
    """Own ``cfg.output_dir`` for a pretraining run (main process only; see ``run_folder``), then check it
    with ``check_output_dir``."""
    with ExitStack() as stack:
        if accelerator.is_main_process:
            settings = {
                k: v for k, v in asdict(cfg).items() if k not in ("output_dir", "resume", "overwrite")
            }
            stack.enter_context(
                claim_run_folder(
                    cfg.output_dir, "pretrain", command=command, settings=settings, overwrite=cfg.overwrite
                )
            )
            check_output_dir(cfg.output_dir, cfg.resume)
        yield


def _should_stop(wanted: bool, limit_s: float | None, started: float, accelerator: Any, sync: bool) -> bool:
    """Stop early if ``on_step`` asked to (returned True) or the time limit has passed. With ``sync`` (a stop
    can happen at all), the processes agree: if any process wants to stop, all stop at this step."""
    wanted = wanted or (limit_s is not None and time.perf_counter() - started > limit_s)
    if sync and accelerator.num_processes > 1:
        flag = accelerator.reduce(torch.tensor(float(wanted), device=accelerator.device), reduction="sum")
        wanted = bool(flag > 0)
    return wanted


def make_accelerator(mixed_precision: str = "auto", cpu: bool = False) -> Any:
    """An ``accelerate.Accelerator``; ``"auto"`` picks bf16 on GPUs that support it, full precision otherwise.

    Several processes without a GPU (``accelerate launch --multi_gpu --num_processes N`` on a CPU machine)
    train with CPU DDP over gloo.
    """
    from accelerate import Accelerator

    if not cpu and not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cpu = True  # accelerate only sets up gloo/CPU DDP when asked for the CPU explicitly
    if mixed_precision == "auto":
        bf16 = not cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        mixed_precision = "bf16" if bf16 else "no"
    if fsdp.fsdp_requested() and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # accelerate launch --use_fsdp
        return fsdp.make_fsdp_accelerator(mixed_precision)
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


def pretrain(
    model: torch.nn.Module,
    train_data: Dataset,
    val_data: Dataset | None,
    config: PretrainConfig,
    *,
    tokenizer: Any = None,
    accelerator: Any = None,
    on_step: Callable[[int, float], bool | None] | None = None,
) -> PretrainResult:
    """Train ``model`` (a Hugging Face causal LM, e.g. ``ScratchGPTForCausalLM``) on ``(input, target)`` windows.

    Writes into ``config.output_dir``: the final model + tokenizer (Hugging Face format, loadable with
    ``AutoModelForCausalLM.from_pretrained(output_dir)``), ``training_history.json``, ``loss_plot.png`` and
    ``checkpoints/checkpoint-<step>/``. ``on_step(step, loss)`` is called after every optimizer step; if it
    returns True, training ends there as at the time limit (final evaluation, checkpoint and model).

    The run owns its folder (``run_folder.claim_run_folder``: refused if it holds another run's files
    unless ``overwrite``; locked against a second run). A non-finite loss or gradient norm stops training
    with ``NonFiniteError`` naming the step (``on_nonfinite="skip"`` skips such steps and counts them);
    checkpoints with non-finite weights are never written.
    """
    if accelerator is None:
        accelerator = make_accelerator(config.mixed_precision)
    with claimed_output_dir(config, accelerator):
        return _pretrain(model, train_data, val_data, config, tokenizer, accelerator, on_step)


def _pretrain(
    model: torch.nn.Module,
    train_data: Dataset,
    val_data: Dataset | None,
    cfg: PretrainConfig,
    tokenizer: Any,
    accelerator: Any,
    on_step: Callable[[int, float], bool | None] | None,
) -> PretrainResult:
    started = time.perf_counter()
    output_dir = Path(cfg.output_dir)
    ckpt_root = output_dir / "checkpoints"
    world, rank = accelerator.num_processes, accelerator.process_index
    book = cfg.book_conventions
    if book and world > 1:
        raise ValueError(
            "book_conventions=True trains in one process (the book's loop); run without accelerate launch"
        )

    if not book:  # the book seeds once, before building the model, and never again
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
    stream = _BatchStream(train_data, cfg.batch_size, rank, world, cfg)
    total_steps = cfg.max_steps or math.ceil(cfg.num_epochs * stream.batches_per_epoch / cfg.grad_accum_steps)
    schedule = dict(
        peak_lr=cfg.learning_rate,
        total_steps=total_steps,
        warmup_steps=cfg.warmup_steps,
        min_lr=cfg.min_lr,
        schedule=cfg.lr_schedule,
    )
    if accelerator.device.type == "cpu":
        use_fast_kernels(model)  # same math, faster CPU kernels (scratch_gpt.kernels)
    # The fused AdamW kernel (one pass over each parameter; Trainer's default too) where PyTorch has it.
    fused = True if accelerator.device.type in ("cpu", "cuda") else None
    groups = (book_param_groups if book else param_groups)(model, cfg.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=cfg.adam_betas, fused=fused)
    if book:
        schedule["initial_lr"] = cfg.initial_lr
        book_lr = partial(book_lr_at_step, **schedule)
        multiplier: Callable[[int], float] = lambda s: book_lr(s) / cfg.learning_rate  # noqa: E731
    else:
        multiplier = partial(_lr_multiplier, **schedule)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    model, optimizer = accelerator.prepare(model, optimizer)
    if cfg.compile:
        model = torch.compile(model)

    expected = {
        "global_batch": stream.global_batch * cfg.grad_accum_steps,
        "num_train_windows": len(train_data),
    }
    state: dict[str, Any] = {"step": 0, "micro_batches": 0, "tokens_seen": 0, **expected}
    history = LossHistory(
        dataset=cfg.dataset_name, hyperparameters=_hyperparameters(cfg, stream, total_steps)
    )
    resumed_from = find_resumable_checkpoint(ckpt_root) if cfg.resume else None
    if resumed_from is not None:
        if fsdp.is_sharded(accelerator) and not is_sharded_checkpoint(resumed_from):
            raise ValueError(
                f"cannot resume {resumed_from} under FSDP: it was written without FSDP (one full model, one "
                "optimizer state); resume it the way it was trained (DDP or one process)"
            )
        restore = (
            restore_sharded_training_checkpoint
            if is_sharded_checkpoint(resumed_from)
            else restore_training_checkpoint
        )
        state, history = restore(resumed_from, model, optimizer, scheduler, accelerator, expected)
        saved_settings = dict(state.get("config", {}))
        if is_sharded_checkpoint(resumed_from):  # resharding: the per-process batch follows the process count
            saved_settings.pop("batch_size", None)  # (the global batch must still match: ``expected``)
        changed = _changed_settings(saved_settings, cfg)
        if changed and not cfg.allow_changed_settings:
            raise ValueError(
                f"cannot resume from {resumed_from} with changed settings ({'; '.join(changed)}): the restored "
                "optimizer state and data order would silently disagree with them; resume with the same "
                "settings, or pass allow_changed_settings=True (CLI: --allow-changed-settings) to apply them"
            )
        if changed:
            _apply_changed_settings(cfg, optimizer, scheduler)
            state.setdefault("changed_settings", []).append({"step": state["step"], "changes": changed})
            accelerator.print(f"Resuming with changed settings at step {state['step']}: {'; '.join(changed)}")
        accelerator.print(f"Resuming from {resumed_from} (step {state['step']})")
    state["config"] = config_to_json(cfg)
    state.setdefault("skipped_steps", [])

    if book:
        batches = book_train_batches(train_data, cfg.batch_size, cfg.num_workers)
    else:
        batches = stream.iterate(state["micro_batches"])
    tokens_per_micro = stream.global_batch * getattr(train_data, "max_length", 0)
    progress = _progress_bar(cfg, accelerator, state["step"], total_steps)
    checkpoint = None
    window_start, window_tokens = time.perf_counter(), 0
    loop_started, stop_early = time.perf_counter(), False
    while state["step"] < total_steps:
        step_loss, tokens = _accumulate_gradients(model, batches, cfg.grad_accum_steps, accelerator)
        state["micro_batches"] += cfg.grad_accum_steps
        state["tokens_seen"] += tokens
        window_tokens += tokens
        if book:  # set as the book does (LambdaLR's peak * (lr / peak) can differ in the last bit)
            for group in optimizer.param_groups:
                group["lr"] = book_lr(state["step"])
        # appendix D clips only once warmup is over; our default clips every step
        if cfg.grad_clip is not None and not (book and state["step"] < cfg.warmup_steps):
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        else:  # not clipped, but measured: a non-finite gradient must not pass unseen
            grad_norm = _grad_norm(model)
        loss_value = float(accelerator.reduce(step_loss, reduction="mean"))
        finite = math.isfinite(loss_value) and math.isfinite(grad_norm)
        if not finite:
            _non_finite_step(state, cfg, loss_value, grad_norm, ckpt_root)
        lr = optimizer.param_groups[0]["lr"]
        if finite:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        step = state["step"]
        epoch = state["micro_batches"] / stream.batches_per_epoch
        history.add_step(step, state["tokens_seen"], epoch, loss_value, lr)
        asked = on_step is not None and on_step(step, loss_value) is True
        if progress is not None:
            rate = window_tokens / max(time.perf_counter() - window_start, 1e-9)
            progress.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{rate:,.0f}", refresh=False)
            progress.update(1)
        sync = cfg.time_limit_s is not None or on_step is not None
        stop_early = _should_stop(asked, cfg.time_limit_s, loop_started, accelerator, sync)
        last = step == total_steps or stop_early
        # the book evaluates when its 0-based global_step % eval_freq == 0: after steps 1, 6, 11, ...
        if (step - 1) % cfg.eval_interval == 0 if book else (step % cfg.eval_interval == 0 or last):
            # evaluate the unwrapped model: no DDP collectives, though processes run different batch counts
            # (a sharded model's forward is a collective: fsdp.py, all processes run it in lock step)
            plain = accelerator.unwrap_model(model, keep_torch_compile=False).eval()
            if book:
                train_loss, val_loss = book_evaluate(
                    plain, train_data, val_data, cfg.batch_size, cfg.eval_batches, accelerator.device
                )
            else:
                train_loss = _evaluate(plain, train_data, cfg, accelerator)
                val_loss = _evaluate(plain, val_data, cfg, accelerator)
            sample = (
                _sample(plain, tokenizer, cfg, accelerator.device)
                if accelerator.is_main_process or fsdp.is_sharded(accelerator)
                else None
            )
            history.add_eval(step, state["tokens_seen"], epoch, train_loss, val_loss, sample)
            _log(progress, accelerator, history.last_eval())
            if accelerator.is_main_process:
                history.save(output_dir)
            window_start, window_tokens = time.perf_counter(), 0
        if cfg.save_interval and (step % cfg.save_interval == 0 or last):
            save = (
                save_sharded_training_checkpoint if fsdp.is_sharded(accelerator) else save_training_checkpoint
            )
            checkpoint = save(
                ckpt_root,
                state,
                history,
                model,
                optimizer,
                scheduler,
                tokenizer,
                accelerator,
                cfg.keep_checkpoints,
            )
        if stop_early and step < total_steps:
            accelerator.print(f"Stopping early at step {step} of {total_steps} (time limit or on_step)")
            break
    if progress is not None:
        progress.close()

    plot_path = None
    check_finite_weights(model, f"the final model after step {state['step']}")
    if fsdp.is_sharded(accelerator):  # gather the shards into one ordinary model (a collective)
        final_model = fsdp.consolidated_model(model, accelerator)
    else:
        final_model = accelerator.unwrap_model(model, keep_torch_compile=False)
    if accelerator.is_main_process:
        save_final_model(final_model, tokenizer, output_dir)
        history.save(output_dir)
        plot_path = history.plot(output_dir / "loss_plot.png")
    accelerator.wait_for_everyone()
    return PretrainResult(
        step=state["step"],
        tokens_seen=state["tokens_seen"],
        history=history,
        output_dir=output_dir,
        history_path=output_dir / HISTORY_FILE,
        plot_path=plot_path,
        checkpoint=checkpoint,
        resumed_from=resumed_from,
        seconds=time.perf_counter() - started,
        extra={
            "tokens_per_micro_batch": tokens_per_micro,
            "total_steps": total_steps,
            "skipped_steps": list(state["skipped_steps"]),
        },
        stopped_early=stop_early and state["step"] < total_steps,
    )


# Settings that shape a run: a resumed run must use the saved values (or apply new ones explicitly).
RESUME_FIELDS = (
    "learning_rate",
    "min_lr",
    "warmup_steps",
    "lr_schedule",
    "weight_decay",
    "adam_betas",
    "grad_clip",
    "seed",
    "shuffle",
    "batch_size",
    "grad_accum_steps",
    "mixed_precision",
    "book_conventions",
    "initial_lr",
)


def _changed_settings(saved: dict[str, Any], cfg: PretrainConfig) -> list[str]:
    """``"name: checkpoint X, now Y"`` for every ``RESUME_FIELDS`` setting that differs from the saved run."""
    now = asdict(cfg)
    out = []
    for name in RESUME_FIELDS:
        if name not in saved:
            continue
        old, new = saved[name], now[name]
        if isinstance(old, list):
            old = tuple(old)
        if old != new:
            out.append(f"{name}: checkpoint {old!r}, now {new!r}")
    return out


def _apply_changed_settings(cfg: PretrainConfig, optimizer: Any, scheduler: Any) -> None:
    """After restoring the optimizer and scheduler, make them follow the new settings (the schedule's peak
    learning rate, weight decay, betas); the data order follows the new seed from here on."""
    scheduler.base_lrs = [cfg.learning_rate for _ in scheduler.base_lrs]
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["initial_lr"] = base
        group["betas"] = cfg.adam_betas
    optimizer.param_groups[0]["weight_decay"] = cfg.weight_decay  # the decayed group (see param_groups)
    last = scheduler.last_epoch
    for group, lam, base in zip(
        optimizer.param_groups, scheduler.lr_lambdas, scheduler.base_lrs, strict=True
    ):
        group["lr"] = base * lam(last)


def _grad_norm(model: torch.nn.Module) -> float:
    """The total L2 norm of the gradients (what clipping would see), without changing them."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0


def _non_finite_step(
    state: dict[str, Any], cfg: PretrainConfig, loss: float, grad_norm: float, ckpt_root: Path
) -> None:
    """Stop (``NonFiniteError`` naming the step) or, with ``on_nonfinite="skip"``, count a skipped step."""
    step = state["step"] + 1
    if cfg.on_nonfinite == "skip":
        state["skipped_steps"].append(step)
        return
    found = list_checkpoints(ckpt_root)
    last = f"the last checkpoint is {found[-1]}" if found else "no checkpoint was written yet"
    raise NonFiniteError(
        f"training stopped at step {step}: the loss is {loss} and the gradient norm {grad_norm} (learning rate "
        f"{cfg.learning_rate}); the model was not updated and nothing was saved at this step ({last}); lower the "
        "learning rate, or skip such steps with on_nonfinite='skip' (CLI: --skip-nonfinite)"
    )


def _hyperparameters(cfg: PretrainConfig, stream: _BatchStream, total_steps: int) -> dict[str, Any]:
    return {
        "optimizer steps": total_steps,
        "global batch (windows)": stream.global_batch * cfg.grad_accum_steps,
        "processes": stream.world,
        "gradient accumulation": cfg.grad_accum_steps,
        "peak learning rate": cfg.learning_rate,
        "schedule": f"{cfg.warmup_steps} warmup steps, then {cfg.lr_schedule} (min {cfg.min_lr})",
        "weight decay": cfg.weight_decay,
        "gradient clipping": cfg.grad_clip,
        "seed": cfg.seed,
        **({"conventions": f"the book's (warmup from {cfg.initial_lr})"} if cfg.book_conventions else {}),
    }


def _progress_bar(cfg: PretrainConfig, accelerator: Any, initial: int, total: int) -> Any:
    if not (cfg.show_progress and accelerator.is_local_main_process):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="pretrain", unit="step", dynamic_ncols=True)


def _log(progress: Any, accelerator: Any, record: dict[str, Any]) -> None:
    if not accelerator.is_main_process:
        return
    line = (
        f"step {record['steps']:>6} | tokens {record['tokens_seen']:>10,} | train loss {record['train_losses']:.3f} "
        f"| val loss {record['val_losses']:.3f} (ppl {record['val_perplexity']:.1f})"
    )
    if record.get("samples"):
        line += f"\n  sample: {record['samples']}"
    if progress is not None:
        progress.write(line)
