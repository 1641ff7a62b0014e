"""Ending a run under accelerate launch cleanly: the process group is torn down before Python exits.

``accelerate`` starts the process group on first use (``init_process_group``) and leaves it up. A process that
then exits with a gloo group still up can abort while Python shuts down — ``terminate called without an active
exception``, exit status -6, about one run in ten on the CPU test machine — because gloo's worker threads release
their tensors after the interpreter is gone; the launcher then kills the other processes and the launch fails
although training had finished. ``end_process_group()`` at the end of a script (the ``scratch-gpt`` command line
calls it after every command that succeeded) prevents that.
"""

from __future__ import annotations

__all__ = ["end_process_group"]


def end_process_group() -> None:
    """Wait for every process, then destroy the default process group; does nothing outside a launch.

    Call it once every process is done, and only on success: if one process failed, the others may be inside a
    collective, and waiting for them would hang instead of exiting.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # no process tears down while another is still in a collective
        dist.destroy_process_group()
