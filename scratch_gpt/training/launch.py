"""Ending a run under accelerate launch cleanly: the process group is torn down before Python exits.

``accelerate`` starts the process group on first use (``init_process_group``) and leaves it up. A process that
then exits normally can abort while Python shuts down — ``terminate called without an active exception``, exit
status -6 — because gloo's worker threads (and the objects that keep the group alive, such as an FSDP device mesh)
release their tensors after the interpreter is gone; the launcher then kills the other processes and reports the
launch as failed although training had finished. On the 2-core CPU test machine this happened in about one
launch in ten, even after ``destroy_process_group``: the group's C++ object lives on in the model's mesh.

So a launched process ends in two steps: ``end_process_group()`` (every process waits for the others, then the
default group is destroyed), then ``exit_process(code)``, which flushes the output streams and logging and leaves
at once (``os._exit``), without the interpreter teardown that aborts. Everything the run writes is already on disk
by then (files are written atomically and closed). The ``scratch-gpt`` command line does both after every command
that succeeded under a launch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn

__all__ = ["end_process_group", "exit_process"]


def end_process_group() -> bool:
    """Wait for every process, then destroy the default process group; returns whether there was one.

    Outside a launch it does nothing and returns ``False``. Call it once every process is done, and only on
    success: if one process failed, the others may be inside a collective, and waiting for them would hang
    instead of exiting.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()  # no process tears down while another is still in a collective
    dist.destroy_process_group()
    return True


def exit_process(code: int = 0) -> NoReturn:
    """Leave this process now with exit status ``code``, after flushing ``stdout``, ``stderr`` and logging.

    ``os._exit`` skips Python's shutdown (``atexit`` handlers and the destruction of every remaining object),
    where a launched process can abort (module docstring). Use it as the last line of a launched process, after
    ``end_process_group()``.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(
            OSError, ValueError
        ):  # a closed or broken stream can take nothing more anyway
            stream.flush()
    os._exit(code)
