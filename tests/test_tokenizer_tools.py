"""Tests for scratch_gpt.training.tokenizer_tools: the library functions of the tokenizer commands."""

from __future__ import annotations

import pytest
from conftest import data_file

from scratch_gpt.bpe import BPETokenizer
from scratch_gpt.byte_level import GPT4_PATTERN
from scratch_gpt.training.tokenizer_tools import encode_pieces, train_tokenizer_on_files


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return data_file("tinyshakespeare.txt").read_text(encoding="utf-8")


def test_train_tokenizer_on_files_trains_saves_and_measures(tmp_path, shakespeare):
    path = tmp_path / "corpus.txt"
    path.write_text(shakespeare[:30_000], encoding="utf-8")
    summary = train_tokenizer_on_files([path], 500, tmp_path / "out", pattern="gpt4", show_progress=False)
    assert summary.tokenizer.vocab_size == 500 and summary.tokenizer.pattern == GPT4_PATTERN
    assert summary.n_bytes == 30_000 and summary.n_tokens == len(
        summary.tokenizer.encode(shakespeare[:30_000])
    )
    assert 2 < summary.bytes_per_token < 5 and summary.train_seconds > 0
    loaded = BPETokenizer.load(tmp_path / "out")
    assert list(loaded.merges.items()) == list(summary.tokenizer.merges.items())


def test_encode_pieces_reads_a_saved_tokenizer(shakespeare, tmp_path):
    trained = BPETokenizer.train(shakespeare[:50_000], 600, special_tokens=["<|endoftext|>", "<|pad|>"])
    trained.save(tmp_path)
    pieces = encode_pieces(tmp_path, "To be<|pad|>")
    assert b"".join(data for _, data in pieces) == b"To be<|pad|>"
    assert pieces[-1] == (599, b"<|pad|>")
    assert 599 not in [i for i, _ in encode_pieces(tmp_path, "To be<|pad|>", specials_as_text=True)]
