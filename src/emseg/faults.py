"""Fault points for the reliability tests: a run kills itself with a real SIGKILL at a chosen point.

Long runs call :func:`point` at the moments where an interruption matters (a block written, a
block recorded, a commit begun). Outside tests this is one dictionary lookup. With the environment
variable ``EMSEG_FAULTS``:

* ``count:FILE`` appends the name of every point passed to ``FILE`` (a clean run's list of points);
* ``kill:N`` sends SIGKILL to this process at the N-th point it passes (1-based).
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["point"]

_MODE = os.environ.get("EMSEG_FAULTS")
_LOCK = threading.Lock()
_PASSED = [0]


def point(name: str) -> None:
    """Mark a fault point (see the module docstring); does nothing unless ``EMSEG_FAULTS`` is set."""
    if not _MODE:
        return
    kind, _, arg = _MODE.partition(":")
    with _LOCK:
        _PASSED[0] += 1
        if kind == "count":
            with open(arg, "a") as f:
                f.write(f"{name}\n")
        elif kind == "kill" and _PASSED[0] == int(arg):
            os.kill(os.getpid(), signal.SIGKILL)
