"""Causal multi-head attention: the book's explicit path, the SDPA path, masks and the KV cache."""

import pytest
import torch

from scratch_gpt.attention import MultiHeadAttention, make_attention_mask
from scratch_gpt.kv_cache import KVCache


def make_mha(qkv_bias=True, dropout=0.0):
    torch.manual_seed(0)
    return MultiHeadAttention(
        d_in=32, d_out=32, context_length=64, dropout=dropout, num_heads=4, qkv_bias=qkv_bias
    )


def test_eager_and_sdpa_paths_agree_within_1e_5():
    mha = make_mha()
    x = torch.randn(3, 17, 32)
    torch.testing.assert_close(
        mha(x, attn_implementation="eager"), mha(x, attn_implementation="sdpa"), atol=1e-5, rtol=0
    )


def test_attention_is_causal():
    mha = make_mha()
    x = torch.randn(1, 10, 32)
    y = x.clone()
    y[:, 6:] = torch.randn(1, 4, 32)  # change the future
    for impl in ("eager", "sdpa"):
        torch.testing.assert_close(
            mha(x, attn_implementation=impl)[:, :6], mha(y, attn_implementation=impl)[:, :6]
        )


def test_cached_attention_equals_full_attention():
    mha = make_mha()
    x = torch.randn(2, 12, 32)
    full = mha(x)
    for impl in ("eager", "sdpa"):
        cache = KVCache()
        prefill = mha(x[:, :7], cache=cache, attn_implementation=impl)
        # several new tokens at once after the cache need the offset causal mask
        mask = make_attention_mask(None, num_queries=3, num_past=7, device=x.device)
        middle = mha(x[:, 7:10], mask=mask, cache=cache, attn_implementation=impl)
        steps = [mha(x[:, t : t + 1], cache=cache, attn_implementation=impl) for t in (10, 11)]
        torch.testing.assert_close(torch.cat([prefill, middle, *steps], dim=1), full, atol=1e-5, rtol=0)


def test_padding_mask_hides_pad_keys_and_never_gives_nan():
    mha = make_mha()
    x = torch.randn(2, 6, 32)
    padding = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    mask = make_attention_mask(padding, num_queries=6, num_past=0, device=x.device)
    assert mask.shape == (2, 1, 6, 6)
    for impl in ("eager", "sdpa"):
        out = mha(x, mask=mask, attn_implementation=impl)
        assert not torch.isnan(out).any()
        # row 0's real tokens give what the unpadded sequence gives
        torch.testing.assert_close(out[0, 2:], mha(x[:1, 2:], attn_implementation=impl)[0], atol=1e-5, rtol=0)


def test_mask_is_none_when_plain_causal_is_enough():
    assert make_attention_mask(None, 5, 0, torch.device("cpu")) is None
    assert make_attention_mask(torch.ones(2, 9), 1, 8, torch.device("cpu")) is None


def test_unknown_implementation_and_bad_heads_raise_clearly():
    with pytest.raises(ValueError, match="unknown attn_implementation"):
        make_mha()(torch.randn(1, 2, 32), attn_implementation="flash")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(32, 30, 8, 0.0, num_heads=4)
