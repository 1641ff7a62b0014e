"""``DPOConfig`` validation, ``finetune_dpo`` end to end on a tiny model, and ``scratch-gpt finetune-dpo``."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from instruct_helpers import RECORDS, save_tiny_checkpoint, write_records

from scratch_gpt.cli import main
from scratch_gpt.finetune.dpo_pipeline import DPOConfig, finetune_dpo

RECORDS_40 = RECORDS + [{**r, "instruction": r["instruction"].replace("Repeat", "Say")} for r in RECORDS]


def _config(tmp_path, **overrides):
    values = dict(
        model_dir=tmp_path / "model",
        data_path=tmp_path / "data.json",
        output_dir=tmp_path / "out",
        batch_size=4,
        learning_rate=3e-3,
        eval_freq=2,
        eval_iter=1,
        num_samples=2,
        max_new_tokens=5,
        show_progress=False,
    )
    values.update(overrides)
    return DPOConfig(**values)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("beta", 0.0, "beta must be a positive number"),
        ("beta", float("nan"), "finite number"),
        ("learning_rate", float("inf"), "finite number"),
        ("batch_size", 0, "positive integer"),
        ("max_steps", 1.5, "positive integer"),
        ("log_prob", "max", "log_prob must be one of"),
        ("pair_strategy", "judge", "pair_strategy must be one of"),
        ("grad_clip", -1.0, "grad_clip"),
    ],
)
def test_config_rejects_bad_values(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, **{field: value})


def test_config_rejects_output_equal_to_model(tmp_path):
    with pytest.raises(ValueError, match="input model folder"):
        _config(tmp_path, output_dir=tmp_path / "model")


@pytest.mark.slow
def test_finetune_dpo_end_to_end(tmp_path):
    from transformers import AutoModelForCausalLM

    from scratch_gpt.finetune.chat import load_model_and_tokenizer

    save_tiny_checkpoint(tmp_path / "model", dropout=0.1)  # switched off for DPO, kept in the saved config
    write_records(tmp_path / "data.json", RECORDS_40)
    config = _config(tmp_path, max_steps=6, log_prob="sum")
    lines = []
    results = finetune_dpo(config, log_fn=lines.append)

    assert results["pairs"] == {"train": 34, "validation": 2, "test": 4}
    assert results["steps"] == 6
    before, after = results["before"], results["after"]
    assert before["val_loss"] == pytest.approx(math.log(2), abs=1e-6)  # reference == policy before training
    assert before["val_reward_margin"] == pytest.approx(0.0, abs=1e-6)
    history = json.loads((tmp_path / "out" / "dpo_history.json").read_text())
    assert history[-1]["train_reward_margin"] > 0 and history[-1]["train_loss"] < math.log(2)  # it learns
    assert after["test_loss"] != pytest.approx(
        math.log(2), abs=1e-4
    )  # and the policy moved away from the reference
    assert results["change"]["test_chosen_response_loss"] == pytest.approx(
        after["test_chosen_response_loss"] - before["test_chosen_response_loss"]
    )
    assert results["config"]["beta"] == 0.1 and results["config"]["output_dir"] == str(tmp_path / "out")
    assert len(results["samples"]) == 2 and any("after 6 steps" in line for line in lines)

    out = tmp_path / "out"
    assert json.loads((out / "results.json").read_text())["steps"] == 6
    assert [r["step"] for r in json.loads((out / "dpo_history.json").read_text())] == [2, 4, 6]
    model = AutoModelForCausalLM.from_pretrained(str(out))
    original = AutoModelForCausalLM.from_pretrained(str(tmp_path / "model"))
    assert not torch.equal(model.lm_head.weight, original.lm_head.weight)  # the policy was trained and saved
    assert model.config.dropout == 0.1
    _, tokenizer = load_model_and_tokenizer(out)
    assert tokenizer.chat_template  # `scratch-gpt chat` finds the Alpaca template

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already holds files no scratch-gpt run of this kind wrote"):
        finetune_dpo(dataclasses.replace(config, output_dir=busy), log_fn=None)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_cli_finetune_dpo_and_chat(tmp_path, capsys, monkeypatch):
    save_tiny_checkpoint(tmp_path / "model")
    write_records(tmp_path / "data.json", RECORDS_40)
    code = main(
        [
            "finetune-dpo", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "data.json"),
            "--output", str(tmp_path / "out"), "--steps", "2", "--batch-size", "4", "--beta", "0.2",
            "--eval-freq", "1", "--eval-iter", "1", "--num-samples", "1", "--max-new-tokens", "3", "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "reward accuracy" in out and str(tmp_path / "out") in out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["config"]["beta"] == 0.2 and results["steps"] == 2

    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("Name a color.\n"))
    assert main(["chat", "--model", str(tmp_path / "out"), "--max-new-tokens", "3"]) == 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    write_records(tmp_path / "data.json", RECORDS_40)
    args = ["--data", str(tmp_path / "data.json"), "--output", str(tmp_path / "out"), "--no-progress"]
    code = main(["finetune-dpo", "--model", str(tmp_path / "missing"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err  # a failed load
    assert not (tmp_path / "out").exists()  # nothing written on failure
    with pytest.raises(SystemExit) as exit_info:  # the CLI refuses NaN/inf in every float option
        main(["finetune-dpo", "--model", str(tmp_path / "missing"), *args, "--beta", "nan"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--beta: must be a finite number" in err
