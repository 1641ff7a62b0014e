"""README.md stays true: its Quickstart has the two set-up commands, and its file tree lists every project file."""

import subprocess

import pytest
from conftest import REPO_ROOT

TREE_DIRS = ("scratch_gpt/", "tests/", "examples/", "benchmarks/", "docs/", ".ci/")


def project_files() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot list the project's files")
    return [f for f in out.split() if f.startswith(TREE_DIRS)]


def test_quickstart_has_the_demo_and_test_commands():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "bash .ci/setup && .venv/bin/scratch-gpt demo" in quickstart
    assert "bash .ci/setup && .venv/bin/python -m pytest -q" in quickstart
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash .ci/setup" in ci and ".venv/bin/python -m pytest -q" in ci


def test_file_tree_lists_every_file():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    tree = readme.split("## Project layout", 1)[1].split("\n## ", 1)[0]
    missing = [f for f in project_files() if f.rsplit("/", 1)[-1] not in tree]
    assert not missing, f"add these files to README.md's 'Project layout' tree: {missing}"
