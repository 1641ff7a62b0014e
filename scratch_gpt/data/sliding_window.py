"""Data sampling with a sliding window, and reading text corpora (book chapter 2, section 2.6).

The book turns a text into training examples by tokenizing it once and sliding a window of ``max_length``
tokens over the ids, ``stride`` tokens at a time. Each window gives an *input* and a *target* that is the
same window shifted one token to the right, so position ``t`` of the target is the next token after
position ``t`` of the input::

    ids     40  367 2885 1464 1807 3619 ...
    input  [40  367 2885 1464]                 window 0 (max_length=4)
    target     [367 2885 1464 1807]
    input            [1464 1807 3619  402]     window 1 (stride=2) ...

``GPTDatasetV1`` and ``create_dataloader_v1`` keep the book's names, arguments and results (the book's
known answers are tests here). What this module adds is reading real corpora: a text file, a directory of
text files, JSON Lines with a text field, or a local ``datasets`` dataset, each turned into documents and
then into one stream of token ids where every document is followed by ``eos_id`` (``<|endoftext|>``), the
separator chapter 2 introduces for unrelated texts.

Tokenizers: anything with ``encode(text) -> list[int]`` works (the ``TextEncoder`` protocol, ``tokenizer_protocol.py``): our
``BPETokenizer``, a tiktoken ``Encoding``, a Hugging Face tokenizer. No tokenizer is built in here.

Deliberately not here: corpora larger than memory (``token_files`` writes them to a memory-mapped file
once), packing into blocks with ``datasets.map`` (``hf_datasets``), and anything about the model or training.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..tokenizer_protocol import TextEncoder

__all__ = [
    "TextEncoder",
    "GPTDatasetV1",
    "create_dataloader_v1",
    "num_windows",
    "read_text_file",
    "iter_documents",
    "tokenize_documents",
    "load_corpus",
    "train_val_split",
]


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def num_windows(num_tokens: int, max_length: int, stride: int) -> int:
    """How many (input, target) windows a sequence of ``num_tokens`` ids gives.

    The book's loop is ``for i in range(0, num_tokens - max_length, stride)``: a window starting at ``i``
    needs ``max_length + 1`` ids (the target reaches one past the input), so the last start is
    ``num_tokens - max_length - 1``.
    """
    _check_positive_int("max_length", max_length)
    _check_positive_int("stride", stride)
    if num_tokens <= max_length:
        return 0
    return len(range(0, num_tokens - max_length, stride))


def _too_short_error(num_tokens: int, max_length: int, what: str = "the corpus") -> ValueError:
    return ValueError(
        f"{what} has {num_tokens} tokens, but one training window needs max_length + 1 = {max_length + 1} "
        "tokens (the target is the input shifted by one); use more text or a smaller max_length"
    )


def _as_token_tensor(ids: Any) -> torch.Tensor:
    """Token ids (list, tuple, numpy array or tensor) as a 1-D int64 tensor, with a clear error otherwise."""
    if isinstance(ids, torch.Tensor):
        tensor = ids
    else:
        try:
            tensor = torch.as_tensor(ids)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"token ids must be a flat sequence of integers: {err}") from None
    if tensor.dim() != 1:
        raise ValueError(f"token ids must be 1-D, got shape {tuple(tensor.shape)}")
    if tensor.numel() and (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool):
        raise ValueError(f"token ids must be integers, got dtype {tensor.dtype}")
    tensor = tensor.to(torch.long)  # (also: min() is not implemented for uint16/uint32 tensors)
    if tensor.numel() and int(tensor.min()) < 0:
        raise ValueError(f"token ids must be >= 0, found {int(tensor.min())}")
    return tensor


class GPTDatasetV1(Dataset):
    """The book's sliding-window dataset: item ``i`` is ``(input, target)``, both ``(max_length,)`` int64.

    Args:
        txt: the text to tokenize, or already-tokenized ids (a list, numpy array or 1-D tensor).
        tokenizer: anything with ``encode(text) -> list[int]``; not needed when ``txt`` is ids.
        max_length: tokens per window (the model's context length in training).
        stride: how far the window moves; ``stride == max_length`` gives non-overlapping windows.

    The ids are kept as one tensor and windows are sliced on demand, so memory is one copy of the ids
    (the book keeps a list of window tensors; the items are the same).
    """

    def __init__(
        self,
        txt: str | Sequence[int] | torch.Tensor,
        tokenizer: TextEncoder | None = None,
        max_length: int = 256,
        stride: int = 128,
    ) -> None:
        _check_positive_int("max_length", max_length)
        _check_positive_int("stride", stride)
        if isinstance(txt, str):
            if tokenizer is None:
                raise ValueError(
                    "GPTDatasetV1 got text but no tokenizer: pass tokenizer=..., or pass token ids"
                )
            txt = tokenizer.encode(txt)
        self.token_ids = _as_token_tensor(txt)  # (num_tokens,)
        self.max_length = max_length
        self.stride = stride
        self._len = num_windows(len(self.token_ids), max_length, stride)
        if self._len == 0:
            raise _too_short_error(len(self.token_ids), max_length)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        if idx < 0:
            idx += self._len
        if not 0 <= idx < self._len:
            raise IndexError(f"window {idx} out of range for {self._len} windows")
        start = idx * self.stride
        input_chunk = self.token_ids[start : start + self.max_length]  # (max_length,)
        target_chunk = self.token_ids[start + 1 : start + self.max_length + 1]  # shifted by one
        return input_chunk, target_chunk


def create_dataloader_v1(
    txt: str | Sequence[int] | torch.Tensor,
    batch_size: int = 4,
    max_length: int = 256,
    stride: int = 128,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    *,
    tokenizer: TextEncoder | None = None,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """The book's ``create_dataloader_v1``: a ``GPTDatasetV1`` in a ``DataLoader``.

    Batches are ``(inputs, targets)``, each ``(batch_size, max_length)``. Unlike the book, the tokenizer is
    passed in (the book builds tiktoken's GPT-2 encoding inside, which downloads); ``generator`` makes the
    shuffle order reproducible.
    """
    _check_positive_int("batch_size", batch_size)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    dataset = GPTDatasetV1(txt, tokenizer, max_length=max_length, stride=stride)
    if drop_last and len(dataset) < batch_size:
        raise ValueError(
            f"the text gives {len(dataset)} windows of max_length={max_length} (stride={stride}), fewer than "
            f"batch_size={batch_size}, so drop_last=True would leave no batch at all; use more text, a smaller "
            "batch_size or stride, or drop_last=False"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=generator,
    )


def train_val_split(data: str | Sequence[Any], train_ratio: float = 0.9) -> tuple[Any, Any]:
    """Split text (or ids) at ``int(train_ratio * len(data))``: the first part trains, the rest validates.

    This is the book's chapter 5 split (by characters of the-verdict.txt, 90/10).
    """
    if isinstance(train_ratio, bool) or not isinstance(train_ratio, (int, float)) or not 0 < train_ratio < 1:
        raise ValueError(f"train_ratio must be a number strictly between 0 and 1, got {train_ratio!r}")
    split_idx = int(train_ratio * len(data))
    return data[:split_idx], data[split_idx:]


# --------------------------------------------------------------------------------------------------------
# Reading corpora
# --------------------------------------------------------------------------------------------------------

_ERRORS = ("strict", "replace")


def _decode(
    data: bytes, path: Path, encoding: str, errors: str, offset: int = 0, line: int | None = None
) -> str:
    """Decode ``data`` (which starts at byte ``offset`` of ``path``), naming file and offset on failure."""
    if errors not in _ERRORS:
        raise ValueError(f"errors must be one of {_ERRORS}, got {errors!r}")
    try:
        return data.decode(encoding, errors)
    except UnicodeDecodeError as err:
        bad = data[err.start : err.end]
        where = f" (line {line})" if line is not None else ""
        raise ValueError(
            f"{path}: byte offset {offset + err.start}{where} ({bad!r}) is not valid {encoding}; convert the "
            f"file to {encoding}, or read it with errors='replace' (CLI: --decode-errors replace) to substitute "
            "U+FFFD for undecodable bytes"
        ) from None
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r}; use a codec name such as 'utf-8'") from None


def read_text_file(path: str | Path, *, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Read a whole text file. Undecodable bytes raise a ``ValueError`` naming the file and byte offset,
    unless ``errors="replace"``, which substitutes U+FFFD for them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {path} does not exist (or is not a file)")
    return _decode(path.read_bytes(), path, encoding, errors)


def _iter_jsonl(path: Path, text_field: str, encoding: str, errors: str) -> Iterator[str]:
    with path.open("rb") as fh:
        offset = 0
        for line_no, raw in enumerate(fh, start=1):
            where = f" line {line_no}"
            line = _decode(raw, path, encoding, errors, offset=offset, line=line_no)
            offset += len(raw)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}{where}: not valid JSON ({err.msg}); each line must be one JSON object"
                ) from None
            if not isinstance(record, dict) or text_field not in record:
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise ValueError(
                    f"{path}{where}: no {text_field!r} field (found {keys}); pass text_field=... "
                    "(CLI: --text-field) naming the field that holds the text"
                )
            text = record[text_field]
            if not isinstance(text, str):
                raise ValueError(
                    f"{path}{where}: field {text_field!r} must be a string, got {type(text).__name__}"
                )
            check_no_lone_surrogate(text, f"{path}{where}: field {text_field!r}")
            yield text


def check_no_lone_surrogate(text: str, where: str) -> None:
    """Raise ``ValueError`` if ``text`` holds a lone surrogate (a JSON escape such as ``"\\ud800"`` without
    its pair), which is no character and cannot be encoded; ``where`` names the file and line."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"{where} holds a lone surrogate {text[err.start]!r} at character {err.start} (an escaped "
            "\\ud800-\\udfff without its pair), which is not text; fix or remove that line"
        ) from None


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _iter_hf_dataset(dataset: Any, text_field: str, split: str) -> Iterator[str]:
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise ValueError(
                f"the dataset has splits {sorted(dataset)}, not {split!r}; pass split=... naming one"
            )
        dataset = dataset[split]
    if text_field not in dataset.column_names:
        raise ValueError(
            f"the dataset has columns {dataset.column_names}, not {text_field!r}; pass text_field=... naming "
            "the column that holds the text"
        )
    for text in dataset[text_field]:
        if not isinstance(text, str):
            raise ValueError(f"column {text_field!r} must hold strings, got {type(text).__name__}")
        yield text


def iter_documents(
    source: str | Path | Any,
    *,
    text_field: str = "text",
    pattern: str = "*.txt",
    split: str = "train",
    encoding: str = "utf-8",
    errors: str = "strict",
) -> Iterator[str]:
    """Yield the documents of a corpus, in a deterministic order.

    ``source`` may be:
      * a text file: one document (``.jsonl`` files are read as JSON Lines instead);
      * a JSON Lines file (``.jsonl``): one document per line, from the ``text_field`` field;
      * a directory: every file matching ``pattern`` below it (recursively, sorted by path), each read as
        above; a directory written by ``datasets``' ``save_to_disk`` is loaded as a dataset instead;
      * a ``datasets.Dataset`` or ``DatasetDict`` (``split`` picks the split): the ``text_field`` column.
    Empty documents are skipped.
    """
    if not isinstance(source, (str, Path)):
        if type(source).__module__.startswith("datasets"):
            yield from (t for t in _iter_hf_dataset(source, text_field, split) if t)
            return
        raise ValueError(
            f"cannot read documents from a {type(source).__name__}: pass a file or directory path, or a "
            "datasets.Dataset"
        )
    path = Path(source)
    if path.is_dir():
        if _is_saved_dataset(path):
            import datasets

            yield from (
                t for t in _iter_hf_dataset(datasets.load_from_disk(str(path)), text_field, split) if t
            )
            return
        files = sorted(p for p in path.rglob(pattern) if p.is_file())
        if not files:
            raise FileNotFoundError(
                f"no files matching {pattern!r} under {path}; pass pattern=... (CLI: --pattern)"
            )
        for file in files:
            yield from iter_documents(file, text_field=text_field, encoding=encoding, errors=errors)
        return
    if not path.is_file():
        raise FileNotFoundError(
            f"corpus {path} does not exist; pass a text file, a .jsonl file or a directory"
        )
    if path.suffix.lower() == ".jsonl":
        yield from (t for t in _iter_jsonl(path, text_field, encoding, errors) if t)
    else:
        text = read_text_file(path, encoding=encoding, errors=errors)
        if text:
            yield text


def tokenize_documents(documents: Iterable[str], tokenizer: TextEncoder, eos_id: int) -> list[int]:
    """Tokenize documents into one id stream, each document followed by ``eos_id`` (``<|endoftext|>``)."""
    if not hasattr(tokenizer, "encode"):
        raise ValueError(
            f"tokenizer must have an encode(text) -> list[int] method, got {type(tokenizer).__name__}"
        )
    if isinstance(eos_id, bool) or not isinstance(eos_id, int) or eos_id < 0:
        raise ValueError(f"eos_id must be a token id (an integer >= 0), got {eos_id!r}")
    ids: list[int] = []
    for text in documents:
        ids.extend(tokenizer.encode(text))
        ids.append(eos_id)
    return ids


def load_corpus(
    source: str | Path | Any,
    tokenizer: TextEncoder,
    eos_id: int,
    **read_kwargs: Any,
) -> list[int]:
    """Read a corpus (see ``iter_documents``) and tokenize it: documents each followed by ``eos_id``.

    Raises a ``ValueError`` when the corpus holds no text at all.
    """
    ids = tokenize_documents(iter_documents(source, **read_kwargs), tokenizer, eos_id)
    if not ids:
        raise ValueError(f"the corpus {source} holds no text (every document is empty)")
    return ids
