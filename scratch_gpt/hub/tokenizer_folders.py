"""Reading the tokenizer of any folder the package writes, for ``scratch-gpt encode`` / ``decode``.

A tokenizer can sit in several kinds of folder: one written by ``train-tokenizer`` (``bpe_config.json`` with
GPT-2-format ``vocab.json`` + ``merges.txt``), a Hugging Face model folder (``tokenizer.json``: the demo, a
pretraining run, a fine-tuned classifier or instruction model, a GPT-2 conversion), a model folder that keeps
its tokenizer in a ``tokenizer/`` subfolder, or OpenAI's GPT-2 files (``encoder.json`` + ``vocab.bpe``).
``load_folder_tokenizer`` finds the tokenizer and reads it with the matching reader: our ``BPETokenizer``
(book chapter 2) or the Rust ``tokenizers.Tokenizer`` of ``tokenizer.json``. Both answer the same three
questions: ids of a text, the bytes of one id, the text of some ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bpe import BPETokenizer
from ..byte_level import token_to_bytes
from ..constants import BPE_CONFIG_FILE as CONFIG_FILE
from ..constants import MERGES_FILE, TOKENIZER_FILE, VOCAB_FILE

__all__ = ["FolderTokenizer", "find_tokenizer_dir", "load_folder_tokenizer"]

_GPT2_FILES = ((VOCAB_FILE, MERGES_FILE), ("encoder.json", "vocab.bpe"))


def _has_tokenizer(folder: Path) -> bool:
    return (
        (folder / CONFIG_FILE).is_file()
        or (folder / TOKENIZER_FILE).is_file()
        or any((folder / a).is_file() and (folder / b).is_file() for a, b in _GPT2_FILES)
    )


def find_tokenizer_dir(path: str | os.PathLike) -> Path:
    """The folder that holds the tokenizer of ``path``: ``path`` itself, or its ``tokenizer/`` subfolder.

    Raises:
        FileNotFoundError: ``path`` is not a folder, or neither it nor ``path/tokenizer`` holds a tokenizer.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer folder {str(path)!r} does not exist (or is not a folder)")
    for folder in (path, path / "tokenizer"):
        if folder.is_dir() and _has_tokenizer(folder):
            return folder
    raise FileNotFoundError(
        f"{str(path)!r} holds no tokenizer: looked for {CONFIG_FILE} (scratch-gpt train-tokenizer), "
        f"{TOKENIZER_FILE} (a Hugging Face model folder), {VOCAB_FILE} + {MERGES_FILE} or encoder.json + vocab.bpe "
        f"(GPT-2), there and in {str(path / 'tokenizer')!r}"
    )


@dataclass
class FolderTokenizer:
    """A tokenizer read from a folder: ``bpe`` (ours) or ``fast`` (a ``tokenizers.Tokenizer``), one of them."""

    folder: Path
    bpe: BPETokenizer | None = None
    fast: Any = None

    @property
    def kind(self) -> str:
        """``"scratch_gpt BPE"`` or ``"tokenizer.json"``."""
        return "scratch_gpt BPE" if self.bpe is not None else TOKENIZER_FILE

    def encode(self, text: str, specials_as_text: bool = False) -> list[int]:
        """Token ids of ``text``; special-token text becomes its id unless ``specials_as_text``."""
        if self.bpe is not None:
            return (
                self.bpe.encode_ordinary(text)
                if specials_as_text
                else self.bpe.encode(text, allowed_special="all")
            )
        self.fast.encode_special_tokens = specials_as_text
        return list(self.fast.encode(text, add_special_tokens=False).ids)

    def id_to_bytes(self, token_id: int) -> bytes:
        """The bytes that token ``token_id`` stands for."""
        if self.bpe is not None:
            return self.bpe.id_to_bytes(token_id)
        token = self.fast.id_to_token(token_id)
        if token is None:
            raise ValueError(
                f"token id {token_id} is not in the vocabulary of {self.folder} ({self._size()} ids)"
            )
        if token_id in self.fast.get_added_tokens_decoder() or not self._byte_level():
            return token.encode("utf-8")
        return token_to_bytes(token)

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids`` (special tokens included); bytes that are not valid UTF-8 become U+FFFD."""
        size = self._size()
        bad = [i for i in ids if not 0 <= i < size]
        if bad:
            raise ValueError(
                f"token id(s) {bad} out of range: the tokenizer in {self.folder} has ids 0..{size - 1}"
            )
        if self.bpe is not None:
            return self.bpe.decode(ids)
        return b"".join(self.id_to_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def _size(self) -> int:
        return (
            self.bpe.vocab_size if self.bpe is not None else self.fast.get_vocab_size(with_added_tokens=True)
        )

    def _byte_level(self) -> bool:
        decoder = self.fast.decoder
        return decoder is not None and type(decoder).__name__ == "ByteLevel"


def load_folder_tokenizer(path: str | os.PathLike) -> FolderTokenizer:
    """Read the tokenizer of any folder the package writes (see the module docstring for the kinds)."""
    folder = find_tokenizer_dir(path)
    if (folder / CONFIG_FILE).is_file() or not (folder / TOKENIZER_FILE).is_file():
        return FolderTokenizer(folder, bpe=BPETokenizer.load(folder))
    from tokenizers import Tokenizer

    try:
        fast = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    except Exception as err:  # the Rust reader raises its own Exception type for bad JSON
        raise ValueError(f"{str(folder / TOKENIZER_FILE)!r} is corrupt: {err}") from None
    return FolderTokenizer(folder, fast=fast)
