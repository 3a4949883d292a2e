"""The training loop: one optimiser step after another, each on a batch drawn from a generator
seeded by ``(seed, step)``; validation and a checkpoint every ``val_every`` steps, at the end, when
time is up (``max_minutes``) and on SIGINT; a row of the log for every step.

The order within a step is fixed, so that a resumed run repeats an uninterrupted one exactly:
batch, forward, loss, backward, optimiser and scheduler step; then validation, the log row, the
checkpoint (:mod:`emseg.train.checkpoints`), the progress bar, and the stop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .build import Optimization, make_optimization
from .checkpoints import Progress, RunPaths, run_paths, write_checkpoint
from .config import TrainConfig
from .batches import TrainingData, draw_batch
from .interrupt import StepEndInterrupt, TrainingInterrupted
from .log import LogRow, TrainingLog
from .validation import validate, validation_score

__all__ = ["TrainingRun", "start_run", "train_steps"]


@dataclass(eq=False)
class TrainingRun:
    """What every step of one run works with."""

    config: TrainConfig
    signature: str
    """The run's signature hash (:func:`emseg.train.rundir.signature_hash`), stored in its state."""
    data: TrainingData
    model: object
    device: object
    optimization: Optimization
    paths: RunPaths
    interrupt: StepEndInterrupt
    memory_format: object
    """The model's (and every batch's) torch memory format: channels-last."""
    teacher: object = None
    """The mean teacher of a semi-supervised run (:mod:`emseg.train.semi`), else None."""


def start_run(config, signature, model, device, data, interrupt, pretrained=frozenset()) -> TrainingRun:
    """The :class:`TrainingRun` of ``model``: in channels-last memory format, with its optimizer
    (``pretrained``: names of the tensors loaded from ``config.init``)."""
    from ..runtime import memory_format

    fmt = memory_format(model.ndim)
    model = model.to(memory_format=fmt)  # oneDNN/cuDNN run NHWC convolutions about 2x faster on CPU
    teacher = None
    if config.semi != "none":
        from .semi import make_teacher

        teacher = make_teacher(model)
    return TrainingRun(config, signature, data, model, device, make_optimization(config, model, device, pretrained),
                       run_paths(config.out_dir), interrupt, fmt, teacher)


def train_steps(run: TrainingRun, progress: Progress, log: TrainingLog, t0) -> None:
    """Train from ``progress.step`` until ``config.steps``, a stop (time, early stopping) or SIGINT.

    ``t0`` is the run's start (``time.perf_counter()``) for the log's seconds and ``max_minutes``.

    Raises
    ------
    TrainingInterrupted
        On SIGINT, at the end of the step it came in (after its checkpoint).
    ValueError
        The loss became NaN/Inf.
    """
    from .finetune import set_train_mode

    config, interrupt, start = run.config, run.interrupt, progress.step
    set_train_mode(run.model, config.freeze)
    interrupt.saved = progress.step or None
    if interrupt.asked:
        raise TrainingInterrupted(f"interrupted before step {progress.step + 1}; the run folder holds step "
                                  f"{progress.step}; run the same command again to resume", progress.step)
    while progress.step < config.steps:
        loss = _step(run, progress)
        lr, seconds = run.optimization.scheduler.get_last_lr()[0], round(time.perf_counter() - t0, 2)
        stop = _out_of_time(run, progress, t0, start)
        scheduled = progress.step % config.val_every == 0 or progress.step == config.steps or stop
        checkpoint = scheduled or interrupt.asked  # SIGINT: an extra checkpoint, without validation
        val = validate(run.model, run.data, config, run.device) if scheduled and run.data.validation else None
        improved = val is not None and progress.record(validation_score(config, val))
        row = LogRow(progress.step, loss, lr, *(val or ("", "")), seconds)
        log.append(row)
        if checkpoint:
            write_checkpoint(run, progress, improved)
            interrupt.saved = progress.step
            stop = stop or bool(config.early_stopping and progress.bad_vals >= config.early_stopping)
        log.advance(row)
        if interrupt.asked and interrupt.saved == progress.step:  # a later SIGINT: at the end of the next step
            raise TrainingInterrupted(f"interrupted at step {progress.step} of {config.steps}; checkpoint saved to "
                                      f"{run.paths.state}; run the same command again to resume", progress.step)
        if stop:
            break


def _step(run, progress):
    """One optimiser step on the batch of ``progress.step``; returns its loss."""
    import torch

    from .losses import task_loss

    config, opt = run.config, run.optimization
    if config.pretrain != "none":
        from .pretrain import pretrain_loss

        return _apply(run, progress, pretrain_loss(run, progress))
    if not run.data.volumes:  # adapting without labels: the consistency loss alone
        return _semi_step(run, progress, None, None, None)
    rng = np.random.default_rng([config.seed, progress.step])
    x, t, m = (torch.from_numpy(a).to(run.device) for a in draw_batch(run.data, config, rng))
    x = x.contiguous(memory_format=run.memory_format)
    if run.teacher is not None:
        return _semi_step(run, progress, x, t, m)
    with torch.autocast(run.device.type, dtype=opt.amp_dtype, enabled=opt.use_amp):
        out = run.model(x)
    loss = task_loss(config, out.float(), t, m, config.pos_weight)
    return _apply(run, progress, loss)


def _semi_step(run, progress, x, t, m):
    """A mean-teacher step: the labelled loss plus the ramped consistency loss on an unlabelled batch."""
    import torch

    from .losses import task_loss
    from .semi import classification_channels, confidence_at, consistency_loss, draw_unlabelled, ema_update, rampup

    config, opt = run.config, run.optimization
    rng = np.random.default_rng([config.seed, progress.step, 1])  # apart from the labelled batch's generator
    weak, strong = (torch.from_numpy(a).to(run.device).contiguous(memory_format=run.memory_format)
                    for a in draw_unlabelled(run.data.unlabelled, config, rng))
    with torch.no_grad(), torch.autocast(run.device.type, dtype=opt.amp_dtype, enabled=opt.use_amp):
        target_u = run.teacher(weak)
    with torch.autocast(run.device.type, dtype=opt.amp_dtype, enabled=opt.use_amp):
        out = run.model(strong if x is None else torch.cat([x, strong]))
    n = 0 if x is None else x.shape[0]
    loss = out.new_zeros(()) if x is None else task_loss(config, out[:n].float(), t, m, config.pos_weight)
    channels = classification_channels(config)
    if channels and config.consistency_weight:
        cons, _ = consistency_loss(out[n:], target_u, channels, confidence_at(progress.step, opt.budget, config))
        loss = loss + config.consistency_weight * rampup(progress.step, opt.budget, config.consistency_rampup) * cons
    value = _apply(run, progress, loss)
    ema_update(run.teacher, run.model, config.ema_decay)
    return value


def _apply(run, progress, loss):
    """Backward and optimiser step of ``loss``; the step count advances. Returns the loss value."""
    config, opt = run.config, run.optimization
    value = loss.item()
    if not math.isfinite(value):
        raise ValueError(f"loss became {value} at step {progress.step + 1}; check the raw data for NaN values or "
                         f"lower lr (now {config.lr:g}) and start over with --overwrite; {run.interrupt.kept()}")
    opt.optimizer.zero_grad(set_to_none=True)
    opt.scaler.scale(loss).backward()
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    opt.scheduler.step()
    progress.step += 1
    return value


def _out_of_time(run, progress, t0, start):
    """Whether ``max_minutes`` are up; after 20 steps, the cosine decay's end is re-estimated from the speed."""
    config = run.config
    if config.max_minutes is None:
        return False
    elapsed = time.perf_counter() - t0
    if progress.step - start >= 20:
        per_step = elapsed / (progress.step - start)
        run.optimization.budget = min(config.steps,
                                      progress.step + max(1, int((60 * config.max_minutes - elapsed) / per_step)))
    return elapsed > 60 * config.max_minutes
