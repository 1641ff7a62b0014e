"""return_dict=False (argument or config) gives tuples equal to GPT-2's; past_key_values is deprecated, not silent."""

import pytest
import torch
from model_helpers import gpt2_pair, random_ids, tiny_config
from transformers import DynamicCache

from scratch_gpt import ScratchGPTForSequenceClassification, ScratchGPTModel


def assert_same_tuple(mine, theirs):
    assert isinstance(mine, tuple) and isinstance(theirs, tuple)
    if len(theirs) == len(mine) + 1 and theirs[-1] == ():
        theirs = theirs[
            :-1
        ]  # GPT-2's cross_attentions, empty: it can be an encoder-decoder's decoder; we cannot
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        elif isinstance(a, tuple):  # hidden states / attentions
            assert_same_tuple(a, b)
        else:  # the cache
            assert type(a) is type(b)
            for layer_a, layer_b in zip(a.layers, b.layers):
                torch.testing.assert_close(layer_a.keys, layer_b.keys, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(use_cache=False),
        dict(labels=True),
        dict(output_hidden_states=True, output_attentions=True),
        dict(labels=True, output_hidden_states=True, use_cache=False),
    ],
)
def test_return_dict_false_argument_gives_gpt2s_tuple(kwargs):
    gpt2, ours = gpt2_pair("eager")
    ids = random_ids(2, 6)
    if kwargs.pop("labels", False):
        kwargs["labels"] = ids
    assert_same_tuple(ours(ids, return_dict=False, **kwargs), gpt2(ids, return_dict=False, **kwargs))


def test_return_dict_false_in_config_gives_tuples_for_every_head():
    gpt2, ours = gpt2_pair("eager")
    ids = random_ids(2, 6)
    ours.config.return_dict = False
    # GPT-2 itself crashes with config.return_dict=False (its head reads .last_hidden_state from the base model's
    # tuple; transformers 5.24), so its return_dict=False argument is the oracle here
    assert_same_tuple(ours(ids, labels=ids), gpt2(ids, labels=ids, return_dict=False))
    config = tiny_config(return_dict=False)
    base = ScratchGPTModel(config).eval()(ids)
    assert isinstance(base, tuple) and base[0].shape == (2, 6, 64)
    classifier = ScratchGPTForSequenceClassification(config).eval()(ids, labels=torch.tensor([0, 1]))
    assert isinstance(classifier, tuple) and classifier[0].ndim == 0 and classifier[1].shape == (2, 2)
    assert ours(ids, return_dict=True).logits.shape == (2, 6, 100)  # the argument wins over the config


def test_past_key_values_is_a_deprecated_alias_of_cache():
    _, ours = gpt2_pair("eager")
    ids = random_ids(1, 6)
    cache = DynamicCache(config=ours.config)
    with pytest.warns(FutureWarning, match="past_key_values"):
        ours(ids[:, :5], past_key_values=cache, use_cache=True)
    assert cache.get_seq_length() == 5  # it was used, not ignored
    with pytest.warns(FutureWarning, match="past_key_values"):
        step = ours(ids[:, 5:], past_key_values=cache).logits
    torch.testing.assert_close(step[:, -1], ours(ids).logits[:, -1], atol=1e-5, rtol=1e-5)


def test_cache_output_field_is_cache():
    _, ours = gpt2_pair("eager")
    out = ours(random_ids(1, 4), use_cache=True)
    assert isinstance(out.cache, DynamicCache) and out.cache.get_seq_length() == 4
