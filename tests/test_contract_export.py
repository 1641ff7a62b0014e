"""torch.export traces the model with and without an attention_mask (no branch on the mask's values), and the
exported program's logits equal eager ones, as GPT-2's do."""

import pytest
import torch
from model_helpers import gpt2_pair, random_ids, tiny_config

from scratch_gpt import GPTModel, ScratchGPTForSequenceClassification

LEFT_PADDED = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8])


def export(model, **kwargs):
    return torch.export.export(model, args=(), kwargs=kwargs).module()


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_export_without_mask_equals_eager_and_gpt2(attn_implementation):
    gpt2, ours = gpt2_pair(attn_implementation)
    ids = random_ids(2, 8)
    exported = export(ours, input_ids=ids, use_cache=False)
    torch.testing.assert_close(exported(input_ids=ids, use_cache=False).logits, ours(ids).logits)
    torch.testing.assert_close(
        exported(input_ids=ids, use_cache=False).logits, gpt2(ids).logits, atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_export_with_mask_does_not_bake_in_the_mask_values(attn_implementation):
    _, ours = gpt2_pair(attn_implementation)
    ids = random_ids(2, 8)
    # traced on an all-ones mask (the case a value branch would shortcut), run on a left-padded one
    exported = export(ours, input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    for mask in (torch.ones_like(ids), LEFT_PADDED):
        got = exported(input_ids=ids, attention_mask=mask, use_cache=False).logits
        want = ours(ids, attention_mask=mask).logits
        torch.testing.assert_close(got[mask.bool()], want[mask.bool()], atol=1e-5, rtol=0)


def test_exported_sequence_classifier_pools_the_last_real_token():
    torch.manual_seed(0)
    model = ScratchGPTForSequenceClassification(tiny_config()).eval()
    ids = random_ids(2, 8)
    right = torch.tensor([[1] * 6 + [0, 0], [1] * 8])
    exported = export(model, input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    for mask in (right, LEFT_PADDED):
        torch.testing.assert_close(
            exported(input_ids=ids, attention_mask=mask, use_cache=False).logits,
            model(ids, attention_mask=mask).logits,
        )


def test_the_book_model_exports_with_a_padding_mask():
    torch.manual_seed(0)
    model = GPTModel(tiny_config()).eval()
    ids = random_ids(2, 8)
    exported = torch.export.export(
        model, args=(ids,), kwargs={"attention_mask": torch.ones_like(ids)}
    ).module()
    got = exported(ids, attention_mask=LEFT_PADDED)
    torch.testing.assert_close(
        got[LEFT_PADDED.bool()], model(ids, attention_mask=LEFT_PADDED)[LEFT_PADDED.bool()]
    )
