"""Tests for scratch_gpt.training.launch: the process group torn down and the process left without Python's
shutdown, by the command line after success only."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch.distributed as dist

from scratch_gpt.cli import main
from scratch_gpt.training import launch
from scratch_gpt.training.launch import end_process_group


def test_outside_a_launch_it_does_nothing():
    assert not dist.is_initialized()
    assert end_process_group() is False
    assert not dist.is_initialized()


def test_it_destroys_the_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        assert end_process_group() is True
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_the_command_line_ends_the_group_after_success_only(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(launch, "end_process_group", lambda: calls.append("end"))
    text = tmp_path / "text.txt"
    text.write_text("hello world, hello tokens " * 20, encoding="utf-8")
    tokenizer_dir = tmp_path / "tok"
    assert main(["train-tokenizer", str(text), "--vocab-size", "300", "--output", str(tokenizer_dir)]) == 0
    assert calls == ["end"]
    missing = [
        "train-tokenizer",
        str(tmp_path / "missing.txt"),
        "--vocab-size",
        "300",
        "--output",
        str(tmp_path / "t2"),
    ]
    assert main(missing) == 1
    assert calls == ["end"]  # a failed command leaves the group alone (its peers may be mid-collective)
    capsys.readouterr()


def test_under_a_launch_the_command_line_leaves_through_exit_process(tmp_path, monkeypatch, capsys):
    exits = []

    def fake_exit(code):
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(launch, "end_process_group", lambda: True)  # as if a process group had been up
    monkeypatch.setattr(launch, "exit_process", fake_exit)
    text = tmp_path / "text.txt"
    text.write_text("hello world, hello tokens " * 20, encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["train-tokenizer", str(text), "--vocab-size", "300", "--output", str(tmp_path / "tok")])
    assert exits == [0]
    assert (tmp_path / "tok" / "tokenizer.json").is_file()  # the work was done and written before leaving
    capsys.readouterr()


def test_exit_process_flushes_and_leaves_with_the_code(tmp_path):
    code = (
        "import atexit, sys\n"
        "from scratch_gpt.training.launch import exit_process\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "print('written before leaving', end='')\n"
        "sys.stderr.write('and on stderr')\n"
        "exit_process(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert proc.stdout == "written before leaving"  # flushed; Python's shutdown (atexit) skipped
    assert proc.stderr.endswith("and on stderr")
