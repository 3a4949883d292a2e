"""A training run's checkpoints: ``best.safetensors``, the state ``latest.state.safetensors`` and
``latest.safetensors``, written in that order, and resuming from the state.

A checkpoint writes ``best`` (when validation improved), then the state, then ``latest`` (the model
at that step, a plain model checkpoint); each file is replaced atomically. The state is
self-contained (it holds the weights too, :mod:`emseg.train.state`), so a SIGKILL between two
writes never pairs weights with another step's optimizer state; a ``latest`` older than the state
is written again on resume.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import NamedTuple

from .. import faults
from ..config import plain
from .state import STATE_FILE, load_state, restore_state, save_state

__all__ = ["RunPaths", "run_paths", "Progress", "export_model", "checkpoint_step", "write_checkpoint", "resume"]
log = logging.getLogger(__name__)


class RunPaths(NamedTuple):
    """The files of a run folder the trainer writes as it goes."""

    latest: str
    state: str
    best: str
    log: str
    teacher: str
    """The mean teacher of a semi-supervised run (:mod:`emseg.train.semi`) at the step of ``latest``."""


def run_paths(out_dir) -> RunPaths:
    """The :class:`RunPaths` in ``out_dir``.

    Examples
    --------
    >>> run_paths("run").state
    'run/latest.state.safetensors'
    """
    return RunPaths(*(os.path.join(out_dir, name) for name in
                      ("latest.safetensors", STATE_FILE, "best.safetensors", "log.csv", "teacher.safetensors")))


@dataclass
class Progress:
    """Where a run stands: steps done, the best validation score and its step, validations since it."""

    step: int = 0
    best: float | None = None
    best_step: int | None = None
    bad_vals: int = 0

    def record(self, score) -> bool:
        """Note the validation ``score`` (higher is better) of this step; True when it is the best so far.

        Examples
        --------
        >>> p = Progress(step=4)
        >>> p.record(0.5), p.record(0.4), (p.best, p.best_step, p.bad_vals)
        (True, False, (0.5, 4, 1))
        """
        improved = self.best is None or score > self.best
        if improved:
            self.best, self.best_step, self.bad_vals = score, self.step, 0
        else:
            self.bad_vals += 1
        return improved


def export_model(path, run, step, model=None) -> None:
    """The model of ``run`` (a :class:`~emseg.train.loop.TrainingRun`; or ``model``, its teacher) at
    ``step`` as a plain checkpoint (safetensors + metadata: config, normalisation, voxel size, task), atomically."""
    from ..models import save_model

    config, data = run.config, run.data
    meta = {"config": config.as_dict(), "normalization": data.normalization.as_dict(), "voxel_size": data.voxel_size,
            "target": config.target, "task": {"name": config.target, "params": plain(config.task_params)},
            "offsets": [list(o) for o in config.offsets], "step": step}
    if config.pretrain != "none":  # not a segmentation model: its head restores intensities
        meta["pretrain"] = config.pretrain
    save_model(run.model if model is None else model, path, extra=meta)


def checkpoint_step(path):
    """The step a ``latest`` checkpoint was saved at, or None when it is missing or unreadable."""
    from ..models import read_model_header

    try:
        return read_model_header(path).extra.get("step")
    except (OSError, ValueError):
        return None


def write_checkpoint(run, progress: Progress, improved) -> None:
    """``best`` when ``improved``, then the state, then ``latest``: a kill between two leaves a resumable state."""
    step = progress.step
    if improved:
        export_model(run.paths.best, run, step)
        faults.point(f"train.best:{step}")
    save_state(run.paths.state, _state(run, progress))
    faults.point(f"train.state:{step}")
    export_model(run.paths.latest, run, step)
    faults.point(f"train.latest:{step}")
    if run.teacher is not None:
        export_model(run.paths.teacher, run, step, run.teacher)


def _state(run, progress):
    """Everything an exact resume needs: model, optimizer, scheduler, scaler, RNG states, progress."""
    import torch

    opt = run.optimization
    state = {"model": run.model.state_dict(), "optimizer": opt.optimizer.state_dict(),
             "scheduler": opt.scheduler.state_dict(), "step": progress.step, "torch_rng": torch.get_rng_state(),
             "best": progress.best, "best_step": progress.best_step, "bad_vals": progress.bad_vals,
             "budget": opt.budget, "signature": run.signature}
    if opt.scaler.is_enabled():
        state["scaler"] = opt.scaler.state_dict()
    if run.teacher is not None:
        state["teacher"] = run.teacher.state_dict()
    if run.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def resume(run) -> Progress:
    """Load the run folder's state into ``run`` when ``config.resume`` and there is one; where it stands.

    Raises
    ------
    ValueError
        The state is damaged, belongs to another run or does not fit the model (see
        :func:`~emseg.train.state.load_state`); the message says how to start over.
    """
    config, paths, opt = run.config, run.paths, run.optimization
    if not (config.resume and os.path.exists(paths.state)):
        return Progress()
    state = load_state(paths.state, signature=run.signature)
    restore_state(state, paths.state, run.model, opt.optimizer, opt.scheduler, opt.scaler, run.device)
    if run.teacher is not None:
        if "teacher" not in state:
            raise ValueError(f"training state {paths.state!r} holds no mean teacher; delete the run folder or pass "
                             "--overwrite to start over")
        run.teacher.load_state_dict(state["teacher"], strict=True)
    progress = Progress(int(state["step"]), state.get("best"), state.get("best_step"), int(state.get("bad_vals", 0)))
    opt.budget = int(state.get("budget", config.steps))
    if checkpoint_step(paths.latest) != progress.step:  # killed between the state and the model: export it again
        export_model(paths.latest, run, progress.step)
    if run.teacher is not None and checkpoint_step(paths.teacher) != progress.step:
        export_model(paths.teacher, run, progress.step, run.teacher)
    log.info("resumed from %s at step %d", paths.state, progress.step)
    return progress
