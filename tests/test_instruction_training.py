"""Tests for scratch_gpt.finetune.instruction_training: chapter 7's loaders, response loss, training loop, answers, evaluation.

Oracles: token counts from ``InstructionDataset`` (loaders), a uniform model whose loss is exactly log(V)
(response loss and evaluation), per-row ``F.cross_entropy`` (token weighting), ``rouge_l_f1`` (answers) and
step counts from the loader length (the training loop).
Everything runs on the tiny tokenizer, model and records of ``instruct_helpers``.
"""

from __future__ import annotations

import math

import pytest
import torch
from instruct_helpers import RECORDS, tiny_model, tiny_tokenizer
from torch import nn

from scratch_gpt.finetune.instruction_data import InstructionDataset, rouge_l_f1, split_instruction_data
from scratch_gpt.finetune.instruction_training import (
    ROUGE_NOTE,
    evaluate_instruction_model,
    generate_test_responses,
    make_instruction_loaders,
    response_loss,
    train_model_simple,
)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def splits():
    return split_instruction_data(RECORDS)  # 17 train / 1 validation / 2 test


# --- data and loss ---------------------------------------------------------------------------------------


def test_loaders_follow_the_book(tokenizer, splits):
    loaders = make_instruction_loaders(splits, tokenizer, batch_size=4, context_length=160)
    assert len(loaders["train"]) == 17 // 4  # shuffled, incomplete last batch dropped
    assert len(loaders["val"].dataset) == 1 and len(loaders["test"].dataset) == 2
    # answers-only loaders: each record keeps (its tokens - prompt tokens + 1 end-of-text) targets
    data = InstructionDataset(splits.test, tokenizer, include_instruction_length=True)
    expected = sum(len(ids) - prompt_len + 1 for prompt_len, ids in data)
    counted = sum(int((targets != -100).sum()) for _, targets in loaders["test_responses"])
    assert counted == expected
    full = sum(int((targets != -100).sum()) for _, targets in loaders["test"])
    assert full == sum(len(ids) for _, ids in data)  # all next-token targets + the end-of-text


def test_loaders_can_mask_the_instruction_in_training(tokenizer, splits):
    plain = make_instruction_loaders(splits, tokenizer, batch_size=4, context_length=160)
    masked = make_instruction_loaders(
        splits, tokenizer, batch_size=4, context_length=160, mask_instruction=True
    )
    inputs_a, targets_a = next(iter(plain["train"]))
    inputs_b, targets_b = next(iter(masked["train"]))
    assert torch.equal(inputs_a, inputs_b)  # same seed, same batch
    assert (targets_b != -100).sum() < (targets_a != -100).sum()


def test_loaders_need_an_end_of_text_token(splits):
    no_eos = tiny_tokenizer()
    no_eos.eos_token = None
    with pytest.raises(ValueError, match="no eos_token_id"):
        make_instruction_loaders(splits, no_eos, batch_size=4, context_length=160)


def test_loaders_reject_a_batch_larger_than_the_training_split(tokenizer, splits):
    with pytest.raises(ValueError, match="batch_size 18 is larger than the 17 training records"):
        make_instruction_loaders(splits, tokenizer, batch_size=18, context_length=160)


class UniformLM(nn.Module):
    """All-zero logits: every token has probability 1/V, so the loss is exactly log(V)."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, idx):
        return torch.zeros(*idx.shape, self.vocab_size) + 0 * self.dummy


def test_response_loss_known_answer(tokenizer, splits):
    loaders = make_instruction_loaders(splits, tokenizer, batch_size=4, context_length=160)
    loss, tokens = response_loss(UniformLM(len(tokenizer)), loaders["test_responses"])
    assert loss == pytest.approx(math.log(len(tokenizer)), rel=1e-6)
    assert math.exp(loss) == pytest.approx(len(tokenizer), rel=1e-5)  # perplexity = vocabulary size
    assert tokens == sum(int((t != -100).sum()) for _, t in loaders["test_responses"])


def test_response_loss_weights_every_token_once(tokenizer, splits):
    model = tiny_model(tokenizer)
    loaders = make_instruction_loaders(splits, tokenizer, batch_size=4, context_length=160)
    loss, tokens = response_loss(model, loaders["test_responses"])
    total = 0.0
    for inputs, targets in loaders["test_responses"]:  # reference: per-row sums, one row at a time
        for row in range(inputs.shape[0]):
            logits = model(input_ids=inputs[row : row + 1]).logits[0]
            total += nn.functional.cross_entropy(logits, targets[row], reduction="sum").item()
    assert loss == pytest.approx(total / tokens, rel=1e-5)


# --- training and evaluation ----------------------------------------------------------------------------


def test_train_model_simple_counts_steps_evaluations_and_samples(tokenizer, splits):
    model = tiny_model(tokenizer)
    loaders = make_instruction_loaders(splits, tokenizer, batch_size=4, context_length=160)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    logged = []
    run = train_model_simple(
        model, loaders["train"], loaders["val"], optimizer, "cpu", 2, 3, 1, "Repeat the word red.", tokenizer,
        log_fn=logged.append,
    )  # fmt: skip
    batches = len(loaders["train"])  # 17 // 4 = 4 full batches an epoch
    assert run.steps == 2 * batches
    seen = run.history.step_log["tokens_seen"]  # every batch is 4 rows of padded tokens
    assert seen[-1] == run.tokens_seen and all(
        b - a > 0 and (b - a) % 4 == 0 for a, b in zip([0, *seen], seen)
    )
    assert run.history.step_log["steps"] == list(range(1, 2 * batches + 1))
    assert run.history.steps == [3, 6]  # every eval_freq=3 steps
    assert [s["epoch"] for s in run.samples] == [1, 2] and [s["step"] for s in run.samples] == [4, 8]
    assert sum(line.startswith("Ep ") for line in logged) == 2
    assert sum(line.startswith("Sample after epoch") for line in logged) == 2


def test_train_model_simple_stops_at_max_steps(tokenizer, splits):
    model = tiny_model(tokenizer)
    loaders = make_instruction_loaders(splits, tokenizer, batch_size=4, context_length=160)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    run = train_model_simple(
        model, loaders["train"], loaders["val"], optimizer, "cpu", 5, 2, 1, "Repeat the word red.", tokenizer,
        max_steps=3, log_fn=lambda _: None,
    )  # fmt: skip
    assert run.steps == 3 and len(run.samples) == 1 and run.samples[0]["step"] == 3


def test_evaluate_instruction_model_known_answer(tokenizer, splits):
    vocab_size = len(tokenizer)
    loaders = make_instruction_loaders(splits, tokenizer, batch_size=4, context_length=160)
    metrics = evaluate_instruction_model(UniformLM(vocab_size), loaders, train_batches=2)
    for key in ("train_loss", "val_loss", "test_loss", "val_response_loss", "test_response_loss"):
        assert metrics[key] == pytest.approx(math.log(vocab_size), rel=1e-6)
    assert metrics["test_response_perplexity"] == pytest.approx(vocab_size, rel=1e-5)
    assert metrics["val_response_tokens"] == sum(int((t != -100).sum()) for _, t in loaders["val_responses"])
    assert "not a measure of correctness" in ROUGE_NOTE


# --- answering -------------------------------------------------------------------------------------------


def test_generate_test_responses(tokenizer, splits):
    model = tiny_model(tokenizer)
    answered = generate_test_responses(model, tokenizer, splits.test, max_new_tokens=6, log_fn=lambda _: None)
    assert [a["instruction"] for a in answered] == [r["instruction"] for r in splits.test]
    for record in answered:
        assert isinstance(record["model_response"], str) and record["truncated"] is False
        assert record["rouge_l_f1"] == rouge_l_f1(record["model_response"], record["output"])


def test_generate_test_responses_marks_prompts_longer_than_the_context(splits):
    tokenizer = tiny_tokenizer(context_length=30)
    model = tiny_model(tokenizer, context_length=30)
    answered = generate_test_responses(
        model, tokenizer, splits.test[:1], max_new_tokens=6, log_fn=lambda _: None
    )
    assert answered[0]["model_response"] == "" and answered[0]["truncated"] is True


def test_long_records_get_one_accurate_warning_not_transformers_alarm(splits, capfd):
    """finetune-instruct used to print transformers' "sequence length is longer than the specified maximum ...
    indexing errors" warning; the records are truncated to the context, which is what the warning says instead."""
    data = InstructionDataset(splits.train, tiny_tokenizer(), include_instruction_length=True)
    lengths = sorted(len(ids) for _, ids in data)
    context = max(max(length for length, _ in data), lengths[len(lengths) // 2])  # cuts some, keeps responses
    short = tiny_tokenizer(context_length=context)  # a fresh tokenizer: transformers warns once per tokenizer
    with pytest.warns(UserWarning, match="train records are longer than the context length"):
        make_instruction_loaders(splits, short, batch_size=4, context_length=context)
    assert "indexing errors" not in capfd.readouterr().err  # transformers' handler writes to stderr itself


def test_loaders_warn_about_truncated_records_and_refuse_when_no_response_fits(tokenizer, splits):
    data = InstructionDataset(splits.train, tokenizer, include_instruction_length=True)
    prompts = sorted(length for length, _ in data)
    lengths = sorted(len(ids) for _, ids in data)
    # a context that cuts the longest records, but keeps at least one response token of every record
    context = max(prompts[-1], lengths[len(lengths) // 2])
    truncated = sum(len(ids) > context for _, ids in data)
    assert truncated > 0
    with pytest.warns(
        UserWarning, match=rf"{truncated} of {len(data)} train records are longer than the context"
    ):
        make_instruction_loaders(splits, tokenizer, batch_size=4, context_length=context)
    with pytest.raises(ValueError, match="no training record keeps a response token"):
        make_instruction_loaders(splits, tokenizer, batch_size=4, context_length=prompts[0] - 1)
