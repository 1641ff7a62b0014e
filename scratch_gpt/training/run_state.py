"""Saving and restoring the whole state of a pretraining run (book chapter 5.4, made crash-proof).

Chapter 5 saves ``{"model_state_dict": ..., "optimizer_state_dict": ...}`` with ``torch.save`` and loads both
back to continue training. To continue *exactly* (the same losses as a run that was never stopped), a
checkpoint here also holds the learning-rate scheduler, every random number generator (Python, NumPy,
torch CPU and CUDA; one file per process) and the data position, and the model is stored in Hugging Face
format so every checkpoint is also a usable model. ``checkpoints.py`` makes the folder appear atomically.

Files of one checkpoint folder::

    config.json, model.safetensors, ...   the model (save_pretrained), with the remote-code .py files
    tokenizer.json, ...                   the tokenizer (save_pretrained, or BPETokenizer.save)
    optimizer.pt, scheduler.pt            state dicts (torch.save; loaded with weights_only=True)
    rng_state_<rank>.pt                   RNG states of process <rank> (weights_only-safe too)
    trainer_state.json                    step, data position (micro-batches consumed), tokens seen, settings
    training_history.json                 the loss history so far (``history.py``)
    manifest.json                         sizes and checksums of the above (``checkpoints.py``)

Deliberately not here: deciding when to save (the loop does) and FSDP-sharded optimizer states.
"""

from __future__ import annotations

import errno
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic_io import atomic_write_text, write_dir_atomically
from ..tokenizer_protocol import save_tokenizer
from .checkpoints import (
    finish_checkpoint,
    new_checkpoint_dir,
    prune_checkpoints,
    tmp_checkpoint_dir,
)
from .history import LossHistory

__all__ = [
    "ARCH_FIELDS",
    "NonFiniteError",
    "NoSpaceLeftError",
    "check_finite_weights",
    "rng_state",
    "set_rng_state",
    "save_model",
    "save_tokenizer",
    "save_final_model",
    "save_training_checkpoint",
    "restore_training_checkpoint",
]

# Fields of the model config that must match when resuming (the architecture).
ARCH_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "qkv_bias")


class NonFiniteError(ValueError):
    """Training met a NaN or infinite loss, gradient norm or weight."""


class NoSpaceLeftError(OSError):
    """The disk filled up while writing a checkpoint (the earlier checkpoints are intact)."""


def check_finite_weights(model: torch.nn.Module, what: str) -> None:
    """Raise ``NonFiniteError`` if any parameter of ``model`` holds NaN or infinity (never save such a model)."""
    for name, param in model.named_parameters():
        if not bool(torch.isfinite(param.detach()).all()):
            raise NonFiniteError(
                f"{what} has non-finite weights ({name}); it was not saved. Lower the learning rate, and resume "
                "from the last checkpoint"
            )


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _no_space(ckpt_root: Path, step: int, tmp: Path, model: torch.nn.Module, keep: int) -> NoSpaceLeftError:
    """The one-line error for a full disk, with the space a checkpoint needs (the last one's size, or an
    estimate from the parameters: weights + two AdamW moments)."""
    from .checkpoints import list_checkpoints

    earlier = list_checkpoints(ckpt_root)
    if earlier:
        need = _folder_bytes(earlier[-1])
    else:
        need = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    shutil.rmtree(tmp, ignore_errors=True)
    kept = (
        f"the earlier checkpoints ({', '.join(p.name for p in earlier)}) are intact"
        if earlier
        else ("no earlier checkpoint exists")
    )
    return NoSpaceLeftError(
        f"no space left on the device of {ckpt_root} while writing the checkpoint of step {step} (needs about "
        f"{need / 1e6:.1f} MB per checkpoint, {keep + 1} checkpoints at peak with keep_checkpoints={keep}); "
        f"{kept}. Free space, lower --keep-checkpoints, or choose another --output, then --resume"
    )


def rng_state() -> dict[str, Any]:
    """Every RNG state this process uses, as plain tuples/ints/tensors (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model(model: torch.nn.Module, directory: Path) -> None:
    """``save_pretrained`` (safetensors) without transformers' own "Writing model shards" progress bar."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(str(directory), safe_serialization=True)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def save_final_model(model: torch.nn.Module, tokenizer: Any, output_dir: Path) -> None:
    """Save model + tokenizer into ``output_dir`` with ``atomic_io.write_dir_atomically``: written to a temp
    folder first, then each file moved in with ``os.replace``, so no file there is ever half-written."""

    def write(folder: Path) -> None:
        save_model(model, folder)
        save_tokenizer(tokenizer, folder)

    write_dir_atomically(output_dir, write)


def save_training_checkpoint(
    ckpt_root: Path,
    state: dict[str, Any],
    history: LossHistory,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    tokenizer: Any,
    accelerator: Any,
    keep: int,
) -> Path | None:
    """Write the checkpoint of ``state["step"]`` atomically; every process must call this.

    Each process writes its RNG state; the main process writes the rest, seals the folder and deletes all
    but the ``keep`` newest checkpoints. Returns the folder on the main process, ``None`` elsewhere.
    """
    step = state["step"]
    check_finite_weights(model, f"the model at step {step}")  # every process: they agree, none waits
    if accelerator.is_main_process:
        new_checkpoint_dir(ckpt_root, step)
    accelerator.wait_for_everyone()
    tmp = tmp_checkpoint_dir(ckpt_root, step)
    torch.save(rng_state(), tmp / f"rng_state_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    final = None
    if accelerator.is_main_process:
        try:
            save_model(accelerator.unwrap_model(model, keep_torch_compile=False), tmp)
            save_tokenizer(tokenizer, tmp)
            history.save(tmp)
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            atomic_write_text(tmp / "trainer_state.json", json.dumps(state, indent=1))
            final = finish_checkpoint(tmp, step)
        except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
            if (
                isinstance(err, OSError)
                and err.errno in (errno.ENOSPC, errno.EDQUOT)
                or ("No space left" in str(err) or "file write failed" in str(err))
            ):
                raise _no_space(ckpt_root, step, tmp, model, keep) from None
            raise
        prune_checkpoints(ckpt_root, keep)  # only after the new checkpoint is complete
    accelerator.wait_for_everyone()
    return final


def _load_weights(model: torch.nn.Module, directory: Path) -> None:
    from safetensors.torch import load_file

    weights: dict[str, torch.Tensor] = {}
    for file in sorted(directory.glob("*.safetensors")):
        weights.update(load_file(str(file)))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    if unexpected or set(missing) - tied:
        raise ValueError(
            f"checkpoint {directory} does not fit the model (missing {sorted(set(missing) - tied)}, unexpected "
            f"{sorted(unexpected)}); resume with the model configuration it was saved with"
        )


def _check_resumable(
    ckpt: Path, model: torch.nn.Module, state: dict[str, Any], expected: dict[str, Any]
) -> None:
    saved = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    config = model.config.to_dict()
    diffs = [
        f"{k}: checkpoint {saved.get(k)!r}, now {config.get(k)!r}"
        for k in ARCH_FIELDS
        if saved.get(k) != config.get(k)
    ]
    diffs += [
        f"{k}: checkpoint {state.get(k)!r}, now {v!r}" for k, v in expected.items() if state.get(k) != v
    ]
    if diffs:
        raise ValueError(
            f"cannot resume from {ckpt}: the run does not match the checkpoint ({'; '.join(diffs)}); resume with "
            "the same model and data settings, or start a new run in another output directory"
        )


def restore_training_checkpoint(
    ckpt: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    accelerator: Any,
    expected: dict[str, Any],
) -> tuple[dict[str, Any], LossHistory]:
    """Load a checkpoint into the (prepared) model, optimizer, scheduler and this process's RNGs.

    ``expected`` holds run settings that must equal the saved ones (e.g. the global batch size and the
    number of training windows, without which the data position means nothing); the model architecture
    must match too. A mismatch raises a ``ValueError`` listing every difference. Returns the trainer state
    and the loss history.
    """
    state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
    _check_resumable(ckpt, unwrapped, state, expected)
    rng_file = ckpt / f"rng_state_{accelerator.process_index}.pt"
    if not rng_file.is_file():
        raise ValueError(
            f"cannot resume from {ckpt}: it has no {rng_file.name}, so it was written by fewer processes; "
            "resume with the same number of processes"
        )
    _load_weights(unwrapped, ckpt)
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", map_location="cpu", weights_only=True))
    set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=True))
    return state, LossHistory.load(ckpt)
