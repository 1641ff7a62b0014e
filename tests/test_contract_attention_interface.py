"""transformers' attention interface reaches our attention: every attn_implementation we accept (eager, sdpa,
flex_attention, a function you register) agrees with sdpa within 1e-5, with and without padding."""

import shutil

import pytest
import torch
from model_helpers import gpt2_pair, random_ids
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from scratch_gpt.attention import eager_attention

IDS = random_ids(2, 8)
MASK = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8])  # left padding


def logits_with(model, attn_implementation):
    model.set_attn_implementation(attn_implementation)
    assert model.config._attn_implementation == attn_implementation
    with torch.no_grad():
        return model(IDS).logits, model(IDS, attention_mask=MASK).logits[MASK.bool()]


def assert_agrees_with_sdpa(attn_implementation):
    _, model = gpt2_pair("sdpa")
    want = logits_with(model, "sdpa")
    for got, expected in zip(logits_with(model, attn_implementation), want):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_eager_agrees_with_sdpa_and_is_our_book_attention():
    assert_agrees_with_sdpa("eager")


def test_a_registered_attention_function_is_called_and_agrees_with_sdpa():
    calls = []

    def my_attention(module, query, key, value, attention_mask, **kwargs):
        calls.append((type(module).__name__, tuple(query.shape)))
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("scratch_test_attention", my_attention)
    AttentionMaskInterface.register("scratch_test_attention", sdpa_mask)
    try:
        assert_agrees_with_sdpa("scratch_test_attention")
    finally:  # registrations are global: leave no trace for other tests
        AttentionInterface._global_mapping.pop("scratch_test_attention")
        AttentionMaskInterface._global_mapping.pop("scratch_test_attention")
    assert calls and calls[0] == (
        "MultiHeadAttention",
        (2, 4, 8, 16),
    )  # our attention module, (B, H, T, d_head)


def test_the_core_eager_function_is_the_default_for_eager():
    _, model = gpt2_pair("eager")
    seen = []
    original = AttentionInterface._global_mapping.get("eager")
    assert original is None  # "eager" is never registered: each model brings its own, ours is the book's
    hook = model.transformer.gpt.trf_blocks[0].att.register_forward_hook(
        lambda m, a, out: seen.append(out[1])
    )
    model(IDS)
    hook.remove()
    assert seen[0] is not None and seen[0].shape == (2, 4, 8, 8)  # eager_attention returns its weights
    assert eager_attention.__module__ == "scratch_gpt.attention"


def test_unknown_implementation_is_refused_clearly():
    _, model = gpt2_pair("sdpa")
    with pytest.raises(ValueError, match="not supported"):
        model.set_attn_implementation("no_such_attention")


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="flex_attention on CPU is compiled by torch.compile's inductor, which needs a C++ compiler (g++)",
)
def test_flex_attention_agrees_with_sdpa_for_inference():
    # torch 2.13's flex_attention has no backward on CPU, so on CPU it is for inference only (no_grad)
    assert_agrees_with_sdpa("flex_attention")
