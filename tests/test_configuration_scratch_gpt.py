"""ScratchGPTConfig: GPT-2 field names, aliases, presets, JSON round trip, validation."""

import json

import pytest
from huggingface_hub.errors import StrictDataclassError

from scratch_gpt import ScratchGPTConfig


def test_aliases_read_and_write():
    config = ScratchGPTConfig(
        hidden_size=96, num_attention_heads=4, num_hidden_layers=3, max_position_embeddings=64
    )
    assert (config.n_embd, config.n_head, config.n_layer, config.n_positions) == (96, 4, 3, 64)
    assert config.hidden_size == 96 and config.num_hidden_layers == 3
    assert config.model_type == "scratch_gpt"


def test_json_round_trip_keeps_our_field_names(tmp_path):
    config = ScratchGPTConfig.from_preset("gpt2-medium", n_positions=256, dropout=0.0, qkv_bias=True)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["n_embd"] == 1024 and "hidden_size" not in saved
    loaded = ScratchGPTConfig.from_pretrained(tmp_path)
    strip = lambda d: {k: v for k, v in d.items() if k != "_name_or_path"}  # noqa: E731
    assert strip(loaded.to_dict()) == strip(config.to_dict())


def test_dropout_accepts_int_zero():
    assert ScratchGPTConfig(dropout=0).dropout == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_embd": 100, "n_head": 3}, r"n_embd \(100\) must be divisible by n_head \(3\)"),
        ({"n_layer": 0}, "n_layer must be a positive integer, got 0"),
        ({"vocab_size": -5}, "vocab_size must be a positive integer"),
        ({"n_positions": 0}, "n_positions must be a positive integer"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ({"n_inner": 0}, "n_inner must be a positive integer"),
    ],
)
def test_invalid_values_raise_naming_the_field(kwargs, match):
    with pytest.raises(StrictDataclassError, match=match):
        ScratchGPTConfig(**kwargs)


def test_wrong_types_and_unknown_preset():
    with pytest.raises(StrictDataclassError, match="n_embd"):
        ScratchGPTConfig(n_embd="768")
    with pytest.raises(ValueError, match="unknown preset 'gpt5'"):
        ScratchGPTConfig.from_preset("gpt5")
