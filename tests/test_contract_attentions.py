"""output_attentions: our eager attention weights equal GPT-2's on converted weights, in forward and generate()."""

import pytest
import torch
from model_helpers import gpt2_pair, random_ids


def test_output_attentions_equal_gpt2_within_1e_5():
    gpt2, ours = gpt2_pair("eager")
    ids = random_ids(2, 9)
    theirs = gpt2(ids, output_attentions=True).attentions
    mine = ours(ids, output_attentions=True).attentions
    assert len(mine) == len(theirs) == 2
    for a, b in zip(mine, theirs):
        assert a.shape == (2, 4, 9, 9)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_output_attentions_with_left_padding_and_config_flag_equal_gpt2():
    gpt2, ours = gpt2_pair("eager")
    ids = random_ids(2, 7)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1] * 7])
    gpt2.config.output_attentions = ours.config.output_attentions = True
    theirs = gpt2(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).attentions
    mine = ours(ids, attention_mask=mask).attentions  # our positions come from the mask by default
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a[:, :, 2:], b[:, :, 2:], atol=1e-5, rtol=0)  # every real query row


def test_no_attentions_unless_asked():
    _, ours = gpt2_pair("eager")
    assert ours(random_ids(1, 5)).attentions is None


def test_generate_returns_attentions_per_step_like_gpt2():
    gpt2, ours = gpt2_pair("eager")
    prompt = random_ids(1, 5)
    kwargs = dict(max_new_tokens=4, do_sample=False, output_attentions=True, return_dict_in_generate=True)
    theirs, mine = gpt2.generate(prompt, **kwargs), ours.generate(prompt, **kwargs)
    assert torch.equal(mine.sequences, theirs.sequences)
    assert len(mine.attentions) == 4
    for step_mine, step_theirs in zip(mine.attentions, theirs.attentions):
        assert step_mine is not None and len(step_mine) == 2
        for a, b in zip(step_mine, step_theirs):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_assisted_generation_with_output_attentions_runs_and_equals_plain_greedy():
    gpt2, ours = gpt2_pair("eager")
    _, assistant = gpt2_pair("eager", seed=1)
    prompt = random_ids(1, 5)
    kwargs = dict(max_new_tokens=6, do_sample=False, output_attentions=True, return_dict_in_generate=True)
    assisted = ours.generate(prompt, assistant_model=assistant, **kwargs)
    plain = ours.generate(prompt, **kwargs)
    assert torch.equal(assisted.sequences, plain.sequences)
    assert all(step is not None for step in assisted.attentions)
