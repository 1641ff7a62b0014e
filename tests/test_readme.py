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


def _quickstart() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]


def test_quickstart_tells_a_newcomer_what_to_expect():
    """The frictions of a newcomer's first hour stay fixed: how long the tests take, how torch gets installed on
    CPU-only and CUDA machines, where the data comes from, what a working demo prints, and a generate command
    that samples the way the demo suggests (greedy decoding made "the a a a")."""
    from scratch_gpt.training.demo import continue_command

    quickstart = _quickstart()
    assert "minutes on 2 CPU cores" in quickstart  # the tests' duration
    assert "--index-url https://download.pytorch.org/whl/cpu" in quickstart and "CUDA" in quickstart
    assert ".venv/bin/scratch-gpt data --from ../shared/data" in quickstart
    assert continue_command("scratch_gpt_demo", ".venv/bin/scratch-gpt") in quickstart
    assert "PLACEHOLDER" not in quickstart and "Trained 900 steps" in quickstart


def test_demo_folder_is_ignored_by_git():
    ignored = (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert "scratch_gpt_demo/" in ignored


def test_docs_and_examples_run_the_venv_programs():
    """One way to run commands everywhere: the README's `.venv/bin/...` (bare `scratch-gpt` / `python` fail unless
    the venv is activated)."""
    import re

    bare = re.compile(r"^\s*\$ (scratch-gpt|python|pip|accelerate) ", re.M)
    pages = [p for p in (REPO_ROOT / "docs").glob("**/*.md") if p.name != "cli.md"]
    offenders = [str(p.relative_to(REPO_ROOT)) for p in pages if bare.search(p.read_text(encoding="utf-8"))]
    scripts = sorted((REPO_ROOT / "examples").glob("*.py"))
    offenders += [
        str(p.relative_to(REPO_ROOT))
        for p in scripts
        if "    python examples/" in p.read_text(encoding="utf-8")
    ]
    assert not offenders, f"use .venv/bin/... in: {offenders}"
