"""Sharded training checkpoints: each process writes its own shard with ``torch.distributed.checkpoint`` (DCP).

Under FSDP no process holds the whole model or optimizer state, and gathering them onto one process for every
checkpoint would cost the very memory FSDP saves. DCP writes each process's shards of the model weights and the
AdamW moments to its own file, plus one ``.metadata`` file saying which slice of which tensor is where; on load
each process reads just the slices its (new) shards need. So a checkpoint written by N processes loads onto M
processes (resharding), or onto one plain process, with no conversion step.

A sharded checkpoint folder is the ordinary one of ``run_state.py`` (``checkpoint-<step>/``, written into a hidden
temp folder and renamed into place only when complete, with ``manifest.json`` of every file's checksum), except
that the weights and optimizer state are in ``sharded/`` instead of ``model.safetensors`` + ``optimizer.pt``::

    sharded/.metadata, sharded/__<rank>_0.distcp    model + optimizer shards (DCP), one file per process
    config.json                                      the model configuration (checked on resume)
    scheduler.pt, rng_state_<rank>.pt, trainer_state.json, training_history.json, tokenizer files, manifest.json

A sharded checkpoint is not itself a ``from_pretrained`` folder (that would need a gather); the final model is
(``fsdp.consolidated_model``), and ``consolidate_checkpoint`` turns any sharded checkpoint into one, offline,
on one process.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from ..atomic_io import atomic_write_text
from .checkpoints import finish_checkpoint, new_checkpoint_dir, prune_checkpoints, tmp_checkpoint_dir
from .history import LossHistory
from .run_state import (
    _check_resumable,
    check_finite_weights,
    rng_state,
    save_model,
    save_tokenizer,
    set_rng_state,
)

__all__ = [
    "SHARDED_DIR",
    "consolidate_checkpoint",
    "is_sharded_checkpoint",
    "restore_sharded_training_checkpoint",
    "save_sharded_training_checkpoint",
]

SHARDED_DIR = "sharded"


def is_sharded_checkpoint(path: str | Path) -> bool:
    """True for a checkpoint folder written by a sharded (FSDP) run."""
    return (Path(path) / SHARDED_DIR / ".metadata").is_file()


def _model_and_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """``{"model": ..., "optimizer": ...}`` keyed by parameter names (FQNs), sharded as the model is (DTensors
    under FSDP, plain tensors in one process): the form DCP saves and reshards."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    model_sd, optim_sd = get_state_dict(model, optimizer)
    return {"model": model_sd, "optimizer": optim_sd}


def save_sharded_training_checkpoint(
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
    """Write the checkpoint of ``state["step"]`` of a sharded run atomically; every process must call this.

    Every process writes its shard of the weights and optimizer state (``dcp.save``, a collective) and its RNG
    state into the hidden temp folder; the main process then writes the rest, seals the folder (manifest, then one
    rename) and prunes old checkpoints. Returns the folder on the main process, ``None`` elsewhere.
    """
    import torch.distributed.checkpoint as dcp

    step = state["step"]
    check_finite_weights(model, f"the model at step {step}")  # every process: they agree, none waits
    if accelerator.is_main_process:
        new_checkpoint_dir(ckpt_root, step)
    accelerator.wait_for_everyone()
    tmp = tmp_checkpoint_dir(ckpt_root, step)
    inner = accelerator.unwrap_model(model, keep_torch_compile=False)
    dcp.save(_model_and_optimizer_state(inner, optimizer), checkpoint_id=str(tmp / SHARDED_DIR))
    torch.save(rng_state(), tmp / f"rng_state_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    final = None
    if accelerator.is_main_process:
        inner.config.save_pretrained(str(tmp))
        save_tokenizer(tokenizer, tmp)
        history.save(tmp)
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        atomic_write_text(tmp / "trainer_state.json", json.dumps({**state, "sharded": True}, indent=1))
        final = finish_checkpoint(tmp, step)
        prune_checkpoints(ckpt_root, keep)
    accelerator.wait_for_everyone()
    return final


def restore_sharded_training_checkpoint(
    ckpt: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    accelerator: Any,
    expected: dict[str, Any],
) -> tuple[dict[str, Any], LossHistory]:
    """Load a sharded checkpoint into the prepared model and optimizer, on any number of processes.

    With the number of processes it was written by, each process gets back exactly its shards and its RNG
    state, so training continues bit for bit. With another number (or one plain process), DCP reshards the
    weights and optimizer moments exactly (same values, cut differently); each process then uses its own saved
    RNG state if there is one, else process 0's, with a warning (only dropout draws random numbers in
    pretraining). Settings in ``expected`` and the architecture must match, as in ``restore_training_checkpoint``.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    inner = accelerator.unwrap_model(model, keep_torch_compile=False)
    _check_resumable(ckpt, inner, state, expected)
    target = _model_and_optimizer_state(inner, optimizer)
    dcp.load(target, checkpoint_id=str(ckpt / SHARDED_DIR))
    set_state_dict(inner, optimizer, model_state_dict=target["model"], optim_state_dict=target["optimizer"])
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", map_location="cpu", weights_only=True))
    rng_file = ckpt / f"rng_state_{accelerator.process_index}.pt"
    written_by = len(list(ckpt.glob("rng_state_*.pt")))
    if written_by != accelerator.num_processes:
        warnings.warn(
            f"resuming a checkpoint written by {written_by} processes on {accelerator.num_processes}: the weights "
            "and optimizer state are resharded exactly, but the order of floating-point sums changes, so losses "
            "match the uninterrupted run only to rounding (docs/distributed.md)",
            UserWarning,
            stacklevel=2,
        )
    if not rng_file.is_file():
        rng_file = ckpt / "rng_state_0.pt"
    set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=True))
    state.pop("sharded", None)
    return state, LossHistory.load(ckpt)


def consolidate_checkpoint(ckpt: str | Path, output_dir: str | Path, model_class: type | None = None) -> Path:
    """Turn a sharded checkpoint into an ordinary ``save_pretrained`` folder, in one process without a GPU.

    DCP reads every shard into full tensors of a model built from the checkpoint's ``config.json``
    (``ScratchGPTForCausalLM`` unless ``model_class`` is given); the tokenizer files are copied along.
    """
    import shutil

    import torch.distributed.checkpoint as dcp

    from ..configuration_scratch_gpt import ScratchGPTConfig

    ckpt, output_dir = Path(ckpt), Path(output_dir)
    if not is_sharded_checkpoint(ckpt):
        raise ValueError(
            f"{ckpt} is not a sharded checkpoint (no {SHARDED_DIR}/.metadata); it loads as it is"
        )
    if model_class is None:
        from ..modeling_scratch_gpt import ScratchGPTForCausalLM as model_class
    model = model_class(ScratchGPTConfig.from_pretrained(str(ckpt)))
    target = {"model": _model_and_optimizer_state(model, None)["model"]}
    with warnings.catch_warnings():  # "torch.distributed is ... uninitialized": one process is the point here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        dcp.load(target, checkpoint_id=str(ckpt / SHARDED_DIR), no_dist=True)
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, target["model"])
    output_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, output_dir)
    run_files = {
        "config.json",
        "manifest.json",
        "scheduler.pt",
        "trainer_state.json",
        "training_history.json",
    }
    for file in sorted(ckpt.iterdir()):  # what is left is the tokenizer's
        if file.is_file() and file.name not in run_files and not file.name.startswith("rng_state_"):
            shutil.copy2(file, output_dir / file.name)
    return output_dir
