"""Tests for scratch_gpt.training.demo: the one-command demo, at its test size (``size="tiny"``)."""

from __future__ import annotations

import json

import pytest

from scratch_gpt.training.demo import (
    DEMO_PROMPTS,
    SETTINGS,
    continue_command,
    describe_demo,
    describe_existing,
    find_demo,
    run_demo,
    stdlib_docstrings,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_stdlib_docstrings_are_deterministic_and_bounded():
    first = list(stdlib_docstrings(max_chars=5000))
    again = list(stdlib_docstrings(max_chars=5000))
    assert first == again and len(first) > 3
    assert all(isinstance(d, str) and len(d) >= 40 for d in first)
    assert 5000 <= sum(map(len, first)) < 5000 + max(map(len, first))


def test_sizes_are_fixed_work_without_a_time_limit():
    full = SETTINGS["full"]
    assert (full["n_layer"], full["n_embd"], full["context_length"], full["vocab_size"]) == (
        4,
        192,
        128,
        2048,
    )
    assert full["max_steps"] == 900  # the figure docs/pretraining.md measures
    for settings in SETTINGS.values():  # a wall-clock limit made the model depend on the machine's load
        assert "time_limit_s" not in settings and settings["max_steps"] > 0
    work = {name: s["max_steps"] * s["batch_size"] * s["context_length"] * s["n_layer"] * s["n_embd"] ** 2
            for name, s in SETTINGS.items()}  # fmt: skip
    assert work["tiny"] < work["quick"] < work["full"] / 3  # --quick is a fraction of the full demo


def test_tiny_demo_trains_saves_reloads_and_generates(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(out, size="tiny", show_progress=False)
    assert (
        result.steps == SETTINGS["tiny"]["max_steps"] and not result.stopped_early and result.start_step == 0
    )
    assert result.val_loss < 6.0  # below chance level, ln(301) = 5.7... after a few steps it is near it
    assert [p for p, _ in result.generations] == list(DEMO_PROMPTS)
    assert all(text.startswith(prompt) and len(text) > len(prompt) for prompt, text in result.generations)
    lines = result.corpus_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == result.corpus_documents and json.loads(lines[0])["text"]
    assert result.plot_path.read_bytes()[:4] == b"\x89PNG"
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    report = describe_demo(result, ".venv/bin/scratch-gpt")
    assert str(result.plot_path) in report and repr(DEMO_PROMPTS[0]) in report
    assert f"Trained {result.steps} steps in" in report
    # the command to continue samples (greedy decoding made "the a a a"), with the program as the user ran it
    assert continue_command(out, ".venv/bin/scratch-gpt") in report
    assert "--temperature 0.8 --top-k 20" in report and ".venv/bin/scratch-gpt generate" in report

    # a second run does not fail on the first one's checkpoints: it reports the finished model
    existing = find_demo(out)
    assert existing.finished and existing.step == result.steps and existing.size == "tiny"
    assert existing.val_loss == pytest.approx(result.val_loss)
    with pytest.raises(FileExistsError, match="already holds a trained demo model") as err:
        run_demo(out, size="tiny", show_progress=False)
    assert "--overwrite" in str(err.value) and "--resume" in str(err.value)

    # --resume trains further (the size is the folder's); the report counts this session's steps
    more = run_demo(out, resume=True, max_steps=result.steps + 6, show_progress=False)
    assert more.steps == result.steps + 6 and more.start_step == result.steps and more.size == "tiny"
    assert more.corpus_documents == result.corpus_documents
    assert "Trained 6 steps (resumed at step 12; 18 steps in all)" in describe_demo(more)

    # --overwrite starts over
    again = run_demo(out, size="tiny", overwrite=True, show_progress=False)
    assert again.steps == result.steps and again.val_loss == pytest.approx(
        result.val_loss
    )  # same seed, same run


def test_unfinished_demo_is_reported(tmp_path):
    out = tmp_path / "demo"
    (out / "checkpoints" / "checkpoint-6").mkdir(parents=True)
    (out / "demo.json").write_text(json.dumps({"size": "tiny", "max_steps": 12, "finished": False}))
    existing = find_demo(out)
    assert not existing.finished and existing.step == 6 and existing.max_steps == 12
    text = describe_existing(existing)
    assert "unfinished demo" in text and "step 6 of 12" in text and "--tiny" in text and "--resume" in text


def test_a_folder_of_other_files_is_not_written_into(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert find_demo(tmp_path) is None
    with pytest.raises(FileExistsError, match="--overwrite"):  # run_folder's guard: other files are kept
        run_demo(tmp_path, size="tiny", show_progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bad_options():
    with pytest.raises(ValueError, match="unknown demo size"):
        run_demo("unused", size="huge", show_progress=False)
    with pytest.raises(ValueError, match="exclude each other"):
        run_demo("unused", resume=True, overwrite=True, show_progress=False)


def test_unwritable_output(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match="cannot write to the output directory"):
        run_demo(tmp_path / "file" / "demo", size="tiny", show_progress=False)
