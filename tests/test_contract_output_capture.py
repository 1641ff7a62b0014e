"""transformers' generic output capture (OutputRecorder hooks, _can_record_outputs) sees our layers: hidden states
and attentions equal GPT-2's, selected hidden states work, and nothing is recorded unless asked."""

import torch
from model_helpers import gpt2_pair, random_ids, tiny_config
from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY

from scratch_gpt import ScratchGPTForSequenceClassification, ScratchGPTModel
from scratch_gpt.attention import MultiHeadAttention
from scratch_gpt.modeling_scratch_gpt import ScratchGPTBlock


def test_our_classes_declare_what_can_be_recorded():
    spec = _CAN_RECORD_REGISTRY.get(ScratchGPTModel(tiny_config()))
    assert spec["hidden_states"] is ScratchGPTBlock
    assert spec["attentions"].target_class is MultiHeadAttention and spec["attentions"].index == 1


def test_hidden_states_and_attentions_equal_gpt2s():
    gpt2, ours = gpt2_pair("eager")
    ids = random_ids(2, 7)
    theirs = gpt2(ids, output_hidden_states=True, output_attentions=True)
    mine = ours(ids, output_hidden_states=True, output_attentions=True)
    assert (
        len(mine.hidden_states) == len(theirs.hidden_states) == 3
    )  # embeddings + one per block (last normed)
    for a, b in zip(mine.hidden_states + mine.attentions, theirs.hidden_states + theirs.attentions):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine.hidden_states[-1], ours.transformer(ids).last_hidden_state)


def test_selected_hidden_states_by_index():
    _, ours = gpt2_pair("eager")
    ids = random_ids(1, 5)
    everything = ours(ids, output_hidden_states=True).hidden_states
    selected = ours(ids, output_hidden_states=[0, -1]).hidden_states
    torch.testing.assert_close(selected[0], everything[0])
    torch.testing.assert_close(selected[-1], everything[-1])
    assert selected[1] is None  # not selected, not kept


def test_capture_reaches_the_classifier_and_config_flags():
    config = tiny_config(output_hidden_states=True)
    torch.manual_seed(0)
    model = ScratchGPTForSequenceClassification(config).eval()
    out = model(random_ids(2, 6))
    assert len(out.hidden_states) == config.n_layer + 1 and out.attentions is None


def test_nothing_recorded_unless_asked():
    _, ours = gpt2_pair("eager")
    out = ours(random_ids(1, 5))
    assert out.hidden_states is None and out.attentions is None
