"""LayerNorm, GELU and FeedForward against the formulas of chapter 4."""

import torch

from scratch_gpt.layers import GELU, FeedForward, LayerNorm, gelu_reference


def test_layer_norm_matches_the_book_formula():
    torch.manual_seed(0)
    norm = LayerNorm(16)
    with torch.no_grad():
        norm.scale.normal_()
        norm.shift.normal_()
    x = torch.randn(2, 5, 16) * 3 + 1
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    expected = norm.scale * (x - mean) / torch.sqrt(var + 1e-5) + norm.shift
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)


def test_layer_norm_output_has_zero_mean_unit_variance():
    out = LayerNorm(8)(torch.randn(4, 8) * 10 + 5)
    torch.testing.assert_close(out.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_gelu_is_gpt2_tanh_approximation():
    x = torch.linspace(-6, 6, 1001)
    torch.testing.assert_close(GELU()(x), gelu_reference(x), atol=1e-6, rtol=1e-6)
    # and it is not the exact (erf) GELU
    assert (GELU()(x) - torch.nn.functional.gelu(x)).abs().max() > 1e-5


def test_feed_forward_expands_four_times_and_keeps_shape():
    ff = FeedForward(32)
    assert ff.fc_in.out_features == 128 and ff.fc_out.in_features == 128
    assert ff(torch.randn(2, 3, 32)).shape == (2, 3, 32)
