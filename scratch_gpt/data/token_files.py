"""Token files: tokenize a corpus once into a memory-mapped array on disk, then sample windows from it.

Chapter 2's sliding window keeps every id in memory, which is fine for the-verdict.txt and not for a
corpus of billions of tokens. Here the ids are written once, document by document, into a flat binary
file of ``uint16`` (when every id fits, i.e. ``vocab_size <= 65,536``, as for GPT-2's 50,257) or ``uint32``,
with a small JSON header beside it::

    corpus.bin        the ids, native little-endian, no header bytes (np.memmap reads it directly)
    corpus.bin.json   {"format": "scratch_gpt.token_file", "version": 1, "dtype": "uint16",
                       "num_tokens": ..., "vocab_size": ..., "eos_id": ..., "num_documents": ..., ...}

Training reads windows straight from the mapped file (the OS pages in only what is touched), either as
the book's strided windows (``TokenFileDataset``, a drop-in for ``GPTDatasetV1``) or at random offsets
(``sample_batch``, nanoGPT style). Train/validation is a split by position: the first
``1 - val_fraction`` of the tokens train, the rest validate, as the book splits the-verdict.txt.

Both files are written atomically (temp file + ``os.replace``), the header last; a header whose counts do
not match the data file is reported as corrupt instead of giving wrong windows. The temp files carry their
writer's pid; those a killed write left behind are deleted by the next write of the same file.

Deliberately not here: tokenization itself (any ``encode(text)`` tokenizer is used as is), sharding
across many files, and shuffling at write time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..atomic_io import atomic_write_bytes, ensure_writable_dir
from .sliding_window import TextEncoder, _too_short_error, iter_documents, num_windows

__all__ = [
    "TokenFileInfo",
    "dtype_for_vocab",
    "write_token_ids",
    "write_token_file",
    "read_token_file_info",
    "open_token_file",
    "split_bounds",
    "TokenFileDataset",
    "sample_batch",
]

FORMAT_NAME = "scratch_gpt.token_file"
FORMAT_VERSION = 1
_DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


@dataclass
class TokenFileInfo:
    """The header of a token file (what ``<path>.json`` holds)."""

    dtype: str
    num_tokens: int
    vocab_size: int
    eos_id: int | None
    num_documents: int
    metadata: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION


def _header_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """``uint16`` when every id ``< vocab_size`` fits in 16 bits, else ``uint32``."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if vocab_size <= 2**16:
        return np.dtype(np.uint16)
    if vocab_size <= 2**32:
        return np.dtype(np.uint32)
    raise ValueError(f"vocab_size {vocab_size} does not fit in uint32 token files")


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temp files a killed write of ``path`` (or its header) left behind: their writer no longer runs."""
    for name in (path.name, _header_path(path).name):
        for tmp in path.parent.glob(f".{name}.*.tmp"):
            match = re.fullmatch(rf"\.{re.escape(name)}\.(?:(\d+)\.)?[^.]+\.tmp", tmp.name)
            if match is None:  # another file's temporary (e.g. the header's, seen from the data file's name)
                continue
            pid = int(match.group(1)) if match.group(1) else None
            if pid is not None and pid != os.getpid() and _pid_alive(pid):
                continue  # another process is writing it right now
            tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def write_token_ids(
    path: str | Path,
    documents_ids: Iterable[Sequence[int]],
    *,
    vocab_size: int,
    eos_id: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> TokenFileInfo:
    """Write token ids to ``path`` (+ ``path.json`` header), one document's ids at a time.

    ``documents_ids`` yields each document's ids; ``eos_id`` (when given) is written after each one. Ids
    outside ``[0, vocab_size)``, or no ids at all, raise a ``ValueError`` and leave any existing file at
    ``path`` untouched. Returns the header.
    """
    path = Path(path)
    dtype = dtype_for_vocab(vocab_size)
    if eos_id is not None and not (isinstance(eos_id, int) and 0 <= eos_id < vocab_size):
        raise ValueError(f"eos_id must be an id in [0, {vocab_size}), got {eos_id!r}")
    ensure_writable_dir(path.parent, "token file folder")
    _remove_stale_temporaries(path)
    counts = {"tokens": 0, "documents": 0}

    def encoded_chunks() -> Iterable[bytes]:
        for ids in documents_ids:
            arr = np.asarray(ids, dtype=np.int64)
            if arr.ndim != 1:
                raise ValueError(f"document {counts['documents']}: ids must be a flat sequence of integers")
            if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
                bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
                raise ValueError(
                    f"document {counts['documents']}: token id {bad} is outside [0, {vocab_size}); pass the "
                    "tokenizer's full vocab_size (including special tokens)"
                )
            if eos_id is not None:
                arr = np.append(arr, eos_id)
            counts["tokens"] += int(arr.size)
            counts["documents"] += 1
            yield arr.astype(dtype).tobytes()
        if counts["tokens"] == 0:  # raised before os.replace, so an existing file at path is kept
            raise ValueError(f"no token ids to write to {path}: the corpus holds no text")

    atomic_write_bytes(path, encoded_chunks())
    info = TokenFileInfo(
        dtype=dtype.name,
        num_tokens=counts["tokens"],
        vocab_size=vocab_size,
        eos_id=eos_id,
        num_documents=counts["documents"],
        metadata=dict(metadata or {}),
    )
    atomic_write_bytes(_header_path(path), [json.dumps(asdict(info), indent=2).encode("utf-8")])
    return info


def write_token_file(
    path: str | Path,
    source: str | Path | Any,
    tokenizer: TextEncoder,
    *,
    vocab_size: int,
    eos_id: int,
    metadata: dict[str, Any] | None = None,
    **read_kwargs: Any,
) -> TokenFileInfo:
    """Tokenize a corpus (anything ``data.iter_documents`` reads) into a token file at ``path``.

    Each document is followed by ``eos_id``. ``read_kwargs`` go to ``iter_documents`` (``text_field``,
    ``pattern``, ``encoding``, ``errors``...). Raises a ``ValueError`` when the corpus holds no text.
    A Hugging Face tokenizer works too (its ``encode`` must not add special tokens of its own).
    """
    if not hasattr(tokenizer, "encode"):
        raise ValueError(
            f"tokenizer must have an encode(text) -> list[int] method, got {type(tokenizer).__name__}"
        )
    if isinstance(eos_id, bool) or not isinstance(eos_id, int):
        raise ValueError(f"eos_id must be a token id (an integer), got {eos_id!r}")
    meta = {"source": str(source) if isinstance(source, (str, Path)) else type(source).__name__}
    meta.update(metadata or {})
    docs = (tokenizer.encode(text) for text in iter_documents(source, **read_kwargs))
    return write_token_ids(path, docs, vocab_size=vocab_size, eos_id=eos_id, metadata=meta)


def read_token_file_info(path: str | Path) -> TokenFileInfo:
    """Read and check a token file's header against its data file."""
    path = Path(path)
    header = _header_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token file {path} does not exist; create it with write_token_file")
    if not header.is_file():
        raise FileNotFoundError(f"token file header {header} is missing; re-create the token file")
    try:
        raw = json.loads(header.read_text(encoding="utf-8"))
        info = TokenFileInfo(**raw)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as err:
        raise ValueError(f"token file header {header} is corrupt ({err}); re-create the token file") from None
    if (
        info.format != FORMAT_NAME
        or info.version != FORMAT_VERSION
        or info.dtype not in _DTYPES
        or not isinstance(info.num_tokens, int)
        or info.num_tokens < 1
    ):
        raise ValueError(
            f"{header} is not a version-{FORMAT_VERSION} {FORMAT_NAME} header (format={info.format!r}, "
            f"version={info.version!r}, dtype={info.dtype!r}, num_tokens={info.num_tokens!r}); re-create the "
            "token file"
        )
    expected = info.num_tokens * np.dtype(_DTYPES[info.dtype]).itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise ValueError(
            f"token file {path} is {actual} bytes but its header says {info.num_tokens} {info.dtype} tokens "
            f"({expected} bytes): the file is truncated or does not belong to this header; re-create it"
        )
    return info


def open_token_file(path: str | Path) -> tuple[np.ndarray, TokenFileInfo]:
    """Memory-map a token file read-only: returns ``(ids, header)``, ``ids`` a 1-D uint16/uint32 array."""
    info = read_token_file_info(path)
    return np.memmap(path, dtype=_DTYPES[info.dtype], mode="r", shape=(info.num_tokens,)), info


def split_bounds(num_tokens: int, val_fraction: float) -> dict[str, tuple[int, int]]:
    """``{"train": (0, cut), "val": (cut, num_tokens)}`` with ``cut = int((1 - val_fraction) * num_tokens)``."""
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not 0 <= val_fraction < 1
    ):
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    cut = int((1 - val_fraction) * num_tokens)
    return {"train": (0, cut), "val": (cut, num_tokens)}


class TokenFileDataset(Dataset):
    """``GPTDatasetV1``'s windows over one split of a token file: item ``i`` is ``(input, target)``.

    The file is opened lazily in each process that reads it, so the dataset works with DataLoader workers
    (nothing but the path is pickled).
    """

    def __init__(
        self,
        path: str | Path,
        max_length: int,
        stride: int | None = None,
        *,
        split: str = "train",
        val_fraction: float = 0.1,
    ) -> None:
        self.path = Path(path)
        self.info = read_token_file_info(self.path)
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        stride = max_length if stride is None else stride
        bounds = split_bounds(self.info.num_tokens, val_fraction)
        self.start, self.end = (0, self.info.num_tokens) if split == "all" else bounds[split]
        self.max_length, self.stride, self.split = max_length, stride, split
        self._len = num_windows(self.end - self.start, max_length, stride)
        if self._len == 0:
            raise _too_short_error(self.end - self.start, max_length, f"the {split} split of {self.path}")
        self._ids: np.ndarray | None = None

    def __len__(self) -> int:
        return self._len

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ids": None}  # never pickle the mapped array

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        if idx < 0:
            idx += self._len
        if not 0 <= idx < self._len:
            raise IndexError(f"window {idx} out of range for {self._len} windows")
        if self._ids is None:
            self._ids, _ = open_token_file(self.path)
        start = self.start + idx * self.stride
        chunk = torch.from_numpy(
            self._ids[start : start + self.max_length + 1].astype(np.int64)
        )  # (max_length+1,)
        return chunk[:-1], chunk[1:]


def sample_batch(
    ids: np.ndarray | torch.Tensor,
    batch_size: int,
    max_length: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows, nanoGPT style: ``(inputs, targets)``, each ``(batch_size, max_length)`` int64.

    Starts are drawn uniformly from ``[0, len(ids) - max_length - 1]`` with ``generator``.
    """
    if batch_size < 1 or max_length < 1:
        raise ValueError(f"batch_size and max_length must be >= 1, got {batch_size} and {max_length}")
    if len(ids) < max_length + 1:
        raise _too_short_error(len(ids), max_length, "the token array")
    starts = torch.randint(0, len(ids) - max_length, (batch_size,), generator=generator)
    rows = [np.asarray(ids[int(s) : int(s) + max_length + 1], dtype=np.int64) for s in starts]
    chunk = torch.from_numpy(np.stack(rows))  # (batch_size, max_length + 1)
    return chunk[:, :-1], chunk[:, 1:]
