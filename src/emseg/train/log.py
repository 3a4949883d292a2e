"""The training log: ``log.csv`` (one row a step), TensorBoard when it is installed, and a progress
bar when asked. A resumed run keeps the rows up to the step it resumes from and drops the rest."""

from __future__ import annotations

import csv
import io
import os
from typing import NamedTuple

from .. import faults

__all__ = ["LogRow", "TrainingLog"]


class LogRow(NamedTuple):
    """One row of ``log.csv``; ``val_loss`` and ``val_iou`` are "" for a step without validation."""

    step: int
    loss: float
    lr: float
    val_loss: float | str
    val_iou: float | str
    seconds: float


class TrainingLog:
    """``out_dir/log.csv`` rewritten with its rows up to ``step``, then one row per step.

    Parameters
    ----------
    out_dir : str
        The run folder; TensorBoard events go to ``out_dir/tensorboard``.
    step : int
        The step the run starts from (0, or the step it resumes from).
    steps : int
        The run's last step, for the progress bar.
    progress : bool
        Show a progress bar (tqdm).
    """

    def __init__(self, out_dir, step, steps, progress=False):
        from ..io.atomic import write_text_atomic

        self.path = os.path.join(out_dir, "log.csv")
        rows = []
        if step and os.path.exists(self.path):  # drop what was logged after the checkpoint we resume from
            with open(self.path, newline="") as f:
                rows = [r for r in csv.reader(f)][1:]
            rows = [r for r in rows if r and r[0].isdigit() and int(r[0]) <= step]
        text = io.StringIO()
        csv.writer(text).writerows([list(LogRow._fields)] + rows)
        write_text_atomic(self.path, text.getvalue())
        self.writer = _tensorboard(out_dir)
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=steps, initial=step, desc="train", unit="step")

    def append(self, row: LogRow) -> None:
        """Write ``row`` to ``log.csv``, then to TensorBoard; before the step's checkpoint, so that a
        checkpoint never lacks its row."""
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(row)
        faults.point(f"train.step:{row.step}")
        if self.writer is not None:
            self.writer.add_scalar("loss", row.loss, row.step)
            if row.val_loss != "":
                self.writer.add_scalar("val_loss", row.val_loss, row.step)
                self.writer.add_scalar("val_iou", row.val_iou, row.step)

    def advance(self, row: LogRow) -> None:
        """Move the progress bar on by the step of ``row``."""
        if self.bar is not None:
            shown = {"val_iou": f"{row.val_iou:.3f}"} if row.val_iou != "" else {}
            self.bar.set_postfix(loss=f"{row.loss:.4f}", **shown)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _tensorboard(out_dir):
    """A TensorBoard writer when the tensorboard package is installed (optional), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(os.path.join(out_dir, "tensorboard"))
