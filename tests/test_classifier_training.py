"""Tests for scratch_gpt.finetune.classifier_training: chapter 6's pooling, loss, accuracy, freeze policies and training loop.

Oracles: hand computation on the classifier's hidden states (pooling), ``F.cross_entropy``, a stub model with
known predictions (accuracy), and parameter counts computed from the shapes (freeze policies). Everything runs on
a tiny classifier (``test_classifier_pipeline.make_tiny_checkpoint``) trained for a few steps on toy batches.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from test_classifier_pipeline import make_tiny_checkpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from scratch_gpt.finetune.classifier_data import select_last_token
from scratch_gpt.finetune.classifier_pipeline import load_classifier
from scratch_gpt.finetune.classifier_training import (
    apply_freeze_policy,
    calc_accuracy_loader,
    calc_loss_batch,
    calc_loss_loader,
    classifier_logits,
    train_classifier_simple,
    unwrap_trained_model,
)
from scratch_gpt.finetune.lora import LinearWithLoRA


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("classifier_training")
    make_tiny_checkpoint(root / "lm")
    return root


@pytest.fixture()
def classifier(workdir):
    torch.manual_seed(0)
    return load_classifier(workdir / "lm", pad_token_id=1)


def _ids(rows: list[list[int]], length: int, pad: int = 1) -> torch.Tensor:
    return torch.tensor([row + [pad] * (length - len(row)) for row in rows])


# --- pooling, loss, accuracy ------------------------------------------------------------------------------------


def test_pooling_matches_hand_computed_positions(classifier):
    classifier.eval()
    ids = _ids([[5, 6, 7], [8, 9, 10, 11, 12]], 6)
    with torch.no_grad():
        per_token = classifier.score(
            classifier.transformer(ids, use_cache=False).last_hidden_state
        )  # (B, T, 2)
        last_real = classifier_logits(classifier, ids, pad_token_id=1, pooling="last_real")
        last = classifier_logits(classifier, ids, pad_token_id=1, pooling="last")
        alone = classifier_logits(classifier, ids[:1, :3], pad_token_id=1)
    torch.testing.assert_close(last_real, per_token[[0, 1], [2, 4]])
    torch.testing.assert_close(last_real, select_last_token(per_token, input_ids=ids, pad_token_id=1))
    torch.testing.assert_close(last, per_token[:, -1])
    torch.testing.assert_close(last_real[:1], alone)  # right padding does not change the real tokens
    assert not torch.allclose(last, last_real)
    with pytest.raises(ValueError, match="pooling must be one of"):
        classifier_logits(classifier, ids, pad_token_id=1, pooling="mean")


def test_calc_loss_batch_and_loader_are_cross_entropy(classifier):
    classifier.eval()
    ids, labels = _ids([[5, 6], [7, 8, 9], [10]], 4), torch.tensor([0, 1, 1])
    with torch.no_grad():
        expected = F.cross_entropy(classifier_logits(classifier, ids, pad_token_id=1), labels)
        loss = calc_loss_batch(ids, labels, classifier, "cpu", pad_token_id=1)
    torch.testing.assert_close(loss, expected)
    loader = DataLoader(TensorDataset(ids, labels), batch_size=1)
    with torch.no_grad():
        per_batch = [calc_loss_batch(x, y, classifier, "cpu", pad_token_id=1).item() for x, y in loader]
    assert calc_loss_loader(loader, classifier, "cpu", pad_token_id=1) == pytest.approx(sum(per_batch) / 3)
    assert calc_loss_loader(loader, classifier, "cpu", 2, pad_token_id=1) == pytest.approx(
        sum(per_batch[:2]) / 2
    )
    empty = DataLoader(TensorDataset(ids[:0], labels[:0]))
    assert math.isnan(calc_loss_loader(empty, classifier, "cpu", pad_token_id=1))


class _ParityStub(nn.Module):
    """Predicts class ``first token % 2`` (a known answer for accuracy)."""

    def forward(self, input_ids, attention_mask=None, use_cache=None):
        first = input_ids[:, 0] % 2
        return SimpleNamespace(logits=F.one_hot(first, 2).float())


def test_calc_accuracy_loader_known_answer():
    ids = torch.tensor([[2, 1], [3, 1], [4, 1], [5, 1], [6, 1], [7, 1]])
    labels = torch.tensor([0, 1, 1, 1, 0, 0])  # right, right, wrong, right, right, wrong
    loader = DataLoader(TensorDataset(ids, labels), batch_size=2)
    assert calc_accuracy_loader(loader, _ParityStub(), "cpu", pad_token_id=1) == pytest.approx(4 / 6)
    assert calc_accuracy_loader(loader, _ParityStub(), "cpu", 1, pad_token_id=1) == 1.0


# --- freeze policies --------------------------------------------------------------------------------------------


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_freeze_policies_train_the_books_parts(classifier):
    total = sum(p.numel() for p in classifier.parameters())
    assert _trainable(apply_freeze_policy(classifier, "all")) == total
    model = apply_freeze_policy(classifier, "last_block")
    gpt = model.transformer.gpt
    expected = sum(
        p.numel() for m in (gpt.trf_blocks[-1], gpt.final_norm, model.score) for p in m.parameters()
    )
    assert _trainable(model) == expected
    assert not gpt.trf_blocks[0].att.W_query.weight.requires_grad and not gpt.tok_emb.weight.requires_grad


def test_freeze_lora_hand_written_counts_every_linear(classifier):
    linears = [(m.in_features, m.out_features) for m in classifier.modules() if isinstance(m, nn.Linear)]
    model = apply_freeze_policy(classifier, "lora", lora_rank=4, lora_alpha=8)
    assert _trainable(model) == sum(4 * (i + o) for i, o in linears)  # A (in, r) + B (r, out) per Linear
    assert isinstance(model.score, LinearWithLoRA)  # the book adapts the new head too
    with torch.no_grad():
        model.score.lora.B.normal_()
    ids = _ids([[5, 6, 7], [8, 9]], 4)
    model.eval()
    before = classifier_logits(model, ids, pad_token_id=1)
    merged = unwrap_trained_model(model)
    assert not any(isinstance(m, LinearWithLoRA) for m in merged.modules())
    torch.testing.assert_close(classifier_logits(merged, ids, pad_token_id=1), before)


def test_freeze_peft_lora_targets_blocks_and_trains_the_head(classifier):
    pytest.importorskip("peft")
    cfg = classifier.config
    model = apply_freeze_policy(classifier, "peft-lora", lora_rank=4, lora_alpha=2)
    d, inner = cfg.n_embd, 4 * cfg.n_embd
    per_block = 4 * 4 * (d + d) + 4 * (d + inner) + 4 * (inner + d)  # q, k, v, out; fc_in; fc_out
    assert _trainable(model) == cfg.n_layer * per_block + d * cfg.num_labels
    lora_a = model.base_model.model.transformer.gpt.trf_blocks[0].att.W_query.lora_A["default"]
    assert (
        model.base_model.model.transformer.gpt.trf_blocks[0].att.W_query.scaling["default"] == 2
    )  # book alpha*r/r
    assert lora_a.weight.shape == (4, d)
    plain = unwrap_trained_model(model)
    assert type(plain).__name__ == "ScratchGPTForSequenceClassification"


def test_freeze_bad_input(classifier):
    with pytest.raises(ValueError, match="freeze must be one of"):
        apply_freeze_policy(classifier, "none")
    with pytest.raises(ValueError, match="expected a ScratchGPTForSequenceClassification"):
        apply_freeze_policy(nn.Linear(2, 2), "all")


# --- the training loop ------------------------------------------------------------------------------------------


def _toy_loaders():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 40, (32, 6), generator=generator)
    labels = (ids[:, -1] % 2).long()  # learnable from the last real token
    data = TensorDataset(ids, labels)
    train = DataLoader(data, batch_size=8, shuffle=True, drop_last=True, generator=generator)
    return train, DataLoader(data, batch_size=8)


def test_train_classifier_simple_learns_and_records_history(classifier):
    train, val = _toy_loaders()
    model = apply_freeze_policy(classifier, "all")
    before = calc_loss_loader(val, model, "cpu", pad_token_id=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    lines = []
    history = train_classifier_simple(
        model,
        train,
        val,
        optimizer,
        "cpu",
        num_epochs=5,
        eval_freq=3,
        eval_iter=2,
        pad_token_id=1,
        log=lines.append,
    )
    assert history.global_step == 20 and history.examples_seen == 160
    assert history.steps == [0, 3, 6, 9, 12, 15, 18]  # the book evaluates after the first step, then every 3
    assert history.examples_seen_at_eval[:2] == [8, 32]
    assert len(history.train_accs) == len(history.val_accs) == 5
    assert calc_loss_loader(val, model, "cpu", pad_token_id=1) < before
    assert any(line.startswith("Ep 1 (Step 000000): Train loss") for line in lines)
    assert json.dumps(history.to_dict())


def test_train_classifier_simple_max_steps_and_bad_args(classifier):
    train, val = _toy_loaders()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=1e-3)
    history = train_classifier_simple(
        classifier, train, val, optimizer, "cpu", 3, 1, 1, pad_token_id=1, max_steps=2
    )
    assert history.global_step == 2 and len(history.train_accs) == 1
    for bad in ({"num_epochs": 0}, {"eval_freq": 0}, {"eval_iter": 1.5}):
        args = {"num_epochs": 1, "eval_freq": 1, "eval_iter": 1, **bad}
        with pytest.raises(ValueError, match="must be a positive integer"):
            train_classifier_simple(classifier, train, val, optimizer, "cpu", pad_token_id=1, **args)


def test_train_classifier_simple_shows_a_progress_bar_with_the_time_left(classifier, capsys):
    """finetune-classifier used to print three loss lines and then nothing for minutes."""
    train, val = _toy_loaders()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=1e-3)
    lines = []
    history = train_classifier_simple(
        classifier,
        train,
        val,
        optimizer,
        "cpu",
        2,
        2,
        1,
        pad_token_id=1,
        log=lines.append,
        show_progress=True,
    )
    err = capsys.readouterr().err
    assert "fine-tune" in err and "8/8" in err and "<" in err  # all steps, with tqdm's time-left field
    assert "train accuracy" in err and "validation accuracy" in err  # the accuracy passes have bars too
    assert len(lines) == len(history.steps) + 2  # the log lines still all arrive
    train_classifier_simple(
        classifier, train, val, optimizer, "cpu", 1, 2, 1, pad_token_id=1, show_progress=False
    )
    assert capsys.readouterr().err == ""
