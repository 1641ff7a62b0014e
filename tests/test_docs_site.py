"""The documentation site builds with ``mkdocs build --strict`` and its index links every chapter page.

Strict mode (``strict: true`` plus the ``validation`` block in mkdocs.yml) turns every warning into an error: a
nav entry to a missing page, a page left out of the nav, a broken link between pages or to a heading anchor.
The Python blocks in the pages are executed by ``tests/test_docs.py``, not here.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
CHAPTERS = [
    "ch02-tokenization-and-data",
    "ch03-attention",
    "ch04-gpt-model",
    "ch05-pretraining-and-generation",
    "ch06-classification",
    "ch07-instruction-finetuning",
    "appendix-d-training-loop",
    "appendix-e-lora",
]


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]')")
    site = tmp_path / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            "mkdocs.yml",
            "--site-dir",
            str(site),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (site / "index.html").is_file()
    for name in CHAPTERS:
        assert (site / "chapters" / name / "index.html").is_file(), f"chapter page {name} was not built"
    assert "scratch-gpt push" in (site / "cli" / "index.html").read_text(encoding="utf-8")


def test_every_chapter_page_exists_and_is_linked_from_the_index():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    on_disk = sorted(p.stem for p in (DOCS / "chapters").glob("*.md"))
    assert on_disk == sorted(CHAPTERS)
    for name in CHAPTERS:
        assert f"(chapters/{name}.md)" in index, f"docs/index.md does not link chapters/{name}.md"


def test_every_docs_page_is_in_the_nav():
    """The same check mkdocs does in strict mode, but without mkdocs, so it runs everywhere."""
    config = (REPO_ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav_pages = set(re.findall(r":\s*(\S+\.md)\s*$", config, re.M))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.glob("**/*.md")}
    assert pages - nav_pages == set(), "pages missing from the nav in mkdocs.yml"
    assert nav_pages - pages == set(), "nav entries in mkdocs.yml without a page in docs/"
