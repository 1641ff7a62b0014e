"""Every ``python`` code block in README.md and docs/*.md runs, so the docs cannot rot.

A block is skipped only when the line right after its closing fence is ``<!-- docs-test: skip (reason) -->``
(the reason is shown in the test report); a skipped block is still compiled, so at least its syntax cannot rot. Blocks run in a fresh namespace with the working directory in
``tmp_path``; ``SCRATCH_GPT_DATA`` points at the reference data as for the other tests, and a block that names a data file
skips (with the command that gets it) when that file is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import DATA_DIR, REPO_ROOT, data_files_in, missing_data_reason

FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*\n(<!-- docs-test: skip \((.*?)\) -->)?", re.S | re.M)


def python_blocks() -> list:
    params = []
    for path in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("**/*.md"))]:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text[: match.start()].count("\n") + 1
            rel = path.relative_to(REPO_ROOT)
            params.append(pytest.param(rel, line, match.group(1), match.group(3), id=f"{rel}:{line}"))
    return params


BLOCKS = python_blocks()


def test_docs_have_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize(("path", "line", "code", "skip_reason"), BLOCKS)
def test_code_block_runs(path: Path, line: int, code: str, skip_reason: str | None, tmp_path, monkeypatch):
    compiled = compile(code, f"{path}:{line}", "exec")  # a syntax error fails even a skipped block
    if skip_reason:
        pytest.skip(skip_reason)
    needed = data_files_in(code)  # a partial data folder skips only the blocks whose files it lacks
    if not needed and ("/shared/data" in code or "SCRATCH_GPT_DATA" in code or "data_path(" in code):
        needed = ["the-verdict.txt"]  # reads the folder as a whole; the-verdict stands for it
    reason = missing_data_reason(needed)
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("SCRATCH_GPT_DATA", str(DATA_DIR))
    monkeypatch.chdir(tmp_path)
    exec(compiled, {"__name__": "__docs__"})


def test_a_partial_data_folder_skips_per_file(monkeypatch, tmp_path):
    import conftest

    (tmp_path / "encoder.json").write_text("{}")  # not the pinned bytes
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.setattr(conftest, "DATA_DIR", tmp_path)
    assert conftest.missing_data_reason(["notes.txt"]) is None
    needed = data_files_in('open(data / "the-verdict.txt"); data / "encoder.json"')
    assert needed == ["the-verdict.txt", "encoder.json"]
    reason = conftest.missing_data_reason(needed)
    assert reason.startswith("reference data the-verdict.txt, encoder.json (corrupt) not found")
    assert "`scratch-gpt data" in reason
