"""Tests for convert_gpt2.py: GPT-2 weights both ways, against random Hugging Face GPT2LMHeadModels (no download).

The oracle is transformers' own GPT2LMHeadModel: converted models must give its logits (1e-5, fp32) and its greedy
generations, state dicts must round-trip exactly, and a directory we write must load in a process where scratch_gpt
cannot be imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

from scratch_gpt.configuration_scratch_gpt import ScratchGPTConfig
from scratch_gpt.hub.convert_gpt2 import (
    NAME_TABLE,
    convert_from_gpt2,
    convert_to_gpt2,
    gpt2_config_to_scratch,
    gpt2_to_scratch_state_dict,
    load_gpt2,
    save_as_gpt2,
    scratch_config_to_gpt2,
    scratch_to_gpt2_state_dict,
    to_gpt2,
)
from scratch_gpt.modeling_scratch_gpt import ScratchGPTForCausalLM, ScratchGPTModel

# several shapes: tied / untied head, custom n_inner, odd vocab, another LayerNorm epsilon
SHAPES = {
    "tiny": dict(n_layer=2, n_embd=32, n_head=4, vocab_size=101, n_positions=24),
    "untied-n_inner": dict(
        n_layer=3, n_embd=48, n_head=6, vocab_size=67, n_positions=20, n_inner=80, tie_word_embeddings=False
    ),
    "one-layer-eps": dict(
        n_layer=1, n_embd=64, n_head=2, vocab_size=50, n_positions=16, layer_norm_epsilon=1e-6
    ),
}


def random_gpt2(seed: int = 0, **sizes) -> GPT2LMHeadModel:
    """A GPT2LMHeadModel with every parameter random (LayerNorms and biases too, so no mix-up can hide).

    std 0.2 rather than GPT-2's 0.02: tiny models at 0.02 repeat one token, which makes generation checks vacuous.
    """
    torch.manual_seed(seed)
    config = GPT2Config(**{"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0, **sizes})
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            is_norm_scale = ".ln_" in name and name.endswith(".weight")
            param.normal_(1.0 if is_norm_scale else 0.0, 0.2)
    return model


def random_scratch(seed: int = 0, **config) -> ScratchGPTForCausalLM:
    torch.manual_seed(seed)
    model = ScratchGPTForCausalLM(ScratchGPTConfig(**{**SHAPES["tiny"], "dropout": 0.0, **config})).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.normal_(1.0 if name.endswith(".scale") else 0.0, 0.2)
    return model


def random_ids(vocab_size: int, shape=(3, 9), seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab_size, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def logits(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits


# --- GPT-2 -> scratch_gpt ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_load_gpt2_model_gives_gpt2_logits(shape, attn_implementation):
    gpt2 = random_gpt2(**SHAPES[shape])
    ours = load_gpt2(gpt2)
    ours.config._attn_implementation = attn_implementation
    ids = random_ids(gpt2.config.vocab_size)
    torch.testing.assert_close(logits(ours, ids), logits(gpt2, ids), atol=1e-5, rtol=0)
    assert ours.config.qkv_bias is True
    assert ours.config.n_inner == gpt2.config.n_inner
    assert ours.config.layer_norm_epsilon == gpt2.config.layer_norm_epsilon
    tied = ours.lm_head.weight is ours.transformer.gpt.tok_emb.weight
    assert tied == gpt2.config.tie_word_embeddings
    assert not ours.training


@pytest.mark.parametrize("shape", ["tiny", "untied-n_inner"])
def test_greedy_generation_is_identical(shape):
    gpt2 = random_gpt2(**SHAPES[shape])
    ours = load_gpt2(gpt2)
    prompt = random_ids(gpt2.config.vocab_size, shape=(1, 5))
    kwargs = dict(
        max_new_tokens=12,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
        return_dict_in_generate=True,
        output_logits=True,
    )
    expected = gpt2.generate(prompt, **kwargs)
    actual = ours.generate(prompt, **kwargs)
    assert torch.equal(actual.sequences, expected.sequences)
    torch.testing.assert_close(torch.stack(actual.logits), torch.stack(expected.logits), atol=1e-5, rtol=0)
    assert len(set(expected.sequences[0, 5:].tolist())) > 2  # not a degenerate one-token loop


@pytest.mark.parametrize("shape", SHAPES)
def test_state_dict_round_trip_is_exact(shape):
    gpt2 = random_gpt2(**SHAPES[shape])
    original = gpt2.state_dict()
    ours = gpt2_to_scratch_state_dict(original, gpt2.config)
    assert set(ours) == set(ScratchGPTForCausalLM(gpt2_config_to_scratch(gpt2.config)).state_dict())
    back = scratch_to_gpt2_state_dict(ours, gpt2_config_to_scratch(gpt2.config))
    assert set(back) == set(original)
    for name, tensor in original.items():
        assert torch.equal(back[name], tensor), name


def test_fused_qkv_split_known_answer():
    # c_attn weight (in=2, out=3*2): columns 0-1 are queries, 2-3 keys, 4-5 values; ours is their transpose
    gpt2 = random_gpt2(n_layer=1, n_embd=2, n_head=1, vocab_size=5, n_positions=4)
    state = gpt2.state_dict()
    state["transformer.h.0.attn.c_attn.weight"] = torch.arange(12.0).reshape(2, 6)
    state["transformer.h.0.attn.c_attn.bias"] = torch.arange(6.0)
    ours = gpt2_to_scratch_state_dict(state, gpt2.config)
    assert ours["transformer.gpt.trf_blocks.0.att.W_query.weight"].tolist() == [[0.0, 6.0], [1.0, 7.0]]
    assert ours["transformer.gpt.trf_blocks.0.att.W_key.weight"].tolist() == [[2.0, 8.0], [3.0, 9.0]]
    assert ours["transformer.gpt.trf_blocks.0.att.W_value.weight"].tolist() == [[4.0, 10.0], [5.0, 11.0]]
    assert ours["transformer.gpt.trf_blocks.0.att.W_key.bias"].tolist() == [2.0, 3.0]


def test_name_table_covers_every_parameter_once():
    ours = {row[0] for row in NAME_TABLE}
    assert len(ours) == len(NAME_TABLE)
    assert {row[2] for row in NAME_TABLE} == {"copy", "conv1d", "query", "key", "value"}


def test_gpt2_model_keys_and_old_checkpoint_buffers(tmp_path):
    # GPT2Model / OpenAI-style keys: no "transformer." prefix, no lm_head, plus causal-mask buffers
    gpt2 = random_gpt2(**SHAPES["tiny"])
    base_state = {
        k.removeprefix("transformer."): v for k, v in gpt2.state_dict().items() if k != "lm_head.weight"
    }
    n = gpt2.config.n_positions
    for i in range(gpt2.config.n_layer):
        base_state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
        base_state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    ours = gpt2_to_scratch_state_dict(base_state, gpt2.config)
    assert torch.equal(ours["lm_head.weight"], gpt2.lm_head.weight)
    # a GPT2Model instance works too (its head is the tied embedding)
    base = GPT2Model(gpt2.config)
    base.load_state_dict(gpt2.transformer.state_dict())
    ids = random_ids(gpt2.config.vocab_size)
    torch.testing.assert_close(logits(load_gpt2(base), ids), logits(gpt2, ids), atol=1e-5, rtol=0)


def test_load_gpt2_directory_safetensors(tmp_path):
    gpt2 = random_gpt2(**SHAPES["untied-n_inner"])
    gpt2.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    ours = load_gpt2(tmp_path)
    ids = random_ids(gpt2.config.vocab_size)
    torch.testing.assert_close(logits(ours, ids), logits(gpt2, ids), atol=1e-5, rtol=0)


def test_load_gpt2_directory_pytorch_model_bin(tmp_path):
    gpt2 = random_gpt2(**SHAPES["tiny"])
    gpt2.config.save_pretrained(tmp_path)
    torch.save(gpt2.state_dict(), tmp_path / "pytorch_model.bin")
    ours = load_gpt2(str(tmp_path))
    ids = random_ids(gpt2.config.vocab_size)
    torch.testing.assert_close(logits(ours, ids), logits(gpt2, ids), atol=1e-5, rtol=0)


def test_load_gpt2_dtype():
    gpt2 = random_gpt2(**SHAPES["tiny"]).to(torch.bfloat16)
    assert load_gpt2(gpt2).dtype == torch.bfloat16
    assert load_gpt2(gpt2, dtype=torch.float32).dtype == torch.float32


def test_config_both_ways():
    gpt2_config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=4,
        vocab_size=90,
        n_positions=12,
        n_inner=50,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=3,
        eos_token_id=4,
    )
    ours = gpt2_config_to_scratch(gpt2_config)
    assert (ours.vocab_size, ours.n_positions, ours.n_embd, ours.n_layer, ours.n_head) == (90, 12, 32, 2, 4)
    assert (ours.n_inner, ours.dropout, ours.qkv_bias, ours.bos_token_id, ours.eos_token_id) == (
        50,
        0.0,
        True,
        3,
        4,
    )
    back = scratch_config_to_gpt2(ours)
    for key in (
        "vocab_size",
        "n_positions",
        "n_embd",
        "n_layer",
        "n_head",
        "n_inner",
        "resid_pdrop",
        "attn_pdrop",
        "embd_pdrop",
        "layer_norm_epsilon",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    ):
        assert getattr(back, key) == getattr(gpt2_config, key), key
    assert back.activation_function == "gelu_new"


def test_different_dropout_rates_warn_and_use_resid_pdrop():
    with pytest.warns(UserWarning, match="resid_pdrop=0.2"):
        config = gpt2_config_to_scratch(
            GPT2Config(n_layer=1, n_embd=8, n_head=2, resid_pdrop=0.2, embd_pdrop=0.1)
        )
    assert config.dropout == 0.2


# --- scratch_gpt -> GPT-2 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [dict(), dict(qkv_bias=True), dict(tie_word_embeddings=False, n_inner=40)],
    ids=["no-qkv-bias", "qkv-bias", "untied"],
)
def test_to_gpt2_gives_our_logits(config):
    ours = random_scratch(**config)
    gpt2 = to_gpt2(ours)
    assert type(gpt2) is GPT2LMHeadModel
    ids = random_ids(ours.config.vocab_size)
    torch.testing.assert_close(logits(gpt2, ids), logits(ours, ids), atol=1e-5, rtol=0)
    tied = gpt2.lm_head.weight is gpt2.transformer.wte.weight
    assert tied == ours.config.tie_word_embeddings
    if not ours.config.qkv_bias:  # GPT-2 needs q/k/v biases: they are zeros
        assert not gpt2.transformer.h[0].attn.c_attn.bias.any()


def test_to_gpt2_then_back_is_exact():
    ours = random_scratch(qkv_bias=True, tie_word_embeddings=False)
    back = load_gpt2(to_gpt2(ours))
    for name, tensor in ours.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name


def test_to_gpt2_keeps_bf16():
    ours = random_scratch().to(torch.bfloat16)
    assert to_gpt2(ours).dtype == torch.bfloat16


@pytest.mark.slow
def test_save_as_gpt2_loads_without_scratch_gpt(tmp_path):
    ours = random_scratch(qkv_bias=False)
    out = save_as_gpt2(ours, tmp_path / "gpt2-dir")
    assert json.loads((out / "config.json").read_text())["model_type"] == "gpt2"
    assert not list(out.glob("*.py"))  # no remote code: a stock checkpoint
    ids = random_ids(ours.config.vocab_size)
    torch.save(ids, tmp_path / "ids.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["scratch_gpt"] = None  # -I does not hide an editable install
        import torch
        from transformers import GPT2LMHeadModel
        model = GPT2LMHeadModel.from_pretrained({str(out)!r})
        ids = torch.load({str(tmp_path / "ids.pt")!r})
        with torch.no_grad():
            torch.save(model(ids).logits, {str(tmp_path / "logits.pt")!r})
        """
    )
    subprocess.run(
        [sys.executable, "-I", "-c", script],
        cwd=tmp_path,
        check=True,
        stdin=subprocess.DEVNULL,
        env={"HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), logits(ours, ids), atol=1e-5, rtol=0)


def test_directory_converters_both_ways(tmp_path):
    gpt2 = random_gpt2(**SHAPES["tiny"])
    gpt2.save_pretrained(tmp_path / "gpt2")
    (tmp_path / "gpt2" / "vocab.json").write_text("{}")  # stands for the tokenizer files: copied along
    convert_from_gpt2(tmp_path / "gpt2", tmp_path / "ours")
    assert (tmp_path / "ours" / "vocab.json").read_text() == "{}"
    ours = ScratchGPTForCausalLM.from_pretrained(tmp_path / "ours")
    ids = random_ids(gpt2.config.vocab_size)
    torch.testing.assert_close(logits(ours, ids), logits(gpt2, ids), atol=1e-5, rtol=0)
    convert_to_gpt2(tmp_path / "ours", tmp_path / "back")
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "back")
    torch.testing.assert_close(logits(back, ids), logits(gpt2, ids), atol=1e-5, rtol=0)
    assert not list(tmp_path.glob(".ours.*")) and not list(tmp_path.glob(".back.*"))  # no temp folders left


# --- bad input --------------------------------------------------------------------------------------------------


def test_error_directory_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_gpt2(tmp_path / "nope")


def test_error_not_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"does not exist \(it is a file\)"):
        load_gpt2(tmp_path / "file")


def test_error_no_config_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_gpt2(tmp_path)


def test_error_corrupt_config_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_gpt2(tmp_path)


def test_error_not_gpt2_directory(tmp_path):
    random_scratch().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type is 'scratch_gpt'.*AutoModelForCausalLM"):
        load_gpt2(tmp_path)


def test_error_no_weights_file(tmp_path):
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights.*model.safetensors"):
        load_gpt2(tmp_path)


@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
def test_error_corrupt_weights(tmp_path, weights_file):
    random_gpt2(**SHAPES["tiny"]).config.save_pretrained(tmp_path)
    (tmp_path / weights_file).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match=f"cannot read GPT-2 weights from .*{weights_file}.*corrupt"):
        load_gpt2(tmp_path)


def test_error_missing_key():
    gpt2 = random_gpt2(**SHAPES["tiny"])
    state = gpt2.state_dict()
    del state["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(ValueError, match=r"missing 1 weight.*transformer\.h\.1\.mlp\.c_fc\.bias"):
        gpt2_to_scratch_state_dict(state, gpt2.config)


def test_error_unexpected_key():
    gpt2 = random_gpt2(**SHAPES["tiny"])
    state = {**gpt2.state_dict(), "score.weight": torch.zeros(2, 32)}
    with pytest.raises(ValueError, match="score.weight"):
        gpt2_to_scratch_state_dict(state, gpt2.config)


def test_error_shape_mismatch_names_key_and_both_shapes(tmp_path):
    gpt2 = random_gpt2(**SHAPES["tiny"])
    gpt2.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["n_positions"] = 30  # config and weights disagree
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=r"transformer\.wpe\.weight has shape \(24, 32\).*expects \(30, 32\)"
    ):
        load_gpt2(tmp_path)


def test_error_not_a_gpt2_model():
    with pytest.raises(TypeError, match="GPT2LMHeadModel or GPT2Model, got ScratchGPTForCausalLM"):
        load_gpt2(random_scratch())
    with pytest.raises(TypeError, match="GPT-2 directory or a GPT2LMHeadModel, got int"):
        load_gpt2(3)


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(activation_function="relu"), "activation_function='relu'"),
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
        (dict(scale_attn_weights=False), "scale_attn_weights"),
    ],
)
def test_error_gpt2_features_we_do_not_have(override, message):
    with pytest.raises(ValueError, match=message):
        gpt2_config_to_scratch(GPT2Config(n_layer=1, n_embd=8, n_head=2, **override))


def test_error_to_gpt2_on_wrong_class():
    with pytest.raises(TypeError, match="needs a ScratchGPTForCausalLM, got ScratchGPTModel"):
        to_gpt2(ScratchGPTModel(ScratchGPTConfig(**SHAPES["tiny"])))


def test_error_to_gpt2_with_extra_weights():
    ours = random_scratch()
    state = {
        **ours.state_dict(),
        "transformer.gpt.trf_blocks.0.att.W_query.lora_A.weight": torch.zeros(2, 32),
    }
    with pytest.raises(ValueError, match="lora_A.*merge them first"):
        scratch_to_gpt2_state_dict(state, ours.config)


def test_error_to_gpt2_with_unmerged_hand_written_lora():
    from scratch_gpt.finetune.lora import merge_lora, replace_linear_with_lora

    ours = random_scratch()
    ids = random_ids(ours.config.vocab_size)
    replace_linear_with_lora(ours, rank=2, alpha=4)
    with pytest.raises(ValueError, match="merge them first"):
        to_gpt2(ours)
    merge_lora(ours)  # after merging, the model is plain GPT-2 again
    torch.testing.assert_close(logits(to_gpt2(ours), ids), logits(ours, ids), atol=1e-5, rtol=0)


def test_error_convert_to_gpt2_from_gpt2_directory(tmp_path):
    random_gpt2(**SHAPES["tiny"]).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="'gpt2' checkpoint, not a scratch_gpt one"):
        convert_to_gpt2(tmp_path / "gpt2", tmp_path / "out")


def test_error_output_is_a_file(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        save_as_gpt2(random_scratch(), tmp_path / "out")


def test_convert_to_gpt2_points_our_tokenizer_at_the_stock_class(tmp_path):
    # the remote-code tokenizer files are not copied into a stock GPT-2 folder, so its config must not need them
    random_scratch().save_pretrained(tmp_path / "ours")
    (tmp_path / "ours" / "tokenizer.json").write_text("{}")
    tokenizer_config = {
        "tokenizer_class": "ScratchGPTTokenizerFast",
        "auto_map": {"AutoTokenizer": ["tokenization_scratch_gpt.ScratchGPTTokenizer", None]},
        "eos_token": "<|endoftext|>",
    }
    (tmp_path / "ours" / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    convert_to_gpt2(tmp_path / "ours", tmp_path / "gpt2")
    written = json.loads((tmp_path / "gpt2" / "tokenizer_config.json").read_text())
    assert written == {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}
    assert (tmp_path / "gpt2" / "tokenizer.json").read_text() == "{}"


def test_converted_models_share_no_memory_with_the_source():
    gpt2 = random_gpt2(**SHAPES["tiny"])
    ours = load_gpt2(gpt2)
    back = to_gpt2(ours)
    before = gpt2.transformer.wte.weight.clone()
    with torch.no_grad():
        ours.transformer.gpt.tok_emb.weight.zero_()
        back.transformer.h[0].ln_1.weight.zero_()
    assert torch.equal(gpt2.transformer.wte.weight, before)
    assert ours.transformer.gpt.trf_blocks[0].norm1.scale.abs().min() > 0
    assert ours.lm_head.weight is ours.transformer.gpt.tok_emb.weight  # the tie itself survives


def test_load_gpt2_and_to_gpt2_round_trip_a_model_object():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=2)).eval()
    ours = load_gpt2(gpt2).eval()
    ids = torch.randint(0, 50, (2, 9))
    torch.testing.assert_close(ours(ids).logits, gpt2(ids).logits, atol=1e-5, rtol=1e-5)
    back = to_gpt2(ours).eval()
    assert type(back).__name__ == "GPT2LMHeadModel"
    torch.testing.assert_close(back(ids).logits, gpt2(ids).logits, atol=1e-5, rtol=1e-5)
