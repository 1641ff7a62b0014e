"""Tests for scratch_gpt.cli.train: ``scratch-gpt pretrain`` and ``scratch-gpt demo`` through ``cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import data_file

from scratch_gpt.cli import main

TINY = ["--vocab-size", "300", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--context-length", "16"]
QUIET = ["--batch-size", "4", "--eval-interval", "2", "--eval-batches", "2", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_pretrain_command(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["pretrain", str(data_file("the-verdict.txt")), "--output", str(out), "--max-steps", "2",
               "--save-interval", "2", "--lr", "1e-3", "--warmup-steps", "1", *TINY, *QUIET])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "trained 2 steps" in printed and f"model + tokenizer: {out}" in printed
    assert f"loss plot: {out / 'loss_plot.png'}" in printed
    state = json.loads((out / "checkpoints" / "checkpoint-00000002" / "trainer_state.json").read_text())
    assert state["config"]["learning_rate"] == 1e-3 and state["config"]["warmup_steps"] == 1
    assert state["config"]["grad_clip"] == 1.0 and state["config"]["num_epochs"] is None

    # --resume continues; without it the existing run is protected
    assert main(["pretrain", str(data_file("the-verdict.txt")), "-o", str(out), "--max-steps", "4", "--resume",
                 "--lr", "1e-3", "--warmup-steps", "1", *TINY, *QUIET]) == 0  # fmt: skip
    assert "trained 4 steps" in capsys.readouterr().out
    assert (
        main(
            ["pretrain", str(data_file("the-verdict.txt")), "-o", str(out), "--max-steps", "4", *TINY, *QUIET]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "scratch-gpt pretrain: error:" in err and "--resume" in err and "Traceback" not in err


def test_pretrain_defaults_to_one_epoch_and_zero_clip_means_off(tmp_path, capsys, monkeypatch):
    import dataclasses

    import scratch_gpt.training.from_corpus as from_corpus

    seen = {}

    def fake(config, corpus):
        seen.update(dataclasses.asdict(config), corpus=corpus.corpus)
        raise ValueError("stop here")

    monkeypatch.setattr(from_corpus, "pretrain_from_corpus", fake)
    assert main(["pretrain", "a.txt", "b.jsonl", "-o", "out", "--grad-clip", "0"]) == 1
    assert seen["corpus"] == ["a.txt", "b.jsonl"] and seen["num_epochs"] == 1 and seen["max_steps"] is None
    assert seen["grad_clip"] is None and seen["mixed_precision"] == "auto" and seen["output_dir"] == "out"
    assert "stop here" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.txt"], "does not exist"),
        (["--decode-errors", "strict", "BAD"], "byte offset 3"),
        (["--tokenizer", "NOWHERE", "GOOD"], "does not exist"),
    ],
)
def test_pretrain_errors_are_one_line(tmp_path, capsys, args, message):
    (tmp_path / "bad.txt").write_bytes(b"abc\xffdef")
    args = [str(tmp_path / "bad.txt") if a == "BAD" else a for a in args]
    args = [str(data_file("the-verdict.txt")) if a == "GOOD" else a for a in args]
    args = [str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in args]
    args = [str(tmp_path / a) if a == "missing.txt" else a for a in args]
    assert main(["pretrain", *args, "-o", str(tmp_path / "out"), "--max-steps", "1", *TINY, *QUIET]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_pretrain_argument_conflicts_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "x.txt", "-o", "out", "--max-steps", "2", "--epochs", "1"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_demo_command_passes_options(monkeypatch, tmp_path, capsys):
    import scratch_gpt.training.demo as demo

    seen = {}

    def fake_run_demo(output_dir, **kwargs):
        seen.update(kwargs, output_dir=output_dir)
        return demo.DemoResult(
            output_dir=Path(output_dir), corpus_file=Path("c.jsonl"), corpus_documents=3, corpus_chars=300,
            steps=7, tokens_seen=700, val_loss=2.5, plot_path=Path(output_dir) / "loss_plot.png",
            generations=[("Return the", "Return the value")], seconds=1.0,
        )  # fmt: skip

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--output", "d", "--max-steps", "7", "--seed", "5"]) == 0
    assert seen == {
        "output_dir": "d",
        "size": "quick",
        "max_steps": 7,
        "resume": False,
        "overwrite": False,
        "seed": 5,
    }
    printed = capsys.readouterr().out
    assert "Trained 7 steps" in printed and "'Return the' -> 'Return the value'" in printed
    assert "generate --model d --temperature 0.8 --top-k 20" in printed  # the command to continue
    assert main(["demo"]) == 0 and seen["output_dir"] == "scratch_gpt_demo" and seen["size"] is None
    assert main(["demo", "--tiny", "--overwrite"]) == 0 and seen["size"] == "tiny" and seen["overwrite"]
    with pytest.raises(SystemExit):
        main(["demo", "--resume", "--overwrite"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_demo_twice(tmp_path, capsys):
    """Running the Quickstart's demo a second time reports the model instead of failing."""
    out = str(tmp_path / "demo")
    assert main(["demo", "--tiny", "--output", out]) == 0
    first = capsys.readouterr().out
    assert "Continue a prompt of your own" in first
    assert main(["demo", "--tiny", "--output", out]) == 0
    second = capsys.readouterr().out
    assert "already holds a trained demo model (12 steps" in second
    assert "--overwrite" in second and "--resume" in second and "generate --model" in second
    assert main(["demo", "--tiny", "--output", out, "--overwrite"]) == 0
    assert "Trained 12 steps in" in capsys.readouterr().out


def test_demo_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "(default: scratch_gpt_demo)" in capsys.readouterr().out
