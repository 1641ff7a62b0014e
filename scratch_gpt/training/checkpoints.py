"""Training checkpoints on disk: written atomically, verified, found again on resume (book ch. 5, appendix D).

The book saves ``model.state_dict()`` and ``optimizer.state_dict()`` with ``torch.save`` so training can
continue later. A long run needs more than that, and needs it to survive a crash at any moment. A
checkpoint here is a folder ``checkpoints/checkpoint-00000500/`` holding

* the model in Hugging Face format (``save_pretrained``: ``config.json``, ``model.safetensors``) and the
  tokenizer, so any checkpoint loads with ``AutoModelForCausalLM.from_pretrained``;
* ``optimizer.pt``, ``scheduler.pt``, ``rng_state_<rank>.pt`` and ``trainer_state.json`` (step, data
  position, loss history), which the training loop (``pretrain.py``) writes and reads;
* ``manifest.json``, written last: the size and SHA-256 of every other file.

Everything is written into a hidden temp folder first; only a complete folder, manifest included, is
renamed into place (``os.replace``, atomic on POSIX). A crash mid-write leaves a stale temp folder (cleaned up
next time), never a half-written ``checkpoint-*``. On resume the newest checkpoint is verified against its
manifest; if it is damaged, a warning names it and the problem, and the previous one is used.

Deliberately not here: what goes into the files (the training loop decides) and sharded/FSDP state dicts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from ..atomic_io import atomic_write_text, ensure_writable_dir

__all__ = [
    "CorruptCheckpointError",
    "checkpoint_name",
    "list_checkpoints",
    "new_checkpoint_dir",
    "tmp_checkpoint_dir",
    "finish_checkpoint",
    "verify_checkpoint",
    "find_resumable_checkpoint",
    "prune_checkpoints",
    "ensure_writable_dir",
]

PREFIX = "checkpoint-"
MANIFEST = "manifest.json"
_TMP_PREFIX = ".tmp-"


class CorruptCheckpointError(ValueError):
    """A checkpoint folder is incomplete or damaged (a file missing, truncated or changed)."""


def checkpoint_name(step: int) -> str:
    """``checkpoint-00000500`` for step 500 (zero-padded so names sort by step)."""
    return f"{PREFIX}{step:08d}"


def _step_of(path: Path) -> int | None:
    suffix = path.name[len(PREFIX) :]
    return int(suffix) if path.name.startswith(PREFIX) and suffix.isdigit() else None


def list_checkpoints(checkpoints_dir: str | Path) -> list[Path]:
    """The finished checkpoint folders in ``checkpoints_dir``, oldest (lowest step) first."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _step_of(p) is not None]
    return sorted(found, key=lambda p: _step_of(p) or 0)


def tmp_checkpoint_dir(checkpoints_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` is written before it is sealed (hidden: not a checkpoint yet)."""
    return Path(checkpoints_dir) / f"{_TMP_PREFIX}{checkpoint_name(step)}"


def new_checkpoint_dir(checkpoints_dir: str | Path, step: int) -> Path:
    """Create the empty ``tmp_checkpoint_dir`` of ``step`` (stale temp folders of crashed writes are removed)."""
    root = ensure_writable_dir(checkpoints_dir, "checkpoint directory")
    for stale in root.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = tmp_checkpoint_dir(root, step)
    tmp.mkdir()
    return tmp


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def finish_checkpoint(tmp_dir: str | Path, step: int) -> Path:
    """Seal a checkpoint: write ``manifest.json`` (size + SHA-256 of every file), then rename into place.

    Returns the final folder ``<checkpoints_dir>/checkpoint-<step>``. An existing folder of the same step is
    replaced (moved aside first, deleted after the new one is in place).
    """
    tmp_dir = Path(tmp_dir)
    files = sorted(p for p in tmp_dir.rglob("*") if p.is_file())
    manifest = {
        "step": step,
        "files": {
            str(p.relative_to(tmp_dir)): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files
        },
    }
    for p in files:  # make the data durable before the rename makes it visible
        with p.open("rb") as fh:
            os.fsync(fh.fileno())
    atomic_write_text(tmp_dir / MANIFEST, json.dumps(manifest, indent=2))
    final = tmp_dir.parent / checkpoint_name(step)
    old = None
    if final.exists():
        old = tmp_dir.parent / f"{_TMP_PREFIX}old-{final.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp_dir, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """Check every file of a checkpoint against its manifest; returns the manifest.

    Raises ``CorruptCheckpointError`` naming the checkpoint, the file and what is wrong with it.
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        raise CorruptCheckpointError(f"checkpoint {path} has no {MANIFEST} (it was not finished)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CorruptCheckpointError(f"checkpoint {path}: {MANIFEST} is unreadable ({err})") from None
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise CorruptCheckpointError(f"checkpoint {path}: file {name} is missing")
        if file.stat().st_size != expected["size"]:
            raise CorruptCheckpointError(
                f"checkpoint {path}: file {name} is {file.stat().st_size} bytes, expected {expected['size']}"
            )
        if _sha256(file) != expected["sha256"]:
            raise CorruptCheckpointError(f"checkpoint {path}: file {name} does not match its checksum")
    return manifest


def find_resumable_checkpoint(checkpoints_dir: str | Path) -> Path | None:
    """The newest checkpoint that passes ``verify_checkpoint``, or ``None`` if there is none at all.

    A damaged newest checkpoint gives a ``UserWarning`` naming it and the problem, and the previous one
    is tried. If checkpoints exist but every one is damaged, raises ``CorruptCheckpointError``.
    """
    candidates = list_checkpoints(checkpoints_dir)
    problems = []
    for path in reversed(candidates):
        try:
            verify_checkpoint(path)
        except CorruptCheckpointError as err:
            problems.append(str(err))
            warnings.warn(f"{err}; falling back to the previous checkpoint", UserWarning, stacklevel=2)
            continue
        return path
    if problems:
        raise CorruptCheckpointError(
            "no usable checkpoint to resume from: "
            + "; ".join(problems)
            + ". Start without resume (or a new "
            "output directory)"
        )
    return None


def prune_checkpoints(checkpoints_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints; returns the deleted folders."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    doomed = list_checkpoints(checkpoints_dir)[:-keep]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
