"""Tests for scratch_gpt.training.run_folder: ownership markers, --overwrite, the exclusive lock and stale locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scratch_gpt.training.run_folder import (
    LOCK,
    MARKER,
    RunFolderBusyError,
    RunFolderError,
    claim_run_folder,
    read_marker,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_new_folder_is_marked_and_unlocked_afterwards(tmp_path):
    out = tmp_path / "run"
    with claim_run_folder(out, "pretrain", command="pretrain", settings={"lr": 1e-3, "path": Path("x")}):
        assert (out / LOCK).is_file()
        lock = json.loads((out / LOCK).read_text())
        assert lock["pid"] == os.getpid() and lock["command"] == "pretrain"
        (out / "model.safetensors").write_bytes(b"weights")
    marker = read_marker(out)
    assert marker["kind"] == "pretrain" and marker["settings"] == {"lr": 1e-3, "path": "x"}
    assert not (out / LOCK).exists()
    with claim_run_folder(out, "pretrain"):  # the same kind of run may come back (resume, rerun)
        pass
    assert (out / "model.safetensors").read_bytes() == b"weights"


@pytest.mark.parametrize("marker_kind", [None, "classifier"])
def test_a_folder_with_other_content_is_refused_and_left_alone(tmp_path, marker_kind):
    out = tmp_path / "model"
    if marker_kind:
        with claim_run_folder(out, marker_kind, command="finetune-classifier"):
            (out / "config.json").write_text("{}")
    else:
        out.mkdir()
        (out / "config.json").write_text("{}")
    before = snapshot(tmp_path)
    refused = pytest.raises(RunFolderError, match=r"already holds .*config\.json.*--overwrite")
    with refused as err, claim_run_folder(out, "pretrain", command="pretrain"):
        pytest.fail("the body must not run")
    if marker_kind:
        assert "'classifier' run's output (finetune-classifier)" in str(err.value)
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_only_after_success_and_restores_on_failure(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), claim_run_folder(out, "pretrain", overwrite=True):
        assert not (out / "old.txt").exists()  # set aside, not deleted
        assert [p.name for p in tmp_path.iterdir() if ".replaced-" in p.name]
        (out / "new.txt").write_text("partial")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the old content is back, nothing else
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    with claim_run_folder(out, "pretrain", overwrite=True):
        (out / "new.txt").write_text("complete")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]


def test_a_failed_run_in_a_new_folder_leaves_no_folder(tmp_path):
    with pytest.raises(ValueError), claim_run_folder(tmp_path / "new", "pretrain"):
        raise ValueError("bad setting")
    assert not (tmp_path / "new").exists()


def test_claims_nest_and_a_file_is_not_a_folder(tmp_path):
    out = tmp_path / "run"
    with claim_run_folder(out, "pretrain", command="demo"):
        with claim_run_folder(out, "pretrain", command="pretrain"):  # the demo calls pretrain: no self-lock
            (out / "x").write_text("x")
        assert (out / LOCK).is_file()
    assert read_marker(out)["command"] == "demo"
    (tmp_path / "file").write_text("x")
    with (
        pytest.raises(NotADirectoryError, match="is not a folder"),
        claim_run_folder(tmp_path / "file", "pretrain"),
    ):
        pass


HOLDER = textwrap.dedent(
    """
    import sys, time
    from scratch_gpt.training.run_folder import claim_run_folder
    with claim_run_folder(sys.argv[1], "pretrain", command="pretrain"):
        open(sys.argv[2], "w").close()
        time.sleep(60)
    """
)


def _start_holder(tmp_path: Path, out: Path) -> subprocess.Popen:
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(ready)], env=env)
    deadline = time.time() + 60
    while not ready.exists():
        assert child.poll() is None and time.time() < deadline, "the lock-holding child did not start"
        time.sleep(0.05)
    return child


def test_a_second_run_fails_at_once_naming_the_first_and_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    child = _start_holder(tmp_path, out)
    try:
        started = time.perf_counter()
        busy = pytest.raises(
            RunFolderBusyError, match=rf"in use by another run: pid {child.pid} .*pretrain, started"
        )
        with busy, claim_run_folder(out, "pretrain"):
            pytest.fail("two runs in one folder")
        assert time.perf_counter() - started < 5  # at once, no waiting
    finally:
        os.kill(child.pid, signal.SIGKILL)  # a killed run: its lock file stays behind
        child.wait()
    assert json.loads((out / LOCK).read_text())["pid"] == child.pid
    stale = pytest.warns(UserWarning, match=rf"taking over the stale lock of pid {child.pid}")
    with stale, claim_run_folder(out, "pretrain"):
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    assert not (out / LOCK).exists()
