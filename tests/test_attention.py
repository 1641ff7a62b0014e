"""Causal multi-head attention: the book's explicit path, the SDPA path, masks and the KV cache."""

import pytest
import torch

from scratch_gpt.attention import (
    MultiHeadAttention,
    eager_attention,
    get_attention_function,
    make_attention_mask,
    sdpa_attention,
)
from scratch_gpt.kv_cache import KVCache

PATHS = (eager_attention, sdpa_attention)


def make_mha(qkv_bias=True, dropout=0.0):
    torch.manual_seed(0)
    return MultiHeadAttention(
        d_in=32, d_out=32, context_length=64, dropout=dropout, num_heads=4, qkv_bias=qkv_bias
    )


def attend(mha, x, fn=sdpa_attention, **kwargs):
    return mha(x, attention_function=fn, **kwargs)[0]


def test_eager_and_sdpa_paths_agree_within_1e_5():
    mha = make_mha()
    x = torch.randn(3, 17, 32)
    torch.testing.assert_close(attend(mha, x, eager_attention), attend(mha, x), atol=1e-5, rtol=0)


def test_eager_returns_the_book_attention_weights():
    mha = make_mha()
    x = torch.randn(2, 5, 32)
    out, weights = mha(x, attention_function=eager_attention)
    # the book's computation written out: softmax over the causal-masked, scaled scores of head 0
    q = mha.W_query(x)[..., :8]
    k = mha.W_key(x)[..., :8]
    scores = (q @ k.transpose(1, 2)).masked_fill(torch.ones(5, 5).triu(1).bool(), -torch.inf)
    torch.testing.assert_close(weights[:, 0], torch.softmax(scores / 8**0.5, dim=-1), atol=1e-6, rtol=0)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 5))
    assert mha(x)[1] is None  # sdpa never materializes them


def test_additive_float_mask_equals_bool_mask():
    mha = make_mha()
    x = torch.randn(2, 6, 32)
    bool_mask = make_attention_mask(torch.tensor([[0, 1, 1, 1, 1, 1], [1] * 6]), 6, 0, x.device)
    float_mask = torch.zeros(bool_mask.shape).masked_fill(~bool_mask, torch.finfo(torch.float32).min)
    torch.testing.assert_close(
        attend(mha, x, eager_attention, mask=float_mask), attend(mha, x, eager_attention, mask=bool_mask)
    )


def test_attention_is_causal():
    mha = make_mha()
    x = torch.randn(1, 10, 32)
    y = x.clone()
    y[:, 6:] = torch.randn(1, 4, 32)  # change the future
    for fn in PATHS:
        torch.testing.assert_close(attend(mha, x, fn)[:, :6], attend(mha, y, fn)[:, :6])


def test_cached_attention_equals_full_attention():
    mha = make_mha()
    x = torch.randn(2, 12, 32)
    full = attend(mha, x)
    for fn in PATHS:
        cache = KVCache()
        prefill = attend(mha, x[:, :7], fn, cache=cache)
        # several new tokens at once after the cache need the offset causal mask
        mask = make_attention_mask(None, num_queries=3, num_past=7, device=x.device)
        middle = attend(mha, x[:, 7:10], fn, mask=mask, cache=cache)
        steps = [attend(mha, x[:, t : t + 1], fn, cache=cache) for t in (10, 11)]
        torch.testing.assert_close(torch.cat([prefill, middle, *steps], dim=1), full, atol=1e-5, rtol=0)


def test_padding_mask_hides_pad_keys_and_never_gives_nan():
    mha = make_mha()
    x = torch.randn(2, 6, 32)
    padding = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    mask = make_attention_mask(padding, num_queries=6, num_past=0, device=x.device)
    assert mask.shape == (2, 1, 6, 6)
    for fn in PATHS:
        out = attend(mha, x, fn, mask=mask)
        assert not torch.isnan(out).any()
        # row 0's real tokens give what the unpadded sequence gives
        torch.testing.assert_close(out[0, 2:], attend(mha, x[:1, 2:], fn)[0], atol=1e-5, rtol=0)


def test_mask_is_none_only_when_no_padding_mask_is_given():
    assert make_attention_mask(None, 5, 0, torch.device("cpu")) is None
    assert make_attention_mask(None, 1, 8, torch.device("cpu")) is None
    # a padding mask always gives a tensor, whatever its values: no branch on data (torch.export traces it)
    assert make_attention_mask(torch.ones(2, 9), 1, 8, torch.device("cpu")).shape == (2, 1, 1, 9)


def test_unknown_implementation_and_bad_heads_raise_clearly():
    with pytest.raises(ValueError, match="unknown attn_implementation 'flash'"):
        get_attention_function("flash")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(32, 30, 8, 0.0, num_heads=4)
