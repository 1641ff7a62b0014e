"""What the library needs from a tokenizer, and one adapter that gives every tokenizer that shape (book chapter 2).

Three kinds of tokenizer reach the library: scratch_gpt's ``BPETokenizer``, tiktoken's GPT-2 ``Encoding`` (the
book's), and Hugging Face tokenizers (``ScratchGPTTokenizerFast``, GPT-2's). The first two already have the
book's shape: ``encode(text) -> ids`` (special-token text is an error unless allowed) and ``decode(ids)``. A
Hugging Face tokenizer is called differently (``tokenizer(texts, add_special_tokens=False)``, batched in Rust)
and names its end-of-text id ``eos_token_id``. This module is the only place that tells them apart:

* ``TextEncoder`` / ``TextTokenizer``: the protocol (``encode``; ``encode`` and ``decode``);
* ``is_hf_tokenizer``: the one check for a Hugging Face tokenizer;
* ``as_text_tokenizer``: any supported tokenizer as a ``TextTokenizer`` (a Hugging Face one wrapped in
  ``HFTokenizerAdapter``, which adds no special tokens and encodes batches in one call);
* ``end_of_text_id``: the ``<|endoftext|>`` id of any of them (None if it has none);
* ``encode_allowing_end_of_text``: ids of a text in which ``<|endoftext|>`` is that token (for prompts);
* ``save_tokenizer``: ``save_pretrained`` or ``BPETokenizer.save``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .constants import END_OF_TEXT

__all__ = [
    "HFTokenizerAdapter",
    "TextEncoder",
    "TextTokenizer",
    "as_text_tokenizer",
    "encode_allowing_end_of_text",
    "end_of_text_id",
    "is_hf_tokenizer",
    "save_tokenizer",
]


@runtime_checkable
class TextEncoder(Protocol):
    """What the data helpers need from a tokenizer: ``encode(text)`` returning token ids."""

    def encode(self, text: str) -> list[int]: ...


@runtime_checkable
class TextTokenizer(TextEncoder, Protocol):
    """``encode`` and ``decode``: tiktoken's GPT-2 encoding, ``BPETokenizer`` and ``HFTokenizerAdapter`` fit.

    ``encode(text)`` with the defaults of ``allowed_special``: text that spells a special token such as
    ``<|endoftext|>`` is an error for ``BPETokenizer`` and tiktoken rather than silently becoming that token.
    """

    def decode(self, ids: Sequence[int]) -> str: ...


def is_hf_tokenizer(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` is a Hugging Face tokenizer (called on text, with ``model_max_length``)."""
    return (
        callable(tokenizer) and hasattr(tokenizer, "model_max_length") and hasattr(tokenizer, "batch_decode")
    )


class HFTokenizerAdapter:
    """A Hugging Face tokenizer seen through ``TextTokenizer``: no special tokens are added to the text."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str, **_: Any) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Every text's ids in one call (the Rust tokenizer encodes the batch)."""
        return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id


def as_text_tokenizer(tokenizer: Any) -> TextTokenizer:
    """``tokenizer`` as a ``TextTokenizer``: a Hugging Face tokenizer wrapped in ``HFTokenizerAdapter``, anything
    with ``encode`` and ``decode`` as it is; anything else raises ``TypeError``."""
    if isinstance(tokenizer, HFTokenizerAdapter):
        return tokenizer
    if is_hf_tokenizer(tokenizer):
        return HFTokenizerAdapter(tokenizer)
    if not (hasattr(tokenizer, "encode") and hasattr(tokenizer, "decode")):
        raise TypeError(
            f"tokenizer must have encode(text) -> list[int] and decode(ids) -> str, got {type(tokenizer).__name__}; "
            "pass a BPETokenizer, a tiktoken encoding or a Hugging Face tokenizer"
        )
    return tokenizer


def encode_allowing_end_of_text(tokenizer: Any, text: str) -> list[int]:
    """``text``'s ids where a spelled-out ``<|endoftext|>`` becomes that special token (the book's
    ``text_to_token_ids``): a Hugging Face tokenizer does so anyway, ``BPETokenizer`` and tiktoken are told to
    with ``allowed_special``, and a minimal ``encode(text)`` tokenizer is called as it is."""
    if is_hf_tokenizer(tokenizer):
        return tokenizer.encode(text)
    try:
        return tokenizer.encode(text, allowed_special={END_OF_TEXT})
    except TypeError:  # an encode(text) without allowed_special
        return tokenizer.encode(text)


def end_of_text_id(tokenizer: Any) -> int | None:
    """The id of ``<|endoftext|>``: a Hugging Face tokenizer's ``eos_token_id``, ``BPETokenizer``'s special
    token, tiktoken's ``eot_token``; None when the tokenizer has none."""
    if isinstance(tokenizer, HFTokenizerAdapter):
        return tokenizer.eos_id
    eos_id = getattr(tokenizer, "eos_token_id", None)
    if eos_id is None and isinstance(getattr(tokenizer, "special_tokens", None), dict):
        eos_id = tokenizer.special_tokens.get(END_OF_TEXT)
    if eos_id is None and not is_hf_tokenizer(tokenizer):
        eos_id = getattr(tokenizer, "eot_token", None)
    return eos_id


def save_tokenizer(tokenizer: Any, directory: str | Path) -> None:
    """A Hugging Face tokenizer's ``save_pretrained``, or a ``BPETokenizer``'s ``save`` (None: nothing)."""
    if tokenizer is None:
        return
    if hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(str(directory))
    elif hasattr(tokenizer, "save"):
        tokenizer.save(Path(directory))
