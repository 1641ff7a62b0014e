"""Smoke runs of the benchmark scripts' ``--quick`` modes, so that they keep working as the code changes.

These check that each script runs to the end, checks its peers agree (same ids, same logits and greedy tokens)
and prints its ratios. They say nothing about speed: timings belong to the full runs recorded in
docs/benchmarks.md, on an idle machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import DATA_DIR, REPO_ROOT, data_file

pytestmark = pytest.mark.slow


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "SCRATCH_GPT_DATA": str(DATA_DIR)}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_bench_model_quick_checks_the_peers_agree_and_prints_ratios():
    out = _run("bench_model.py", "--quick", "--rounds", "1")
    assert re.search(r"same weights: max \|logit diff\| = \d\.\de-(0[6-9]|[1-9]\d)", out), out
    assert len(re.findall(r"median ratio ours/hf = \d+\.\d+", out)) == 1  # the quick training case
    assert len(re.findall(r"median speed ratio vs hf \d+\.\d+", out)) == 3
    assert "identical greedy tokens from all three checked" in out


def test_bench_tokenizer_quick_checks_ids_and_prints_ratios():
    data_file("tinyshakespeare.txt")
    out = _run("bench_tokenizer.py", "--quick", "--repeats", "1")
    assert "The ids of all three were checked equal before timing" in out
    assert re.search(r"\| tinyshakespeare \| 4,096 \|.*\| \d+\.\d+x \|", out), out
    assert re.search(r"\| tinyshakespeare \| 1\.12 \| 338,025 \|", out), out  # tiktoken's token count


def test_bench_static_compile_quick_checks_tokens_and_prints_ratios():
    # aot_eager: the same fullgraph capture without inductor's C++ build, so the smoke run stays short
    out = _run("bench_static_compile.py", "--quick", "--backend", "aot_eager")
    assert "same tokens from all three checked (16 new tokens, greedy)" in out
    assert re.search(r"median speed ratio ours/hf \(static\+compile\) = \d+\.\d+", out), out
    assert re.search(r"median speed ratio ours static\+compile / ours dynamic = \d+\.\d+", out), out
