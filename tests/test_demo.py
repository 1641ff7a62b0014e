"""Tests for scratch_gpt.training.demo: the one-command demo, shortened (``quick=True``)."""

from __future__ import annotations

import json

import pytest

from scratch_gpt.training.demo import DEMO_PROMPTS, SETTINGS, describe_demo, run_demo, stdlib_docstrings

pytestmark = pytest.mark.usefixtures("one_thread")


def test_stdlib_docstrings_are_deterministic_and_bounded():
    first = list(stdlib_docstrings(max_chars=5000))
    again = list(stdlib_docstrings(max_chars=5000))
    assert first == again and len(first) > 3
    assert all(isinstance(d, str) and len(d) >= 40 for d in first)
    assert 5000 <= sum(map(len, first)) < 5000 + max(map(len, first))


def test_full_settings_are_the_documented_size():
    full = SETTINGS["full"]
    assert (full["n_layer"], full["n_embd"], full["context_length"], full["vocab_size"]) == (
        4,
        192,
        128,
        2048,
    )
    assert full["time_limit_s"] <= 300


def test_quick_demo_trains_saves_reloads_and_generates(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(out, quick=True, show_progress=False)
    assert result.steps == SETTINGS["quick"]["max_steps"] and not result.stopped_early
    assert result.val_loss < 6.0  # below chance level, ln(301) = 5.7... after a few steps it is near it
    assert [p for p, _ in result.generations] == list(DEMO_PROMPTS)
    assert all(text.startswith(prompt) and len(text) > len(prompt) for prompt, text in result.generations)
    lines = result.corpus_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == result.corpus_documents and json.loads(lines[0])["text"]
    assert result.plot_path.read_bytes()[:4] == b"\x89PNG"
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    report = describe_demo(result)
    assert str(result.plot_path) in report and repr(DEMO_PROMPTS[0]) in report

    with pytest.raises(FileExistsError, match="resume it"):
        run_demo(out, quick=True, show_progress=False)
    more = run_demo(
        out, quick=True, resume=True, max_steps=SETTINGS["quick"]["max_steps"] + 6, show_progress=False
    )
    assert more.steps == SETTINGS["quick"]["max_steps"] + 6
    assert more.corpus_documents == result.corpus_documents


def test_unwritable_output(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match="cannot write to the output directory"):
        run_demo(tmp_path / "file" / "demo", quick=True, show_progress=False)
