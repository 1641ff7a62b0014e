"""Every ``python`` code block in README.md and docs/*.md runs, so the docs cannot rot.

A block is skipped only when the line right after its closing fence is ``<!-- docs-test: skip (reason) -->``
(the reason is shown in the test report); a skipped block is still compiled, so at least its syntax cannot rot. Blocks run in a fresh namespace with the working directory in
``tmp_path``; ``SCRATCH_GPT_DATA`` points at the reference data as for the other tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import DATA_DIR, REPO_ROOT

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
    if ("/shared/data" in code or "SCRATCH_GPT_DATA" in code) and not DATA_DIR.is_dir():
        pytest.skip(f"needs reference data in {DATA_DIR}")
    monkeypatch.setenv("SCRATCH_GPT_DATA", str(DATA_DIR))
    monkeypatch.chdir(tmp_path)
    exec(compiled, {"__name__": "__docs__"})
