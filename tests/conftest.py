"""Shared test fixtures.

Reference data (OpenAI's GPT-2 BPE files, the-verdict.txt, ...) is never copied into the project: it is found
through ``SCRATCH_GPT_DATA`` (default: ``../shared/data`` next to the repository), and tests that need it skip
with a clear reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCH_GPT_DATA", REPO_ROOT.parent / "shared" / "data"))


def data_file(name: str) -> Path:
    """Path of a reference data file, or ``pytest.skip`` naming the file and how to provide it."""
    path = DATA_DIR / name
    if not path.is_file():
        pytest.skip(f"reference data {name} not found in {DATA_DIR} (set SCRATCH_GPT_DATA to its folder)")
    return path


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: tiny models gain nothing from threads, and on a busy 2-core machine
    they lose a lot. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The reference data folder (skips the test if it is missing)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"reference data folder {DATA_DIR} not found (set SCRATCH_GPT_DATA to its folder)")
    return DATA_DIR


@pytest.fixture(scope="session")
def gpt2_tiktoken():
    """tiktoken's GPT-2 encoding built from the local OpenAI files (never downloaded), as a reference oracle."""
    tiktoken_load = pytest.importorskip("tiktoken.load")
    import tiktoken

    ranks = tiktoken_load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(data_file("vocab.bpe")), encoder_json_file=str(data_file("encoder.json"))
    )
    return tiktoken.Encoding(
        name="gpt2-local",
        pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )
