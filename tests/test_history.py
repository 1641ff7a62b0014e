"""Tests for scratch_gpt.training.history: the book's loss lists, JSON round trip, the model card format, the plot."""

from __future__ import annotations

import json
import math

import pytest

from scratch_gpt.hub.model_card import read_training_history
from scratch_gpt.training.history import HISTORY_FILE, LossHistory


def sample_history(with_val=True):
    history = LossHistory(dataset="the-verdict.txt", hyperparameters={"peak learning rate": 4e-4})
    for step in range(1, 7):
        history.add_step(step, step * 512, step / 3, 10.0 - step, 4e-4)
    for step in (3, 6):
        val = 9.0 - step / 3 if with_val else float("nan")
        history.add_eval(step, step * 512, step / 3, 10.0 - step, val, sample=f"text {step}")
    return history


def test_book_lists_and_last_eval():
    history = sample_history()
    assert history.train_losses == [7.0, 4.0]
    assert history.val_losses == [8.0, 7.0]
    assert history.track_tokens_seen == [1536, 3072]
    record = history.last_eval()
    assert record["steps"] == 6 and record["samples"] == "text 6"
    assert record["val_perplexity"] == pytest.approx(math.exp(7.0))
    with pytest.raises(ValueError, match="no evaluation"):
        LossHistory().last_eval()


def test_json_round_trip_and_model_card_reads_it(tmp_path):
    history = sample_history()
    path = history.save(tmp_path)
    assert path.name == HISTORY_FILE
    data = json.loads(path.read_text())
    assert data["step_log"]["losses"] == [9.0, 8.0, 7.0, 6.0, 5.0, 4.0]
    assert data["train_perplexities"] == pytest.approx([math.exp(7.0), math.exp(4.0)])
    assert LossHistory.load(tmp_path) == history
    card_view = read_training_history(tmp_path)  # model_card.py's reader accepts our file
    assert card_view["steps"] == [3, 6] and card_view["val_losses"] == [8.0, 7.0]
    assert card_view["dataset"] == "the-verdict.txt"


def test_no_validation_data_leaves_val_out(tmp_path):
    data = sample_history(with_val=False).to_dict()
    assert "val_losses" not in data and "val_perplexities" not in data
    sample_history(with_val=False).save(tmp_path)
    assert "val_losses" not in read_training_history(tmp_path)
    assert all(math.isnan(v) for v in LossHistory.load(tmp_path).val_losses)


def test_plot_is_a_png(tmp_path):
    path = sample_history().plot(tmp_path / "loss_plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss_plot.png"]
    assert LossHistory().plot(tmp_path / "empty.png") is None


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LossHistory.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        LossHistory.load(tmp_path / "bad.json")
