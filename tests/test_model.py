"""The book's GPTModel: parameter counts, shapes, and clear errors on bad input."""

import pytest
import torch
from model_helpers import random_ids, tiny_config

from scratch_gpt import PRESETS, GPTModel, ScratchGPTConfig


def count_parameters(config: ScratchGPTConfig) -> int:
    with torch.device("meta"):  # no memory, no time: only shapes
        model = GPTModel(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("tied", "qkv_bias", "expected"),
    [
        (False, False, 163_009_536),
        (True, False, 124_412_160),
        (False, True, 163_037_184),
        (True, True, 124_439_808),
    ],
)
def test_124m_parameter_counts_equal_the_book(tied, qkv_bias, expected):
    config = ScratchGPTConfig.from_preset("gpt2-small", tie_word_embeddings=tied, qkv_bias=qkv_bias)
    assert count_parameters(config) == expected


@pytest.mark.parametrize(
    ("preset", "expected"),
    [("gpt2-medium", 354_749_440), ("gpt2-large", 773_891_840), ("gpt2-xl", 1_557_380_800)],
)
def test_larger_presets(preset, expected):
    assert preset in PRESETS
    assert count_parameters(ScratchGPTConfig.from_preset(preset)) == expected


def test_forward_shapes_and_tying():
    model = GPTModel(tiny_config(tie_word_embeddings=True))
    assert model.out_head.weight is model.tok_emb.weight
    assert model(random_ids(2, 7)).shape == (2, 7, 100)
    untied = GPTModel(tiny_config(tie_word_embeddings=False))
    assert untied.out_head.weight is not untied.tok_emb.weight  # its own (V, d) matrix
    assert untied.out_head.weight.shape == untied.tok_emb.weight.shape


def test_eager_and_sdpa_models_agree():
    torch.manual_seed(0)
    model = GPTModel(tiny_config()).eval()
    ids = random_ids(2, 20)
    sdpa = model(ids)
    model.attn_implementation = "eager"
    torch.testing.assert_close(model(ids), sdpa, atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training():
    model = GPTModel(tiny_config(dropout=0.5))
    ids = random_ids(1, 8)
    model.eval()
    assert torch.equal(model(ids), model(ids))
    model.train()
    assert not torch.equal(model(ids), model(ids))


@pytest.mark.parametrize(
    ("ids", "error", "match"),
    [
        (torch.rand(1, 4), TypeError, "must be integers"),
        (torch.tensor([[1, 2, 100]]), ValueError, r"token id 100 is outside the vocabulary \[0, 100\)"),
        (torch.tensor([[-1, 2]]), ValueError, "token id -1 is outside"),
        (torch.zeros(0, 5, dtype=torch.long), ValueError, "empty batch"),
        (torch.zeros(2, 0, dtype=torch.long), ValueError, "empty batch"),
        (torch.tensor([1, 2, 3]), ValueError, "must be 2-D"),
        ([[1, 2, 3]], TypeError, "must be a torch.Tensor"),
    ],
)
def test_bad_token_ids_raise_clear_errors(ids, error, match):
    with pytest.raises(error, match=match):
        GPTModel(tiny_config())(ids)


def test_input_longer_than_context_names_both_numbers():
    with pytest.raises(ValueError, match=r"input of 33 tokens.*n_positions=32"):
        GPTModel(tiny_config())(random_ids(1, 33))
