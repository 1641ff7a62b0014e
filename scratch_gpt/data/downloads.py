"""The book's data sets and GPT-2's BPE files, fetched once into a cache folder and found in one place.

The book downloads its data as it goes: "The Verdict" for chapters 2 and 5, the SMS Spam Collection for
chapter 6, the instruction data for chapter 7, and OpenAI's ``encoder.json`` + ``vocab.bpe`` for GPT-2's
tokenizer. Here one call (or ``scratch-gpt data``) fetches them all from their public sources into one folder,
checks every byte against a pinned sha256, and everything else finds them through ``data_path(name)``:

* the folder is ``$SCRATCH_GPT_DATA`` if set, else ``scratch_gpt/data`` in the user's cache folder
  (``$XDG_CACHE_HOME`` or ``~/.cache``; ``%LOCALAPPDATA%`` on Windows) — see ``data_dir()``;
* ``fetch_data()`` downloads what is missing (each file from its first source that answers with the right
  bytes), ``fetch_data(source_dir=...)`` copies from a local folder instead (offline machines, CI);
* a file is written to a temporary sibling and renamed into place only after its sha256 matched, so the
  folder never holds a half-written or wrong file under a real name.

Nothing else in the package downloads anything; the library only reads these files when asked to.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DATA_FILES",
    "ENV_VAR",
    "DataFile",
    "FetchReport",
    "data_dir",
    "data_path",
    "default_data_dir",
    "fetch_data",
    "file_status",
    "missing_message",
]

ENV_VAR = "SCRATCH_GPT_DATA"
_BOOK = "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/28c65cdfbc3338e2e040016eea4b7fdf556e4d57"
_SPAM = "https://raw.githubusercontent.com/PARKER-X/SpamClassifier/5fa41eaf3ec0d21d3ffced673800d25b6b8ffc20"
_UCI_ZIP = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
_OPENAI = "https://openaipublic.blob.core.windows.net/gpt-2/models/124M"


@dataclass(frozen=True)
class DataFile:
    """One reference file: its name in the data folder, its size and sha256, and where it comes from.

    ``urls`` are tried in order; ``ARCHIVE.zip#MEMBER`` means the member of a zip archive.
    """

    name: str
    size: int
    sha256: str
    urls: tuple[str, ...]
    what: str


DATA_FILES: dict[str, DataFile] = {
    f.name: f
    for f in (
        DataFile(
            "the-verdict.txt", 20_479, "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
            (f"{_BOOK}/ch02/01_main-chapter-code/the-verdict.txt",),
            "Edith Wharton's short story, the book's pretraining text (chapters 2 and 5)",
        ),
        DataFile(
            "SMSSpamCollection.tsv", 477_907, "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
            (f"{_UCI_ZIP}#SMSSpamCollection", f"{_SPAM}/smsspamcollection/SMSSpamCollection"),
            "the UCI SMS Spam Collection, chapter 6's classification data",
        ),
        DataFile(
            "SMSSpamCollection.readme.txt", 5_793,
            "656da9ff765ddeb69841ef429e3ad65f2207a9f410892a6f04f06542426fb75c",
            (f"{_UCI_ZIP}#readme", f"{_SPAM}/smsspamcollection/readme"),
            "the SMS Spam Collection's description and licence",
        ),
        DataFile(
            "instruction-data.json", 203_524, "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
            (f"{_BOOK}/ch07/01_main-chapter-code/instruction-data.json",),
            "1,100 instruction/response pairs, chapter 7's fine-tuning data",
        ),
        DataFile(
            "encoder.json", 1_042_301, "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
            (f"{_OPENAI}/encoder.json", f"{_BOOK}/ch02/02_bonus_bytepair-encoder/gpt2_model/encoder.json"),
            "OpenAI's GPT-2 vocabulary (token -> id)",
        ),
        DataFile(
            "vocab.bpe", 456_318, "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
            (f"{_OPENAI}/vocab.bpe", f"{_BOOK}/ch02/02_bonus_bytepair-encoder/gpt2_model/vocab.bpe"),
            "OpenAI's GPT-2 BPE merges",
        ),
        DataFile(
            "tinyshakespeare.txt", 1_115_394, "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            ("https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e"
             "/data/tinyshakespeare/input.txt",),
            "40,000 lines of Shakespeare, a larger pretraining text",
        ),
    )
}  # fmt: skip


def default_data_dir() -> Path:
    """``scratch_gpt/data`` in the user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``; on Windows
    ``%LOCALAPPDATA%``)."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        cache = Path(os.environ["LOCALAPPDATA"])
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "scratch_gpt" / "data"


def data_dir() -> Path:
    """The data folder: ``$SCRATCH_GPT_DATA`` if set, else ``default_data_dir()``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else default_data_dir()


def missing_message(names: Iterable[str], folder: str | Path | None = None) -> str:
    """One sentence naming the missing files and the commands that get them."""
    names = list(names)
    folder = Path(folder) if folder is not None else data_dir()
    return (
        f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} not in the data folder {folder}: "
        "`scratch-gpt data` downloads the book's data sets (or `scratch-gpt data --from DIR` copies them from a "
        f"folder that has them); {ENV_VAR} chooses the folder"
    )


def data_path(name: str, folder: str | Path | None = None) -> Path:
    """The path of the reference file ``name`` (e.g. ``"the-verdict.txt"``) in the data folder.

    Raises:
        FileNotFoundError: the file is not there; the message names the command that fetches it.
    """
    if name not in DATA_FILES:
        raise ValueError(f"unknown data file {name!r}; the data files are: {', '.join(DATA_FILES)}")
    folder = Path(folder) if folder is not None else data_dir()
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(missing_message([name], folder))
    return path


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_status(name: str, folder: str | Path | None = None) -> str:
    """``"ok"`` (present, right size and sha256), ``"missing"`` or ``"corrupt"`` (present, wrong bytes)."""
    spec = DATA_FILES[name]
    path = (Path(folder) if folder is not None else data_dir()) / name
    if not path.is_file():
        return "missing"
    if path.stat().st_size != spec.size or _sha256_of_file(path) != spec.sha256:
        return "corrupt"
    return "ok"


@dataclass
class FetchReport:
    """What ``fetch_data`` did, file by file: the source each new file came from, the files already there
    with the right bytes, and the failures (name -> what went wrong at each source)."""

    folder: Path
    fetched: dict[str, str] = field(default_factory=dict)
    present: list[str] = field(default_factory=list)
    failed: dict[str, list[str]] = field(default_factory=dict)


def _write_verified(folder: Path, spec: DataFile, data: bytes) -> None:
    """Check ``data`` against the pinned size and sha256, then write it atomically as ``folder/spec.name``."""
    if len(data) != spec.size:
        raise ValueError(f"got {len(data):,} bytes, expected {spec.size:,}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise ValueError(f"sha256 {digest} does not match the pinned {spec.sha256}")
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{spec.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, folder / spec.name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _download(url: str, timeout: float, max_bytes: int) -> bytes:
    """The body at ``url`` (``ARCHIVE#MEMBER``: that member of the zip archive), at most ``max_bytes``."""
    url, _, member = url.partition("#")
    request = urllib.request.Request(url, headers={"User-Agent": "scratch_gpt-data"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - https URLs of our own list
        data = response.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"the response is larger than {max_bytes:,} bytes")
    if member:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == member]
            if not names:
                raise ValueError(f"the archive has no member {member!r}")
            data = archive.read(names[0])
    return data


def fetch_data(
    names: Iterable[str] | None = None,
    *,
    folder: str | Path | None = None,
    source_dir: str | Path | None = None,
    mirror: str | None = None,
    timeout: float = 60.0,
    log: Callable[[str], None] | None = None,
) -> FetchReport:
    """Put the reference files into the data folder, verified: download them, or copy them from a folder.

    Files already there with the right sha256 are left alone; a file with wrong bytes is replaced.

    Args:
        names: which files (default: all of ``DATA_FILES``).
        folder: the data folder (default: ``data_dir()``); created if needed.
        source_dir: copy the files from this local folder instead of downloading (``--from DIR``).
        mirror: download ``MIRROR/NAME`` instead of the public sources (a local mirror; the tests' server).
        timeout: seconds to wait for each server.
        log: called with one line per file (e.g. ``print``).

    Raises:
        ValueError: an unknown file name.
        NotADirectoryError: ``source_dir`` is not a folder.
        ConnectionError: some files could not be had; the message names each and why, after the others
            were written.
    """
    names = list(DATA_FILES) if names is None else list(names)
    unknown = [n for n in names if n not in DATA_FILES]
    if unknown:
        raise ValueError(
            f"unknown data file(s) {', '.join(unknown)}; the data files are: {', '.join(DATA_FILES)}"
        )
    if source_dir is not None and not Path(source_dir).is_dir():
        raise NotADirectoryError(
            f"--from {source_dir}: no such folder; give the folder that holds the data files"
        )
    folder = Path(folder) if folder is not None else data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    say = log or (lambda line: None)
    report = FetchReport(folder=folder)
    for name in names:
        spec = DATA_FILES[name]
        if file_status(name, folder) == "ok":
            report.present.append(name)
            say(f"ok       {name} (already there)")
            continue
        if source_dir is not None:
            sources = [str(Path(source_dir) / name)]
        elif mirror is not None:
            sources = [f"{mirror.rstrip('/')}/{name}"]
        else:
            sources = list(spec.urls)
        errors = []
        for source in sources:
            try:
                if source_dir is not None:
                    if not Path(source).is_file():
                        raise FileNotFoundError("not there")
                    data = Path(source).read_bytes()
                else:
                    data = _download(source, timeout, max_bytes=64 * spec.size + (1 << 20))
                _write_verified(folder, spec, data)
            except (
                OSError,
                ValueError,
                zipfile.BadZipFile,
            ) as err:  # URLError, HTTPError, timeouts are OSErrors
                errors.append(f"{source}: {err}")
                continue
            report.fetched[name] = source
            verb = "copied " if source_dir is not None else "fetched"
            say(f"{verb}  {name} ({spec.size:,} bytes, sha256 ok) from {source}")
            break
        else:
            report.failed[name] = errors
            say(f"FAILED   {name}: " + "; ".join(errors))
    if report.failed:
        how = (
            "copy them from a folder that has them with `scratch-gpt data --from DIR`"
            if source_dir is None
            else "run `scratch-gpt data` to download them"
        )
        details = "; ".join(f"{name} ({' | '.join(errs)})" for name, errs in report.failed.items())
        raise ConnectionError(
            f"could not get {len(report.failed)} of {len(names)} data files into {folder}: {details}. "
            f"The others are in place; {how}"
        )
    return report
