"""Padding-free packing: documents concatenated in one row, position_ids restarting per document
(DataCollatorWithFlattening). Each document sees only itself, and the packed loss and gradients equal those of
the padded batch of the same documents."""

import pytest
import torch
from model_helpers import gpt2_pair, random_ids, tiny_config
from transformers import DataCollatorWithFlattening

from scratch_gpt import ScratchGPTForCausalLM

LENGTHS = (5, 9, 3)


def documents():
    return [random_ids(1, n, seed=i)[0].tolist() for i, n in enumerate(LENGTHS)]


def packed_batch():
    return DataCollatorWithFlattening(return_tensors="pt")([{"input_ids": doc} for doc in documents()])


def padded_batch():
    """Right-padded (the training policy), labels -100 on padding."""
    width = max(LENGTHS)
    ids = torch.zeros(len(LENGTHS), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, doc in enumerate(documents()):
        ids[row, : len(doc)] = torch.tensor(doc)
        mask[row, : len(doc)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def test_collator_output_is_what_we_assume():
    batch = packed_batch()
    assert batch["input_ids"].shape == (1, sum(LENGTHS))
    assert batch["position_ids"][0].tolist() == [p for n in LENGTHS for p in range(n)]
    assert (batch["labels"] == -100).sum() == len(
        LENGTHS
    )  # the first token of each document predicts nothing
    assert "attention_mask" not in batch


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_each_packed_document_gets_its_own_logits_as_with_gpt2(attn_implementation):
    gpt2, ours = gpt2_pair(attn_implementation)
    batch = packed_batch()
    packed = ours(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
    theirs = gpt2(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
    torch.testing.assert_close(packed, theirs, atol=1e-5, rtol=1e-5)
    start = 0
    for doc in documents():
        alone = ours(torch.tensor([doc])).logits[0]
        torch.testing.assert_close(packed[start : start + len(doc)], alone, atol=1e-5, rtol=1e-5)
        start += len(doc)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_packed_loss_and_gradients_equal_the_padded_batch(attn_implementation):
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config()).train()
    model.set_attn_implementation(attn_implementation)

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    packed_loss, packed_grads = loss_and_grads(packed_batch())
    padded_loss, padded_grads = loss_and_grads(padded_batch())
    torch.testing.assert_close(packed_loss, padded_loss, atol=1e-6, rtol=1e-5)
    for a, b in zip(packed_grads, padded_grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    # the oracle can fail: without restarting positions (plain causal over the row) the loss differs
    flat = packed_batch()
    flat.pop("position_ids")
    assert not torch.allclose(model(**flat).loss, padded_loss, atol=1e-3)


def test_trainer_trains_on_packed_batches(tmp_path):
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config())
    data = [{"input_ids": random_ids(1, n, seed=s)[0].tolist()} for s, n in enumerate([6, 9, 4, 7] * 4)]
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=6, learning_rate=1e-2,
        report_to=[], logging_steps=1, use_cpu=True, save_strategy="no",
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithFlattening())
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 6 and losses[-1] < losses[0]
