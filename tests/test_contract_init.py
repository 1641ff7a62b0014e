"""A fresh model is initialised as GPT-2 is: per-parameter means and standard deviations equal a fresh
GPT2LMHeadModel's of the same config within sampling error, residual projections at 0.02 / sqrt(2 * n_layer)."""

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from scratch_gpt import ScratchGPTForCausalLM, ScratchGPTForSequenceClassification
from scratch_gpt.hub.convert_gpt2 import gpt2_config_to_scratch, gpt2_to_scratch_state_dict

CONFIG = dict(vocab_size=500, n_positions=64, n_embd=64, n_layer=12, n_head=4, bos_token_id=0, eos_token_id=0)


@pytest.fixture(scope="module")
def fresh_pair():
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(**CONFIG))
    ours = ScratchGPTForCausalLM(gpt2_config_to_scratch(gpt2.config))
    return gpt2_to_scratch_state_dict(gpt2.state_dict(), gpt2.config), {
        n: p.detach() for n, p in ours.named_parameters()
    }


def test_every_parameter_has_gpt2s_mean_and_std_within_sampling_error(fresh_pair):
    theirs, ours = fresh_pair
    assert set(ours) <= set(theirs)
    for name, param in ours.items():
        a, b = param.detach().flatten(), theirs[name].flatten()
        std = float(b.std())
        if std == 0:  # biases (zeros) and LayerNorm scale/shift (ones/zeros): exactly the same constant
            assert torch.equal(a, b), name
            continue
        # the std of n normal samples has standard error std / sqrt(2n); two independent estimates, 5 sigma
        tolerance = 5 * math.sqrt(2) * std / math.sqrt(2 * a.numel())
        assert abs(float(a.std()) - std) < tolerance, (name, float(a.std()), std)
        assert abs(float(a.mean())) < 5 * std / math.sqrt(a.numel()), name


def test_residual_projections_are_scaled_by_depth(fresh_pair):
    _, ours = fresh_pair
    residual_std = 0.02 / math.sqrt(2 * CONFIG["n_layer"])  # 0.0041 at 12 layers
    for i in range(CONFIG["n_layer"]):
        for name in ("att.out_proj.weight", "ff.fc_out.weight"):
            std = float(ours[f"transformer.gpt.trf_blocks.{i}.{name}"].std())
            assert abs(std - residual_std) < 0.1 * residual_std, (i, name, std)
        assert abs(float(ours[f"transformer.gpt.trf_blocks.{i}.att.W_query.weight"].std()) - 0.02) < 0.002


def test_classifier_head_and_loaded_weights():
    torch.manual_seed(0)
    config = gpt2_config_to_scratch(GPT2Config(**CONFIG))
    classifier = ScratchGPTForSequenceClassification(config)
    assert abs(float(classifier.score.weight.std()) - 0.02) < 0.004
    out_proj = classifier.transformer.gpt.trf_blocks[0].att.out_proj.weight
    assert abs(float(out_proj.std()) - 0.02 / math.sqrt(24)) < 0.0005
