"""Shared test fixtures.

Reference data (OpenAI's GPT-2 BPE files, the-verdict.txt, ...) is never copied into the project. The tests
find it in one place, ``DATA_DIR``: ``$SCRATCH_GPT_DATA`` if set, else ``../shared/data`` next to the repository
if that folder exists (this project's development machines), else the data folder that ``scratch-gpt data``
fills (``scratch_gpt.data.downloads.data_dir()``). A test that needs a file that is not there skips, naming
the file and the command that gets it — per file, so a partial folder skips only what it lacks.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from scratch_gpt.data import downloads
from scratch_gpt.data.downloads import DATA_FILES, ENV_VAR

REPO_ROOT = Path(__file__).resolve().parents[1]
_DEV_DATA = REPO_ROOT.parent / "shared" / "data"
DATA_DIR = (
    Path(os.environ[ENV_VAR])
    if os.environ.get(ENV_VAR)
    else _DEV_DATA
    if _DEV_DATA.is_dir()
    else downloads.data_dir()
)


@functools.cache
def _status(folder: Path, name: str) -> str:
    if name not in DATA_FILES:  # not one of the pinned files: present is enough
        return "ok" if (folder / name).is_file() else "missing"
    return downloads.file_status(name, folder)


def missing_data_reason(names: list[str] | tuple[str, ...]) -> str | None:
    """Why a test that needs the data files ``names`` cannot run (``None``: they are all there, with the
    pinned sha256)."""
    bad = {name: _status(DATA_DIR, name) for name in names}
    bad = {name: status for name, status in bad.items() if status != "ok"}
    if not bad:
        return None
    what = ", ".join(name if status == "missing" else f"{name} ({status})" for name, status in bad.items())
    return (
        f"reference data {what} not found in {DATA_DIR}; get it with `scratch-gpt data` "
        f"(downloads) or `scratch-gpt data --from DIR` (e.g. --from ../shared/data), or set {ENV_VAR}"
    )


def data_file(name: str) -> Path:
    """Path of a reference data file, or ``pytest.skip`` naming the file and the command that gets it."""
    reason = missing_data_reason([name])
    if reason:
        pytest.skip(reason)
    return DATA_DIR / name


def data_files_in(text: str) -> list[str]:
    """The reference data files that ``text`` (a docs code block, a command) names."""
    return [name for name in DATA_FILES if name in text]


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: tiny models gain nothing from threads, and on a busy 2-core machine
    they lose a lot. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def onednn_calls(monkeypatch):
    """Counts the products that reach the oneDNN kernel (``scratch_gpt.kernels.linear``), by input shape.

    The size threshold is lifted, so tiny test layers use it too, and ``use_fast_kernels`` is told oneDNN is the
    faster kernel (its timing is for real model sizes)."""
    import scratch_gpt.kernels
    from scratch_gpt.kernels import linear as linear_module

    monkeypatch.setattr(linear_module, "MIN_ONEDNN_WEIGHTS", 0)
    monkeypatch.setattr(linear_module, "_f_linear_faster", set())
    monkeypatch.setattr(scratch_gpt.kernels, "onednn_is_faster", lambda out_features, in_features: True)
    calls = []
    real = linear_module._onednn_forward

    def counting(x, weight, bias):
        calls.append(tuple(x.shape))
        return real(x, weight, bias)

    monkeypatch.setattr(linear_module, "_onednn_forward", counting)
    return calls


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The reference data folder (skips the test if it is missing)."""
    if not DATA_DIR.is_dir():
        pytest.skip(missing_data_reason(list(DATA_FILES)))
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
