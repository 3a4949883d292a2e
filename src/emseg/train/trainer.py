"""The training loop: seeded patches, augmentation, targets, AdamW with warm-up + cosine decay,
validation with emseg.metrics, ``latest``/``best`` checkpoints and exact resume.

Exact resume: every step draws its patches and augmentations from a generator seeded by
``(seed, step)``, and ``latest.state.safetensors`` holds the model, optimizer, scheduler, step
and torch RNG state (:mod:`emseg.train.state`: tensors as safetensors, their structure as JSON,
no pickle), so a run killed at any point and resumed produces the same losses and bit-identical
weights as one never stopped.

A checkpoint writes ``best.safetensors`` (when validation improved), then the state, then
``latest.safetensors`` (the model at that step, a plain model checkpoint); each file is replaced
atomically. The state is self-contained (it holds the weights too), so a SIGKILL between two
writes never pairs weights with another step's optimizer state; a ``latest`` older than the
state is written again on resume. The run folder, its ``run.json`` and which reruns may resume
it: :mod:`emseg.train.rundir`. SIGINT stops at the end of the current step, saves ``latest``
and raises :class:`TrainingInterrupted`; a second SIGINT stops at once.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np

from .. import faults
from ..config import plain as _plain
from ..tasks import get_task
from ..runtime import cpu_bf16, memory_format, torch_device
from .config import TrainConfig
from ..normalization import fit_normalization
from .patches import load_train_volume, sample_patch, validation_patches
from .rundir import RUN_FILES, check_out_dir, claim_run_dir, signature_hash, train_signature
from .state import STATE_FILE, load_state, restore_state, save_state

__all__ = ["train", "TrainResult", "TrainingInterrupted", "make_target", "RUN_FILES"]
log = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT stopped training at the end of a step; ``latest`` holds that step, so a rerun resumes exactly.

    ``str(err)`` is the message for the user; ``err.step`` the step saved.
    """

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


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


def make_target(labels: np.ndarray, config: TrainConfig, voxel_size=None, from_mask=False):
    """(target, mask) channels-first float32 arrays for ``labels`` under the config's task (:mod:`emseg.tasks`).

    ``from_mask``: the labels are a semantic mask (0/1, 0/255); instance targets (bc, bcd, sdt) then
    take its connected components as the instances.
    """
    task = get_task(config.target)
    if voxel_size is not None:
        voxel_size = list(voxel_size)[-labels.ndim:]
    if task.instances and from_mask:
        from scipy import ndimage

        labels = ndimage.label(labels > 0)[0]
    return task.target(labels, config.task_params, voxel_size, config.ignore_label)


def _loss(config: TrainConfig, out, target, mask, pos_weight=None):
    """The task's loss: its own, or the configured one (per channel group when the task splits it);
    validation leaves out the class weighting (``pos_weight``) of training."""
    from .losses import segmentation_loss

    task = get_task(config.target)
    if task.loss is not None:
        return task.loss(out, target, mask)
    return segmentation_loss(out, target, loss=config.loss, mask=mask, pos_weight=pos_weight,
                             channels=task.channel_losses(config.task_params, config.loss))


def build_model(config: TrainConfig, voxel_size):
    """The UNet ``config.model`` describes; a bad argument is a ValueError naming ``model.KEY``."""
    import inspect

    from ..models import UNet

    kwargs = dict(config.model)
    preset = kwargs.pop("preset", None)
    if preset not in (None, "light2d"):
        raise ValueError(f"model.preset must be light2d or absent; got {preset!r}")
    valid = [p for p in inspect.signature(UNet.__init__).parameters if p not in ("self", "in_channels",
                                                                                 "out_channels", "ndim")]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"model.{unknown[0]} is not a UNet argument (ndim follows patch_shape, the channels the "
                         f"target); valid: preset, {', '.join(valid)}")
    ndim = len(config.patch_shape)
    common = dict(in_channels=1, out_channels=get_task(config.target).channels(config.task_params))
    try:
        if preset == "light2d":
            if ndim != 2:
                raise ValueError(f"preset light2d is a 2D network but patch_shape {config.patch_shape} is 3D")
            model = UNet.light2d(**common, **kwargs)
        elif ndim == 3 and voxel_size is not None and "kernel_sizes" not in kwargs:
            model = UNet.for_voxel_size(voxel_size, **common, **kwargs)
        else:
            model = UNet(ndim=ndim, **common, **kwargs)
        model.check_input_shape(config.patch_shape)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model {config.model} with patch_shape {list(config.patch_shape)}: {err}") from None
    return model


def _batch(volumes, config, rng, norm, augmenter, voxel_size, from_mask):
    raws, targets, masks = [], [], []
    for _ in range(config.batch_size):
        raw, lab = sample_patch(volumes, config.patch_shape, rng, config.foreground_fraction)
        raw = norm(raw)
        if augmenter is not None:
            raw, lab = augmenter(raw, lab, rng=rng)
        target, mask = make_target(np.asarray(lab), config, voxel_size, from_mask)
        raws.append(raw[None])
        targets.append(target)
        masks.append(mask)
    return np.stack(raws), np.stack(targets), np.stack(masks)


def _save(path, model, config, norm, voxel_size, step):
    """The model at ``step`` as a plain checkpoint (safetensors + metadata), atomically."""
    from ..models import save_model

    meta = {"config": config.as_dict(), "normalization": norm.as_dict(), "voxel_size": voxel_size,
            "target": config.target, "task": {"name": config.target, "params": _plain(config.task_params)},
            "offsets": [list(o) for o in config.offsets], "step": step}
    save_model(model, path, extra=meta)


# ---------------------------------------------------------------- SIGINT: finish the step, save, stop

@contextlib.contextmanager
def _sigint_at_step_end():
    """A dict whose ``"asked"`` turns True on SIGINT; a second SIGINT raises KeyboardInterrupt at once."""
    flag = {"asked": False, "saved": None}
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None):
        yield flag
        return

    def handler(signum, frame):
        if flag["asked"]:
            kept = f"the checkpoint of step {flag['saved']} is kept" if flag["saved"] else "no checkpoint was saved"
            raise KeyboardInterrupt(f"interrupted twice: stopped at once; {kept}; run the same command again "
                                    "to resume")
        flag["asked"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------- the loop

def _schedule(step, config, total=None):
    """Linear warm-up, then cosine decay to 0 at ``total`` steps (default ``config.steps``)."""
    total = total or config.steps
    if step < config.warmup_steps:
        return (step + 1) / max(1, config.warmup_steps)
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _validate(model, patches, config, norm, voxel_size, device, from_mask):
    import torch

    from ..metrics import semantic_scores

    model.eval()
    losses, tp_fp_fn = [], np.zeros(3)
    with torch.no_grad():
        for raw, lab in patches:
            target, mask = make_target(np.asarray(lab), config, voxel_size, from_mask)
            x = torch.from_numpy(norm(raw)[None, None]).to(device)
            out = model(x.contiguous(memory_format=memory_format(x.ndim - 2)))
            t, m = torch.from_numpy(target[None]).to(device), torch.from_numpy(mask[None]).to(device)
            losses.append(float(_loss(config, out, t, m)))
            pred = (torch.sigmoid(out[0, 0]) > 0.5).cpu().numpy()
            s = semantic_scores(target[0] > 0.5, pred, mask=mask[0] > 0) if mask[0].any() else None
            if s is not None:
                tp_fp_fn += [s.tp[0], s.fp[0], s.fn[0]]
    model.train()
    iou = tp_fp_fn[0] / max(1.0, tp_fp_fn.sum())
    return float(np.mean(losses)), float(iou)


def _load_data(config):
    train_vols, val_vols = [], []
    for i, (r, lab) in enumerate(zip(config.raw, config.labels)):
        tv, vv = load_train_volume(r, lab, val_fraction=config.val_fraction, val_roi=config.val_roi,
                                   seed=config.seed + i)
        train_vols.append(tv)
        if vv is not None:
            val_vols.append(vv)
    voxel_size = list(config.voxel_size) if config.voxel_size else _voxel_size(config.raw[0])
    from_mask = get_task(config.target).instances and all(_is_mask(v.labels) for v in train_vols)
    norm = fit_normalization(train_vols[0].raw, config.normalization)
    if not (math.isfinite(norm.low) and math.isfinite(norm.high)):
        raise ValueError(f"raw {config.raw[0]}: the {config.normalization} normalization of its voxels is "
                         f"{norm.low}..{norm.high}: the raw holds NaN/Inf values; fix the data")
    from .augment import build_augmenter

    # an unknown voxel size is taken as isotropic: every axis may then be flipped and swapped
    augmenter = build_augmenter(config.augment, voxel_size, config.seed, ndim=len(config.patch_shape))
    val_set = [p for v in val_vols for p in validation_patches(v, config.patch_shape, config.val_patches, config.seed)]
    return train_vols, val_set, voxel_size, from_mask, norm, augmenter


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
    if not config.raw:
        raise ValueError("config.raw is empty: give at least one raw/labels pair to train on")
    signature = train_signature(config)
    check_out_dir(config, signature)  # refuse another run before loading anything
    train_vols, val_set, voxel_size, from_mask, norm, augmenter = _load_data(config)

    import torch

    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    device = torch_device(config.device)
    model = build_model(config, voxel_size).to(device)
    # until here SIGINT stops at once (nothing was written); from here on, at the end of a step
    with _sigint_at_step_end() as interrupt:
        with claim_run_dir(config, signature):  # the lock, overwrite, run.json
            return _train_loop(config, signature, model, device, train_vols, val_set, voxel_size, from_mask, norm,
                               augmenter, progress, interrupt)


def _train_loop(config, signature, model, device, train_vols, val_set, voxel_size, from_mask, norm, augmenter,
                progress, interrupt):
    import torch

    from ..io.atomic import write_text_atomic

    fmt = memory_format(model.ndim)
    model = model.to(memory_format=fmt)  # oneDNN/cuDNN run NHWC convolutions about 2x faster on CPU
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # With max_minutes, the cosine decay ends when the time does: the step budget is re-estimated
    # from the measured speed as training goes (such runs resume exactly only up to that estimate).
    budget = {"total": config.steps}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, config, budget["total"]))
    # mixed precision: float16 + loss scaling on CUDA; bfloat16 on CPUs with native support (AVX512-BF16/AMX)
    use_amp = bool(config.amp and (device.type == "cuda" or (device.type == "cpu" and cpu_bf16())))
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and device.type == "cuda")
    latest = os.path.join(config.out_dir, "latest.safetensors")
    state_path = os.path.join(config.out_dir, STATE_FILE)
    best_path = os.path.join(config.out_dir, "best.safetensors")
    sig_hash = signature_hash(signature)
    step, best, best_step, bad_vals = 0, None, None, 0
    if config.resume and os.path.exists(state_path):
        state = load_state(state_path, signature=sig_hash)
        restore_state(state, state_path, model, opt, sched, scaler, device)
        step, best, best_step, bad_vals = int(state["step"]), state.get("best"), state.get("best_step"), \
            int(state.get("bad_vals", 0))
        budget["total"] = int(state.get("budget", config.steps))
        if _checkpoint_step(latest) != step:  # killed between the state and the model: export the model again
            _save(latest, model, config, norm, voxel_size, step)
        log.info("resumed from %s at step %d", state_path, step)

    log_path = os.path.join(config.out_dir, "log.csv")
    rows = []
    if step and os.path.exists(log_path):  # drop what was logged after the checkpoint we resume from
        with open(log_path, newline="") as f:
            rows = [r for r in csv.reader(f)][1:]
        rows = [r for r in rows if r and r[0].isdigit() and int(r[0]) <= step]
    text = io.StringIO()
    csv.writer(text).writerows([["step", "loss", "lr", "val_loss", "val_iou", "seconds"]] + rows)
    write_text_atomic(log_path, text.getvalue())
    writer = _tensorboard(config.out_dir)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="train", unit="step")
    t0, start_step = time.perf_counter(), step
    model.train()
    try:
        interrupt["saved"] = step or None
        if interrupt["asked"]:
            raise TrainingInterrupted(f"interrupted before step {step + 1}; the run folder holds step {step}; "
                                      "run the same command again to resume", step)
        while step < config.steps:
            rng = np.random.default_rng([config.seed, step])
            raw, target, mask = _batch(train_vols, config, rng, norm, augmenter, voxel_size, from_mask)
            x, t, m = (torch.from_numpy(a).to(device) for a in (raw, target, mask))
            x = x.contiguous(memory_format=fmt)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                out = model(x)
            loss = _loss(config, out.float(), t, m, config.pos_weight)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                kept = f"the checkpoint of step {interrupt['saved']} is kept" if interrupt["saved"] else \
                    "no checkpoint was saved"
                raise ValueError(f"loss became {loss_value} at step {step + 1}; check the raw data for NaN "
                                 f"values or lower lr (now {config.lr:g}) and start over with --overwrite; {kept}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            row = [step, loss_value, sched.get_last_lr()[0], "", "", round(time.perf_counter() - t0, 2)]
            elapsed = time.perf_counter() - t0
            stop = config.max_minutes is not None and elapsed > 60 * config.max_minutes
            if config.max_minutes is not None and step - start_step >= 20:
                per_step = elapsed / (step - start_step)
                budget["total"] = min(config.steps,
                                      step + max(1, int((60 * config.max_minutes - elapsed) / per_step)))
            scheduled = step % config.val_every == 0 or step == config.steps or stop
            checkpoint = scheduled or interrupt["asked"]  # SIGINT: an extra checkpoint, without validation
            improved = False
            if scheduled and val_set:
                val_loss, val_iou = _validate(model, val_set, config, norm, voxel_size, device, from_mask)
                row[3:5] = [val_loss, val_iou]
                score = val_iou if get_task(config.target).score == "iou" else -val_loss
                improved = best is None or score > best
                best, best_step, bad_vals = (score, step, 0) if improved else (best, best_step, bad_vals + 1)
            with open(log_path, "a", newline="") as f:  # the row first: a checkpoint never lacks its log
                csv.writer(f).writerow(row)
            faults.point(f"train.step:{step}")
            if writer is not None:
                writer.add_scalar("loss", loss_value, step)
                if row[3] != "":
                    writer.add_scalar("val_loss", row[3], step)
                    writer.add_scalar("val_iou", row[4], step)
            if checkpoint:  # best, then the state, then latest: a kill between two leaves a resumable state
                if improved:
                    _save(best_path, model, config, norm, voxel_size, step)
                    faults.point(f"train.best:{step}")
                state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict(), "step": step, "torch_rng": torch.get_rng_state(),
                         "best": best, "best_step": best_step, "bad_vals": bad_vals, "budget": budget["total"],
                         "signature": sig_hash}
                if scaler.is_enabled():
                    state["scaler"] = scaler.state_dict()
                if device.type == "cuda":
                    state["cuda_rng"] = torch.cuda.get_rng_state_all()
                save_state(state_path, state)
                faults.point(f"train.state:{step}")
                _save(latest, model, config, norm, voxel_size, step)
                faults.point(f"train.latest:{step}")
                interrupt["saved"] = step
                if config.early_stopping and bad_vals >= config.early_stopping:
                    stop = True
            if bar is not None:
                bar.set_postfix(loss=f"{loss_value:.4f}",
                                **({"val_iou": f"{row[4]:.3f}"} if row[4] != "" else {}))
                bar.update(1)
            if interrupt["asked"]:
                raise TrainingInterrupted(f"interrupted at step {step} of {config.steps}; checkpoint saved to "
                                          f"{state_path}; run the same command again to resume", step)
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - t0
    done = step - start_step
    return TrainResult(step, seconds, best, best_step, latest, best_path if os.path.exists(best_path) else None,
                       done * config.batch_size / max(seconds, 1e-9), start_step)


def _checkpoint_step(path):
    """The step a ``latest`` checkpoint was saved at, or None when it is missing or unreadable."""
    from ..models import read_model_header

    try:
        return read_model_header(path).extra.get("step")
    except (OSError, ValueError):
        return None


def _tensorboard(out_dir):
    """A TensorBoard writer when the tensorboard package is installed (optional), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(os.path.join(out_dir, "tensorboard"))


def _is_mask(labels) -> bool:
    import fastremap

    return len(fastremap.unique(np.asarray(labels))) <= 2


def _voxel_size(path):
    from ..io import open_volume

    with open_volume(path) as vol:
        return list(vol.voxel_size) if vol.voxel_size else None
