"""``cross_entropy`` and ``causal_lm_loss`` against PyTorch's and Hugging Face's losses (values and gradients)."""

import pytest
import torch
import torch.nn.functional as F
from transformers.loss.loss_utils import ForCausalLMLoss

from scratch_gpt.kernels import loss as loss_module
from scratch_gpt.kernels.loss import causal_lm_loss, cross_entropy


def _logits_and_targets(n=37, c=501, seed=0, ignore_every=5, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, generator=generator) * 3).to(dtype)
    targets = torch.randint(0, c, (n,), generator=generator)
    if ignore_every:
        targets[::ignore_every] = -100
    return logits, targets


def _value_and_grad(fn, logits, *args, **kwargs):
    x = logits.clone().requires_grad_()
    value = fn(x, *args, **kwargs)
    value.backward()
    return value.detach(), x.grad


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few rows, so that every test crosses many block boundaries (and a ragged last block)."""
    monkeypatch.setitem(loss_module._BLOCK_BYTES, "cpu", 4 * 501 * 3)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_every", [0, 5])
def test_matches_f_cross_entropy(small_blocks, reduction, ignore_every):
    logits, targets = _logits_and_targets(ignore_every=ignore_every)
    ours, ours_grad = _value_and_grad(cross_entropy, logits, targets, reduction=reduction)
    ref, ref_grad = _value_and_grad(F.cross_entropy, logits, targets, reduction=reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-5, atol=1e-7)
    if ignore_every:
        assert ours_grad[::ignore_every].abs().max() == 0  # ignored rows get no gradient


def test_gradient_is_softmax_minus_one_hot_over_the_count():
    logits, targets = _logits_and_targets(n=6, c=11, ignore_every=0)
    _, grad = _value_and_grad(cross_entropy, logits, targets)
    expected = (torch.softmax(logits, -1) - F.one_hot(targets, 11)) / 6
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)


def test_bfloat16_logits_get_a_bfloat16_gradient(small_blocks):
    logits, targets = _logits_and_targets(dtype=torch.bfloat16)
    ours, ours_grad = _value_and_grad(cross_entropy, logits, targets)
    ref, ref_grad = _value_and_grad(lambda x, t: F.cross_entropy(x.float(), t), logits, targets)
    assert ours.dtype == torch.float32 and ours_grad.dtype == torch.bfloat16
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(ours_grad, ref_grad)


def test_all_targets_ignored_gives_nan_mean_and_zero_sum():
    logits = torch.randn(4, 7)
    targets = torch.full((4,), -100)
    assert torch.isnan(cross_entropy(logits, targets)) and torch.isnan(F.cross_entropy(logits, targets))
    assert cross_entropy(logits, targets, reduction="sum") == 0


def test_a_scaled_loss_scales_the_gradient():
    logits, targets = _logits_and_targets()
    x = logits.clone().requires_grad_()
    (3.0 * cross_entropy(x, targets)).backward()
    _, grad = _value_and_grad(cross_entropy, logits, targets)
    torch.testing.assert_close(x.grad, 3.0 * grad)


@pytest.mark.parametrize("num_items", [None, 23])
def test_causal_lm_loss_matches_hugging_faces(small_blocks, num_items):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 9, 501, generator=generator)
    labels = torch.randint(0, 501, (2, 9), generator=generator)
    labels[1, :3] = -100  # e.g. left padding
    kwargs = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    ours, ours_grad = _value_and_grad(causal_lm_loss, logits, labels, **kwargs)
    ref, ref_grad = _value_and_grad(ForCausalLMLoss, logits, labels, vocab_size=501, **kwargs)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_causal_lm_loss_with_shift_labels():
    logits = torch.randn(1, 5, 30)
    labels = torch.randint(0, 30, (1, 5))
    shifted = torch.cat([labels[:, 1:], torch.full((1, 1), -100)], dim=1)
    torch.testing.assert_close(
        causal_lm_loss(logits, labels), causal_lm_loss(logits, None, shift_labels=shifted)
    )


def test_bad_targets_are_named():
    logits = torch.randn(3, 10)
    with pytest.raises(ValueError, match=r"target 10 is not a class id: there are 10 classes .*-100"):
        cross_entropy(logits, torch.tensor([1, 10, 2]))
    with pytest.raises(ValueError, match="target -3 is not a class id"):
        cross_entropy(logits, torch.tensor([1, -3, 2]))
    with pytest.raises(TypeError, match="integer class ids"):
        cross_entropy(logits, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"logits \(N, C\) and targets \(N,\).*flatten"):
        cross_entropy(logits[None], torch.tensor([[1, 2, 3]]))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        cross_entropy(logits, torch.tensor([1, 2, 3]), reduction="none")
