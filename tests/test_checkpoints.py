"""Tests for scratch_gpt.training.checkpoints: atomic checkpoint folders, verification, fallback, pruning."""

from __future__ import annotations

import json

import pytest

from scratch_gpt.training.checkpoints import (
    CorruptCheckpointError,
    atomic_write_text,
    checkpoint_name,
    ensure_writable_dir,
    find_resumable_checkpoint,
    finish_checkpoint,
    list_checkpoints,
    new_checkpoint_dir,
    prune_checkpoints,
    verify_checkpoint,
)


def make_checkpoint(root, step, payload=b"weights"):
    tmp = new_checkpoint_dir(root, step)
    (tmp / "model.safetensors").write_bytes(payload)
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step}))
    return finish_checkpoint(tmp, step)


def test_finish_makes_a_verified_folder_and_leaves_no_temp(tmp_path):
    path = make_checkpoint(tmp_path, 7)
    assert path.name == checkpoint_name(7) == "checkpoint-00000007"
    manifest = verify_checkpoint(path)
    assert manifest["step"] == 7
    assert set(manifest["files"]) == {"model.safetensors", "trainer_state.json"}
    assert manifest["files"]["model.safetensors"]["size"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-00000007"]


def test_listing_is_by_step_and_ignores_temp_and_other_folders(tmp_path):
    for step in (100, 9, 20):
        make_checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-notanumber").mkdir()
    new_checkpoint_dir(tmp_path, 200)  # an unfinished write
    assert [p.name for p in list_checkpoints(tmp_path)] == [checkpoint_name(s) for s in (9, 20, 100)]
    assert find_resumable_checkpoint(tmp_path).name == checkpoint_name(100)
    assert list_checkpoints(tmp_path / "missing") == []
    assert find_resumable_checkpoint(tmp_path / "missing") is None


def test_stale_temp_folders_are_cleaned_up(tmp_path):
    stale = new_checkpoint_dir(tmp_path, 5)
    (stale / "half-written.bin").write_bytes(b"x")
    make_checkpoint(tmp_path, 6)
    assert not stale.exists()


def test_resaving_a_step_replaces_it(tmp_path):
    make_checkpoint(tmp_path, 3, b"old")
    path = make_checkpoint(tmp_path, 3, b"newer")
    assert (path / "model.safetensors").read_bytes() == b"newer"
    verify_checkpoint(path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-00000003"]


@pytest.mark.parametrize(
    "damage, match",
    [
        (
            lambda p: (p / "model.safetensors").write_bytes(b"weig"),
            "model.safetensors is 4 bytes, expected 7",
        ),
        (lambda p: (p / "model.safetensors").write_bytes(b"WEIGHTS"), "does not match its checksum"),
        (lambda p: (p / "trainer_state.json").unlink(), "trainer_state.json is missing"),
        (lambda p: (p / "manifest.json").unlink(), "no manifest.json"),
        (lambda p: (p / "manifest.json").write_text("{"), "manifest.json is unreadable"),
    ],
)
def test_damage_is_detected_and_named(tmp_path, damage, match):
    path = make_checkpoint(tmp_path, 1)
    damage(path)
    with pytest.raises(CorruptCheckpointError, match=match):
        verify_checkpoint(path)


def test_corrupt_latest_falls_back_to_previous_with_a_warning(tmp_path):
    make_checkpoint(tmp_path, 10)
    latest = make_checkpoint(tmp_path, 20)
    (latest / "model.safetensors").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=r"checkpoint-00000020.*falling back to the previous checkpoint"):
        found = find_resumable_checkpoint(tmp_path)
    assert found.name == checkpoint_name(10)


def test_all_corrupt_is_a_clear_error(tmp_path):
    for step in (1, 2):
        (make_checkpoint(tmp_path, step) / "manifest.json").unlink()
    with (
        pytest.warns(UserWarning),
        pytest.raises(CorruptCheckpointError, match="no usable checkpoint to resume"),
    ):
        find_resumable_checkpoint(tmp_path)


def test_prune_keeps_newest(tmp_path):
    for step in (1, 2, 3, 4):
        make_checkpoint(tmp_path, step)
    deleted = prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in deleted] == [checkpoint_name(1), checkpoint_name(2)]
    assert [p.name for p in list_checkpoints(tmp_path)] == [checkpoint_name(3), checkpoint_name(4)]
    with pytest.raises(ValueError, match="keep must be >= 1"):
        prune_checkpoints(tmp_path, keep=0)


def test_atomic_write_text_and_unwritable_dir(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert target.stat().st_mode & 0o644 == 0o644  # readable like any other file, not mkstemp's 0600
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match="cannot write to the output directory .*file/sub"):
        ensure_writable_dir(tmp_path / "file" / "sub")
