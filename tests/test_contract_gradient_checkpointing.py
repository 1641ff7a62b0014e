"""Gradient checkpointing with transformers' semantics: the blocks are GradientCheckpointingLayers, the kwargs of
gradient_checkpointing_enable reach torch's checkpoint, activations are recomputed, and gradients do not change."""

import pytest
import torch
from model_helpers import random_ids, tiny_config
from transformers.modeling_layers import GradientCheckpointingLayer

from scratch_gpt import ScratchGPTForCausalLM


def gradients(model, ids):
    model.zero_grad()
    torch.manual_seed(1)  # the same dropout masks in both runs
    model(ids, labels=ids).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_blocks_are_gradient_checkpointing_layers():
    model = ScratchGPTForCausalLM(tiny_config())
    blocks = model.transformer.gpt.trf_blocks
    assert all(isinstance(block, GradientCheckpointingLayer) for block in blocks)
    assert model.supports_gradient_checkpointing
    assert not model.is_activation_checkpointing
    model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing
    assert all(block.gradient_checkpointing for block in blocks)
    model.activation_checkpointing_disable()
    assert not any(block.gradient_checkpointing for block in blocks)


@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_checkpointed_gradients_equal_plain_ones(use_reentrant, dropout):
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config(dropout=dropout)).train()
    ids = random_ids(2, 12)
    plain = gradients(model, ids)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    if use_reentrant:
        model.enable_input_require_grads()  # reentrant checkpointing needs an input that requires grad
    checkpointed = gradients(model, ids)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


def test_checkpointing_recomputes_each_block_in_backward_with_the_given_kwargs():
    model = ScratchGPTForCausalLM(tiny_config()).train()
    ids = random_ids(2, 8)
    calls = []
    model.transformer.gpt.trf_blocks[0].norm1.register_forward_hook(lambda *args: calls.append(1))
    model(ids, labels=ids).loss.backward()
    assert len(calls) == 1  # plain: one forward
    calls.clear()
    seen = {}

    def spy_checkpoint(function, *args, **kwargs):
        seen.update(kwargs)
        return torch.utils.checkpoint.checkpoint(function, *args, **kwargs)

    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    for block in model.transformer.gpt.trf_blocks:
        original = block._gradient_checkpointing_func
        block._gradient_checkpointing_func = lambda fn, *a, _o=original: spy_checkpoint(fn, *a, **_o.keywords)
    loss = model(ids, labels=ids).loss
    assert len(calls) == 1
    loss.backward()
    assert len(calls) == 2  # recomputed in backward
    assert seen == {"use_reentrant": False}


def test_no_cache_and_no_checkpointing_outside_training():
    model = ScratchGPTForCausalLM(tiny_config()).train()
    model.activation_checkpointing_enable()
    ids = random_ids(1, 6)
    assert model(ids, use_cache=True).cache is None  # training + checkpointing: the cache is switched off
    model.eval()
    with torch.no_grad():
        out = model(ids, use_cache=True)
    assert out.cache.get_seq_length() == 6  # inference: the cache works as usual


def test_every_n_layers_selects_blocks_as_transformers_does():
    model = ScratchGPTForCausalLM(tiny_config(n_layer=4))
    model.activation_checkpointing_enable(every_n_layers=2)
    assert [block.gradient_checkpointing for block in model.transformer.gpt.trf_blocks] == [
        True,
        False,
        True,
        False,
    ]
