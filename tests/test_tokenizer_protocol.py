"""Tests for scratch_gpt.tokenizer_protocol: one protocol and one adapter for the three kinds of tokenizer.

Oracles: tiktoken's GPT-2 encoding (the book's tokenizer) built from the local files, and our BPETokenizer and
ScratchGPTTokenizerFast, which must give tiktoken's ids through the adapter.
"""

from __future__ import annotations

import pytest
from conftest import data_file

from scratch_gpt import BPETokenizer, ScratchGPTTokenizerFast
from scratch_gpt.constants import END_OF_TEXT, GPT2_EOS_ID
from scratch_gpt.tokenizer_protocol import (
    HFTokenizerAdapter,
    TextTokenizer,
    as_text_tokenizer,
    end_of_text_id,
    is_hf_tokenizer,
    save_tokenizer,
)

TEXT = "Hello, do you like tea? In the sunlit terraces of someunknownPlace."


@pytest.fixture(scope="module")
def gpt2_bpe() -> BPETokenizer:
    return BPETokenizer.from_gpt2_files(data_file("encoder.json"), data_file("vocab.bpe"))


def test_every_kind_gives_the_same_ids_and_end_of_text(gpt2_bpe, gpt2_tiktoken):
    hf = ScratchGPTTokenizerFast.from_bpe(gpt2_bpe)
    expected = gpt2_tiktoken.encode(TEXT)
    for tokenizer in (gpt2_tiktoken, gpt2_bpe, hf):
        text_tokenizer = as_text_tokenizer(tokenizer)
        assert isinstance(text_tokenizer, TextTokenizer)
        assert text_tokenizer.encode(TEXT) == expected  # no special tokens added by the adapter
        assert text_tokenizer.decode(expected) == TEXT
        assert end_of_text_id(tokenizer) == end_of_text_id(text_tokenizer) == GPT2_EOS_ID
    assert is_hf_tokenizer(hf) and not is_hf_tokenizer(gpt2_bpe) and not is_hf_tokenizer(gpt2_tiktoken)
    adapter = as_text_tokenizer(hf)
    assert isinstance(adapter, HFTokenizerAdapter) and as_text_tokenizer(adapter) is adapter
    assert adapter.encode_batch([TEXT, "tea"]) == [expected, gpt2_tiktoken.encode("tea")]


def test_no_end_of_text_and_not_a_tokenizer():
    bpe = BPETokenizer.train("low lower lowest " * 20, vocab_size=262, special_tokens=())
    assert end_of_text_id(bpe) is None
    with pytest.raises(TypeError, match="tokenizer must have encode"):
        as_text_tokenizer(object())


def test_save_tokenizer_picks_the_format(tmp_path):
    bpe = BPETokenizer.train("low lower lowest " * 20, vocab_size=270, special_tokens=(END_OF_TEXT,))
    save_tokenizer(bpe, tmp_path / "bpe")
    assert (tmp_path / "bpe" / "bpe_config.json").is_file()
    save_tokenizer(ScratchGPTTokenizerFast.from_bpe(bpe), tmp_path / "hf")
    assert (tmp_path / "hf" / "tokenizer_config.json").is_file()
    save_tokenizer(None, tmp_path / "none")
    assert not (tmp_path / "none").exists()
