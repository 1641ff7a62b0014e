"""atomic_io: files and folders appear whole or not at all."""

import os

import pytest

from scratch_gpt.atomic_io import atomic_write_text, write_dir_atomically


def test_atomic_write_text_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    atomic_write_text(target, "new ✓\n")
    assert target.read_text(encoding="utf-8") == "new ✓\n"
    assert sorted(os.listdir(tmp_path)) == ["a.json"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_write_dir_creates_a_new_folder_whole(tmp_path):
    out = write_dir_atomically(tmp_path / "out", lambda d: (d / "x.txt").write_text("1"))
    assert (out / "x.txt").read_text() == "1"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_failed_write_leaves_the_existing_folder_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")

    def write(d):
        (d / "keep.txt").write_text("half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash mid-write"):
        write_dir_atomically(out, write)
    assert (out / "keep.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]  # the temporary folder is gone


def test_existing_folder_gets_each_file_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old")
    (out / "other.txt").write_text("stays")
    write_dir_atomically(out, lambda d: (d / "a.txt").write_text("new"))
    assert (out / "a.txt").read_text() == "new" and (out / "other.txt").read_text() == "stays"


def test_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        write_dir_atomically(tmp_path / "f", lambda d: None)
