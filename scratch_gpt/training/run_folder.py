"""Every run owns its output folder: one guard for every command that writes one.

A command that writes a folder (``pretrain``, ``demo``, ``finetune-classifier``, ``finetune-instruct``,
``train-tokenizer``, ``convert``) claims it first with ``claim_run_folder``:

* **Ownership.** A small marker file, ``.scratch_gpt_run.json``, says which kind of run made the folder, with
  which command and settings. A folder that holds anything not written by the same kind of run (no marker,
  or another kind's marker) is refused with ``RunFolderError``, unless ``overwrite=True`` (CLI
  ``--overwrite``). Then the old content is set aside (renamed to a hidden sibling), the run writes into a
  fresh folder, and the old content is removed only once the run has finished; if the run fails, the old
  content is put back.
* **One run at a time.** An exclusive lock (``fcntl.flock`` on ``.scratch_gpt.lock`` inside the folder)
  is held for the whole run. A second run into the same folder fails at once with ``RunFolderBusyError``
  naming the first (pid, command, start time). The operating system drops the lock when its process dies,
  so a lock left by a killed run is stale: it is taken over, with a warning naming the dead run.

Claims nest: a library function that claims a folder may call another that claims the same folder (the
``demo`` calls ``pretrain_from_corpus``, which calls ``pretrain``); only the outermost claim checks,
locks and marks. The library never reads argv: the CLI passes its ``--overwrite`` through.

Deliberately not here: what a run writes (each pipeline does that, atomically) and the checks of a
resumed run's settings (``pretrain.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..atomic_io import atomic_write_text, ensure_writable_dir

try:  # POSIX; elsewhere a lock file created with O_EXCL and a pid check stands in
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MARKER",
    "LOCK",
    "RunFolderError",
    "RunFolderBusyError",
    "claim_run_folder",
    "read_marker",
    "ensure_writable_dir",
]

MARKER = ".scratch_gpt_run.json"
LOCK = ".scratch_gpt.lock"
_OWN_FILES = {MARKER, LOCK}
_HELD: dict[str, int] = {}  # real path -> nesting depth of the claims this process holds on it


class RunFolderError(FileExistsError):
    """The output folder holds something this run did not write (or is used by another run)."""


class RunFolderBusyError(RunFolderError):
    """Another run holds the output folder's lock."""


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The marker of a run folder (``kind``, ``command``, ``settings``, ``created``), or None without one."""
    try:
        marker = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        return {"kind": "?", "command": "?"}  # unreadable: treated as another run's
    return marker if isinstance(marker, dict) else {"kind": "?", "command": "?"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _write_marker(path: Path, kind: str, command: str, settings: dict[str, Any] | None) -> None:
    marker = {
        "kind": kind,
        "command": command,
        "settings": _jsonable(settings or {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(path / MARKER, json.dumps(marker, indent=1) + "\n")


# -------------------------------------------------------------------------------------------------- lock


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']} ({info['command']}, started {info['started']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire_lock(folder: Path, command: str) -> int:
    """Take the folder's exclusive lock; returns the open file descriptor that holds it."""
    lock = folder / LOCK
    me = json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    while True:
        if fcntl is None:  # pragma: no cover - Windows
            return _acquire_lock_without_flock(lock, me)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            previous = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            raise RunFolderBusyError(
                f"{folder} is in use by another run: {_holder(previous)}; wait for it to finish, or choose "
                "another output folder"
            ) from None
        try:  # the holder may have removed the file between our open and flock: lock the current one
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
        if previous:  # a lock file nobody holds: its run was killed
            warnings.warn(
                f"{folder}: taking over the stale lock of {_holder(previous)}, which no longer runs",
                UserWarning,
                stacklevel=4,
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, me.encode("utf-8"))
        os.fsync(fd)
        return fd


def _acquire_lock_without_flock(lock: Path, me: str) -> int:  # pragma: no cover - Windows
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            previous = lock.read_text(encoding="utf-8", errors="replace")
            try:
                alive = _pid_alive(int(json.loads(previous)["pid"]))
            except (ValueError, KeyError, TypeError):
                alive = False
            if alive:
                raise RunFolderBusyError(
                    f"{lock.parent} is in use by another run: {_holder(previous)}; wait for it to finish, "
                    "or choose another output folder"
                ) from None
            warnings.warn(f"{lock.parent}: taking over the stale lock of {_holder(previous)}", stacklevel=4)
            lock.unlink(missing_ok=True)
            continue
        os.write(fd, me.encode("utf-8"))
        return fd
    raise RunFolderBusyError(f"{lock.parent}: could not take its lock; try again")


def _release_lock(folder: Path, fd: int) -> None:
    try:
        (folder / LOCK).unlink(missing_ok=True)  # unlink first: a waiting opener re-checks the inode
    finally:
        os.close(fd)


# -------------------------------------------------------------------------------------------------- claim


def _describe(entries: list[str]) -> str:
    shown = ", ".join(sorted(entries)[:4])
    return shown + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")


@contextmanager
def claim_run_folder(
    path: str | Path,
    kind: str,
    *,
    command: str | None = None,
    settings: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Iterator[Path]:
    """Own ``path`` for the duration of a run of ``kind`` (see the module docstring); yields the folder.

    Raises ``RunFolderError`` if the folder holds anything a run of ``kind`` did not write (unless
    ``overwrite``), ``RunFolderBusyError`` if another run holds it, ``PermissionError`` if it cannot be
    written, ``NotADirectoryError`` if it is a file.
    """
    path = Path(path)
    command = command or kind
    key = os.path.realpath(path)
    if key in _HELD:  # an enclosing claim of this process already owns it
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
    created = not path.exists()
    ensure_writable_dir(path)
    fd = _acquire_lock(path, command)
    aside: Path | None = None
    try:
        marker = read_marker(path)
        entries = [p.name for p in path.iterdir() if p.name not in _OWN_FILES]
        owned = marker is not None and marker.get("kind") == kind
        if entries and not owned and not overwrite:
            whose = (
                f"a {marker.get('kind')!r} run's output ({marker.get('command')})"
                if marker
                else "files no scratch-gpt run of this kind wrote"
            )
            raise RunFolderError(
                f"{path} already holds {whose}: {_describe(entries)}; `{command}` will not write into it. "
                "Choose another output folder, or pass --overwrite (overwrite=True) to replace it (the old "
                "content is kept until the new run has finished)"
            )
        if overwrite and entries:
            aside = path.parent / f".{path.name}.replaced-{os.getpid()}-{int(time.time())}"
            os.replace(path, aside)  # our lock goes with it, so no one else starts in the old folder
            path.mkdir()
            new_fd = _acquire_lock(path, command)
            _release_lock(aside, fd)
            fd = new_fd
            marker = None
        if marker is None or not owned:
            _write_marker(path, kind, command, settings)
    except BaseException:
        if aside is not None and not any(p.name not in _OWN_FILES for p in path.iterdir()):
            shutil.rmtree(path, ignore_errors=True)
            os.replace(aside, path)
            (path / LOCK).unlink(missing_ok=True)
            os.close(fd)
        else:
            _release_lock(path, fd)
        if created:
            _remove_if_only_ours(path)
        raise
    _HELD[key] = 1
    finished = False
    try:
        yield path
        finished = True
    finally:
        del _HELD[key]
        if aside is not None:
            if finished:
                shutil.rmtree(aside, ignore_errors=True)
            else:  # the new run failed: put the old content back
                failed = path.parent / f".{path.name}.failed-{os.getpid()}"
                os.replace(path, failed)
                os.replace(aside, path)
                (path / LOCK).unlink(missing_ok=True)
                os.close(fd)
                shutil.rmtree(failed, ignore_errors=True)
                fd = -1
        if fd != -1:
            _release_lock(path, fd)
        if created and not finished:
            _remove_if_only_ours(path)


def _remove_if_only_ours(path: Path) -> None:
    """Remove a folder this claim created if the failed run left nothing in it but the marker."""
    try:
        if all(p.name in _OWN_FILES for p in path.iterdir()):
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass
