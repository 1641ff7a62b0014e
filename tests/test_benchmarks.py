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


def _run(script: str, *args: str, timeout: int = 300) -> str:
    env = {**os.environ, "SCRATCH_GPT_DATA": str(DATA_DIR)}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
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


def test_bench_distributed_quick_prints_the_ddp_vs_fsdp_ratio():
    out = _run("bench_distributed.py", "--quick")
    assert re.search(r"DDP  median step +\d+\.\d ms", out), out
    assert re.search(r"FSDP median step +\d+\.\d ms", out), out
    assert re.search(r"step-time ratio FSDP/DDP = \d+\.\d\d", out), out


def test_book_ch05_quick_matches_the_book_code_on_a_tiny_model(tmp_path):
    data_file("the-verdict.txt")
    out = _run("book_ch05.py", "--quick", "--output-dir", str(tmp_path / "run"), timeout=900)
    diffs = re.search(
        r"first 12 steps: max \|ours - book\| = (\S+); 3 evaluations: max \|ours - book\| = (\S+)", out
    )
    assert diffs, out
    assert float(diffs.group(1)) < 1e-4 and float(diffs.group(2)) < 1e-4, out


def test_book_appendix_d_quick_gives_the_book_learning_rates(tmp_path):
    data_file("the-verdict.txt")
    out = _run("book_appendix_d.py", "--quick", "--output-dir", str(tmp_path / "run"), timeout=900)
    assert out.count("book mode equals the book's loop bit for bit at 135 of 135 steps") == 2, out
    found = re.search(
        r"12 steps: learning rates equal the book's at 12 of 12 steps; max \|ours - book\| = (\S+)", out
    )
    assert found and float(found.group(1)) < 1e-4, out


def test_book_ch06_and_ch07_quick_run_the_pipelines_in_book_mode(tmp_path):
    data_file("SMSSpamCollection.tsv")
    data_file("instruction-data.json")
    out = _run("book_ch06.py", "--quick", "--work-dir", str(tmp_path), timeout=900)
    assert re.search(r"final accuracy: train \d+\.\d\d%, validation \d+\.\d\d%, test \d+\.\d\d%", out), out
    assert len(re.findall(r"^Step 0000(00|05|10|15): Train loss", out, re.M)) == 4, (
        out
    )  # after steps 1, 6, 11, 16
    out = _run("book_ch07.py", "--quick", "--work-dir", str(tmp_path), timeout=900)
    assert len(re.findall(r"^ +\d \| \d+\.\d{6}", out, re.M)) == 6, out
    assert len(re.findall(r"^Step 0000(00|05): Train loss", out, re.M)) == 2, out


def test_bench_static_compile_quick_checks_tokens_and_prints_ratios():
    # aot_eager: the same fullgraph capture without inductor's C++ build, so the smoke run stays short
    out = _run("bench_static_compile.py", "--quick", "--backend", "aot_eager")
    assert "same tokens from all five checked (16 new tokens, greedy)" in out
    assert re.search(r"median speed ratio ours/hf \(static\+compile\) = \d+\.\d+", out), out
    assert re.search(r"median speed ratio ours plain/hf \(static\+compile\) = \d+\.\d+", out), out
    assert re.search(r"median speed ratio ours/hf fast-head \(static\+compile\) = \d+\.\d+", out), out
    assert re.search(r"median speed ratio ours static\+compile / ours dynamic = \d+\.\d+", out), out
    assert "use_fast_kernels measured here: oneDNN product" in out
