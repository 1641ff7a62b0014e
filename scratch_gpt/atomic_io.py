"""Writing files and folders so that a crash never leaves a half-written one behind.

Every helper writes into a temporary sibling first and then moves the result into place with ``os.replace``,
which is atomic on one file system: a reader sees the old file or the new one, never a mix. The package's only
implementation of this; everything that writes a file or a Hugging Face folder goes through it:

* ``atomic_write_bytes`` / ``atomic_write_text``: one file from bytes (or chunks of bytes) or text;
* ``atomic_write``: one file written by a function given the temporary path (e.g. ``fig.savefig``);
* ``write_dir_atomically``: a whole folder (``save_pretrained`` of a model and its tokenizer, plus reports).
* ``ensure_writable_dir``: the one check that a folder can be written to, before any work starts.

Standard library only, so that the tokenizer files that import it stay light in remote-code checkpoints.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], object], *, suffix: str = ".tmp"
) -> Path:
    """Run ``write(tmp_path)`` on a temporary file beside ``path``, then rename it onto ``path``.

    ``suffix`` ends the temporary name (``.png`` for ``savefig``, which picks the format from it). If ``write``
    fails, ``path`` is unchanged and the temporary file is gone.
    """
    path = Path(path)
    # the writer's pid in the name tells a killed write's leftover from one in progress (see data/token_files.py)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=suffix
    )
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | Iterable[bytes]) -> None:
    """Write ``data`` (bytes, or an iterable of byte chunks written in order) to ``path``, fsynced, atomically."""

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as file:
            for chunk in [data] if isinstance(data, (bytes, bytearray)) else data:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())

    atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends as given) to ``path``, fsynced, atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def ensure_writable_dir(path: str | os.PathLike[str], what: str = "output directory") -> Path:
    """Create ``path`` if needed and check that files can be created in it.

    The one writability check of the package (run folders, checkpoints, token files). Raises
    ``NotADirectoryError`` if ``path`` is a file, ``PermissionError`` naming the folder otherwise.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"the {what} {path} exists and is not a folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-", delete=True)  # noqa: SIM115
        probe.close()
    except OSError as err:
        raise PermissionError(
            f"cannot write to the {what} {path}: {err.strerror or err}; choose a folder you can write to"
        ) from None
    return path


def write_dir_atomically(output: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp_dir)`` on a temporary sibling folder, then move its files into ``output``.

    A new ``output`` appears whole (one rename); into an existing folder each file is replaced whole. If
    ``write`` fails, nothing in ``output`` has changed.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(
            f"output {output} exists and is not a directory; choose another output directory"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        write(tmp)
        if not output.exists():
            os.replace(tmp, output)
            return output
        for item in sorted(tmp.iterdir()):
            target = output / item.name
            if target.is_dir() and not item.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
