"""Tests for scratch_gpt.byte_level: GPT-2's byte table and the split patterns."""

from __future__ import annotations

import json

import pytest
import regex
from conftest import data_file

from scratch_gpt.byte_level import (
    BYTE_TO_CHAR,
    GPT2_PATTERN,
    GPT4_PATTERN,
    bytes_to_token,
    compile_pattern,
    resolve_pattern,
    split_text,
    token_to_bytes,
)

# tiktoken's cl100k_base pattern, verbatim (our GPT4_PATTERN drops one possessive "+" for Oniguruma).
TIKTOKEN_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]"""
    r"""|\s+(?!\S)|\s"""
)
SAMPLES = [
    "Hello, world! It's 2024: 12345 apples   and\toranges\n\n  end  ",
    "don't WE'LL i'D\r\n\r\n  \n x",
    "日本語 😀👍🏽 e\u0301 שלום \u00a0 \x00\x1c\x1d",
    "trailing whitespace \n \n  ",
]


def test_byte_table_is_gpt2s():
    assert len(set(BYTE_TO_CHAR.values())) == 256
    assert BYTE_TO_CHAR[ord(" ")] == "Ġ" and BYTE_TO_CHAR[ord("\n")] == "Ċ" and BYTE_TO_CHAR[ord("A")] == "A"
    encoder = json.loads(data_file("encoder.json").read_text(encoding="utf-8"))
    assert all(BYTE_TO_CHAR[byte] in encoder for byte in range(256))


def test_token_bytes_round_trip():
    data = bytes(range(256))
    assert token_to_bytes(bytes_to_token(data)) == data
    assert bytes_to_token(b" the") == "Ġthe"
    with pytest.raises(ValueError, match="stands for no byte"):
        token_to_bytes("a b")


def _texts() -> list[str]:
    return [*SAMPLES, data_file("tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000]]


def test_compiled_gpt2_pattern_splits_exactly_like_the_original():
    fast = compile_pattern(GPT2_PATTERN)  # a faster equivalent form is compiled for GPT-2's pattern
    for text in [*_texts(), data_file("instruction-data.json").read_text(encoding="utf-8")]:
        assert split_text(fast, text, check_coverage=True) == regex.findall(GPT2_PATTERN, text)


def test_ascii_text_takes_the_ascii_split_and_splits_exactly_like_the_original(monkeypatch):
    """Pure-ASCII text is split by the standard library's ``re`` with the classes written out for ASCII; on
    random ASCII strings (every one of the 128 characters, weighted towards spaces, quotes and contraction
    letters) and on the ASCII data files it gives the chunks of GPT-2's original pattern."""
    import random

    from scratch_gpt import byte_level

    compiled = compile_pattern(GPT2_PATTERN)
    used = []
    ascii_split = byte_level._ASCII_SPLITS[compiled.pattern]

    class Spy:
        def findall(self, text):
            used.append(text)
            return ascii_split.findall(text)

    monkeypatch.setitem(byte_level._ASCII_SPLITS, compiled.pattern, Spy())
    rng = random.Random(0)
    alphabet = [chr(i) for i in range(128)] + list(" 'sdmtlvre\n\r\t") * 5
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(5000)]
    texts += [t for t in _texts() if t.isascii()]
    for text in texts:
        assert split_text(compiled, text, check_coverage=True) == regex.findall(GPT2_PATTERN, text), repr(
            text
        )
    assert len(used) == len(texts)
    assert split_text(compiled, "café's", check_coverage=True) == ["café", "'s"]  # not ASCII: regex
    assert len(used) == len(texts)


def test_gpt4_pattern_splits_like_tiktoken_cl100k():
    ours = compile_pattern(GPT4_PATTERN)
    for text in _texts():
        assert ours.findall(text) == regex.findall(TIKTOKEN_CL100K_PATTERN, text)


def test_resolve_pattern():
    assert resolve_pattern("gpt2") == GPT2_PATTERN
    assert resolve_pattern("gpt4") == GPT4_PATTERN
    assert resolve_pattern(r"\S+|\s+") == r"\S+|\s+"
