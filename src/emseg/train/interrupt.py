"""SIGINT during training: the first finishes the current step, saves ``latest`` and stops with
:class:`TrainingInterrupted`; a second stops at once."""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["TrainingInterrupted", "StepEndInterrupt", "sigint_at_step_end"]


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT stopped training at the end of a step; ``latest`` holds that step, so a rerun resumes exactly.

    ``str(err)`` is the message for the user; ``err.step`` the step saved.
    """

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


class StepEndInterrupt:
    """Whether SIGINT was asked for (``asked``) and the step the run folder holds (``saved``, None: none)."""

    def __init__(self):
        self.asked = False
        self.saved = None

    def kept(self) -> str:
        """What a stop now leaves behind, for the message."""
        return f"the checkpoint of step {self.saved} is kept" if self.saved else "no checkpoint was saved"


@contextlib.contextmanager
def sigint_at_step_end():
    """A :class:`StepEndInterrupt` whose ``asked`` turns True on SIGINT; a second SIGINT raises
    KeyboardInterrupt at once. Outside the main thread, or with SIGINT ignored, nothing is installed."""
    flag = StepEndInterrupt()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None):
        yield flag
        return

    def handler(signum, frame):
        if flag.asked:
            raise KeyboardInterrupt(f"interrupted twice: stopped at once; {flag.kept()}; run the same command again "
                                    "to resume")
        flag.asked = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
