"""Training: seeded patches, augmentation, targets, AdamW with warm-up + cosine decay, validation
with emseg.metrics, ``latest``/``best`` checkpoints and exact resume.

Exact resume: every step draws its patches and augmentations from a generator seeded by
``(seed, step)``, and ``latest.state.safetensors`` holds the model, optimizer, scheduler, step
and torch RNG state (:mod:`emseg.train.state`: tensors as safetensors, their structure as JSON,
no pickle), so a run killed at any point and resumed produces the same losses and bit-identical
weights as one never stopped.

The parts, each in its module: the data and each step's batch (:mod:`~emseg.train.batches`), the
model and its optimisation (:mod:`~emseg.train.build`), the loop (:mod:`~emseg.train.loop`),
validation (:mod:`~emseg.train.validation`), checkpoints and resuming
(:mod:`~emseg.train.checkpoints`), ``log.csv`` (:mod:`~emseg.train.log`), and SIGINT
(:mod:`~emseg.train.interrupt`): it stops at the end of the current step, saves ``latest`` and
raises :class:`TrainingInterrupted`; a second SIGINT stops at once. The run folder, its
``run.json`` and which reruns may resume it: :mod:`emseg.train.rundir`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ..runtime import torch_device
from .build import build_model, init_weights
from .checkpoints import resume
from .config import TrainConfig
from .batches import load_training_data, make_target
from .interrupt import TrainingInterrupted, sigint_at_step_end
from .log import TrainingLog
from .loop import start_run, train_steps
from .rundir import RUN_FILES, check_out_dir, claim_run_dir, signature_hash, train_signature

__all__ = ["train", "TrainResult", "TrainingInterrupted", "make_target", "build_model", "RUN_FILES"]


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float
    best_metric: float | None
    best_step: int | None
    latest: str
    best: str | None
    patches_per_second: float
    start_step: int = 0
    """The step this call started from (> 0 when it resumed a run; = ``steps`` when it had already finished)."""


def train(config: TrainConfig, *, progress=False) -> TrainResult:
    """Train a model as ``config`` says; returns where the checkpoints are and how it went.

    Writes ``out_dir/run.json``, ``latest.state.safetensors`` (model, optimizer, scheduler,
    step, RNG), ``latest.safetensors``, ``best.safetensors`` (best validation IoU of channel 0,
    or lowest loss) and ``log.csv``. An ``out_dir`` holding the same run (same inputs and
    options but :data:`~emseg.train.config.RESUMABLE_FIELDS`) is resumed exactly when
    ``config.resume``; one holding another run is refused unless ``config.overwrite``, which
    deletes the trainer's files (:data:`~emseg.train.rundir.RUN_FILES`) and nothing else.

    Raises
    ------
    emseg.runs.RunMismatchError
        ``out_dir`` holds another run; the message names the field that differs.
    emseg.io.lock.OutputBusyError
        Another trainer is writing ``out_dir``.
    ValueError
        Bad data, model or run folder; the loss became NaN/Inf (the message names the step).
    TrainingInterrupted
        On SIGINT, at the end of the current step, after saving ``latest``.
    """
    if not config.raw and not config.unlabelled:
        raise ValueError("config.raw is empty: give at least one raw/labels pair to train on (or, to adapt an init "
                         "model without labels, unlabelled volumes with semi: mean_teacher)")
    signature = train_signature(config)
    check_out_dir(config, signature)  # refuse another run before loading anything
    data = load_training_data(config)

    import torch

    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    device = torch_device(config.device)
    model = build_model(config, data.voxel_size)
    pretrained = frozenset()
    if config.init is not None:
        from .finetune import freeze_parameters

        pretrained = init_weights(model, config.init).names  # a resumed run then loads its own state over them
        freeze_parameters(model, config.freeze)
    model = model.to(device)
    # until here SIGINT stops at once (nothing was written); from here on, at the end of a step
    with sigint_at_step_end() as interrupt:
        with claim_run_dir(config, signature):  # the lock, overwrite, run.json
            run = start_run(config, signature_hash(signature), model, device, data, interrupt, pretrained)
            return _train_run(run, progress)


def _adabn(run):
    """BatchNorm statistics re-estimated on ``adabn_batches`` batches (seeded apart from the steps'): of the
    unlabelled volumes in a semi-supervised run (the data adapted to), else of the training data."""
    import numpy as np
    import torch

    from .batches import draw_batch
    from .finetune import adapt_batchnorm
    from .semi import draw_unlabelled

    rng = np.random.default_rng([run.config.seed, 2**32 - 1])
    if run.data.unlabelled is not None:  # the data the model is adapted to: the unlabelled volumes' (weak views)
        def draw():
            return draw_unlabelled(run.data.unlabelled, run.config, rng)[0]
    else:
        def draw():
            return draw_batch(run.data, run.config, rng).raw
    batches = (torch.from_numpy(draw()).to(run.device).contiguous(memory_format=run.memory_format)
               for _ in range(run.config.adabn_batches))
    adapt_batchnorm(run.model, batches)
    if run.teacher is not None:  # the teacher starts from the adapted student
        run.teacher.load_state_dict(run.model.state_dict())


def _train_run(run, show_progress):
    """Resume ``run`` where its folder stands, train it to the end and say how it went."""
    progress = resume(run)
    if progress.step == 0 and run.config.adabn_batches:
        _adabn(run)
    log = TrainingLog(run.config.out_dir, progress.step, run.config.steps, show_progress)
    t0, start_step = time.perf_counter(), progress.step
    try:
        train_steps(run, progress, log, t0)
    finally:
        log.close()
    seconds = time.perf_counter() - t0
    best = run.paths.best if os.path.exists(run.paths.best) else None
    return TrainResult(progress.step, seconds, progress.best, progress.best_step, run.paths.latest, best,
                       (progress.step - start_step) * run.config.batch_size / max(seconds, 1e-9), start_step)
