"""The training loop: seeded patches, augmentation, targets, AdamW with warm-up + cosine decay,
validation with emseg.metrics, ``latest``/``best`` checkpoints and exact resume.

Exact resume: every step draws its patches and augmentations from a generator seeded by
``(seed, step)``, and a checkpoint holds the model, optimizer, scheduler, step and torch RNG
state, so a run killed at any point and resumed produces the same losses as one never stopped.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from ..runtime import cpu_bf16, memory_format, torch_device
from .config import TrainConfig
from .data import fit_normalization, load_train_volume, sample_patch, validation_patches

__all__ = ["train", "TrainResult", "make_target"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float
    best_metric: float | None
    best_step: int | None
    latest: str
    best: str | None
    patches_per_second: float


def make_target(labels: np.ndarray, config: TrainConfig, voxel_size=None, from_mask=False):
    """(target, mask) channels-first float32 arrays for ``labels`` under ``config.target``.

    ``from_mask``: the labels are a semantic mask (0/1, 0/255); instance targets (bc, bcd) then
    take its connected components as the instances.
    """
    from . import targets as T

    kind = config.target
    if voxel_size is not None:
        voxel_size = list(voxel_size)[-labels.ndim:]
    if kind in ("bc", "bcd") and from_mask:
        from scipy import ndimage

        labels = ndimage.label(labels > 0)[0]
    if kind == "binary":
        return T.binary_target(labels, ignore_label=config.ignore_label)
    if kind == "onehot":
        return T.one_hot_target(labels, config.n_classes, ignore_label=config.ignore_label)
    if kind == "bc":
        return T.bc_target(labels, voxel_size=voxel_size, ignore_label=config.ignore_label)
    if kind == "bcd":
        return T.bcd_target(labels, voxel_size=voxel_size, ignore_label=config.ignore_label)
    if kind == "affinities":
        offsets = [o[-labels.ndim:] for o in config.offsets]
        return T.affinities(labels, offsets, ignore_label=config.ignore_label)
    return T.boundary_target(labels)


def _out_channels(config: TrainConfig) -> int:
    return {"binary": 1, "onehot": config.n_classes, "bc": 2, "bcd": 3, "boundary": 1}.get(
        config.target, len(config.offsets))


def _loss_channels(config: TrainConfig):
    return {"bce_dice": [0, 1], "mse": [2]} if config.target == "bcd" and config.loss != "mse" else None


def build_model(config: TrainConfig, voxel_size):
    from ..models import UNet

    kwargs = dict(config.model)
    preset = kwargs.pop("preset", None)
    ndim = len(config.patch_shape)
    common = dict(in_channels=1, out_channels=_out_channels(config))
    if preset == "light2d":
        return UNet.light2d(**common, **kwargs)
    if ndim == 3 and voxel_size is not None and "kernel_sizes" not in kwargs:
        return UNet.for_voxel_size(voxel_size, **common, **kwargs)
    return UNet(ndim=ndim, **common, **kwargs)


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


def _save(path, model, config, norm, voxel_size, extra_state=None):
    """Model weights (safetensors + metadata) and, for ``latest``, the trainer state; both atomic."""
    import torch

    from ..models import save_model

    meta = {"config": config.as_dict(), "normalization": norm.as_dict(), "voxel_size": voxel_size,
            "target": config.target, "offsets": [list(o) for o in config.offsets]}
    tmp = path + ".partial"
    save_model(model, tmp, extra=meta)
    os.replace(tmp, path)
    if extra_state is not None:
        state_tmp = path + ".state.partial"
        torch.save(extra_state["state"], state_tmp)
        os.replace(state_tmp, path + ".state")


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
    from .losses import segmentation_loss

    model.eval()
    losses, tp_fp_fn = [], np.zeros(3)
    with torch.no_grad():
        for raw, lab in patches:
            target, mask = make_target(np.asarray(lab), config, voxel_size, from_mask)
            x = torch.from_numpy(norm(raw)[None, None]).to(device)
            out = model(x.contiguous(memory_format=memory_format(x.ndim - 2)))
            t, m = torch.from_numpy(target[None]).to(device), torch.from_numpy(mask[None]).to(device)
            losses.append(float(segmentation_loss(out, t, loss=config.loss, mask=m, channels=_loss_channels(config))))
            pred = (torch.sigmoid(out[0, 0]) > 0.5).cpu().numpy()
            s = semantic_scores(target[0] > 0.5, pred, mask=mask[0] > 0) if mask[0].any() else None
            if s is not None:
                tp_fp_fn += [s.tp[0], s.fp[0], s.fn[0]]
    model.train()
    iou = tp_fp_fn[0] / max(1.0, tp_fp_fn.sum())
    return float(np.mean(losses)), float(iou)


def train(config: TrainConfig, *, progress=False) -> TrainResult:
    """Train a model as ``config`` says; returns where the checkpoints are and how it went.

    Writes ``out_dir/latest.safetensors`` (+ ``.state`` with optimizer/scheduler/step/RNG),
    ``out_dir/best.safetensors`` (best validation IoU of channel 0, or lowest loss) and
    ``out_dir/log.csv``. With ``config.resume`` and an existing ``latest``, training continues
    from it exactly.
    """
    import torch

    if not config.raw:
        raise ValueError("config.raw is empty: give at least one raw/labels pair to train on")
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    device = torch_device(config.device)
    os.makedirs(config.out_dir, exist_ok=True)

    train_vols, val_vols = [], []
    for i, (r, lab) in enumerate(zip(config.raw, config.labels)):
        tv, vv = load_train_volume(r, lab, val_fraction=config.val_fraction, val_roi=config.val_roi, seed=config.seed + i)
        train_vols.append(tv)
        if vv is not None:
            val_vols.append(vv)
    voxel_size = list(config.voxel_size) if config.voxel_size else _voxel_size(config.raw[0])
    from_mask = config.target in ("bc", "bcd") and all(_is_mask(v.labels) for v in train_vols)
    norm = fit_normalization(train_vols[0].raw, config.normalization)
    augmenter = None
    if config.augment:
        from .augment import Augmenter

        # an unknown voxel size is taken as isotropic: every axis may then be flipped and swapped
        vs = voxel_size[-len(config.patch_shape):] if voxel_size else [1.0] * len(config.patch_shape)
        augmenter = Augmenter(voxel_size=vs, seed=config.seed)
    val_set = [p for v in val_vols for p in validation_patches(v, config.patch_shape, config.val_patches, config.seed)]

    model = build_model(config, voxel_size).to(device)
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
    best_path = os.path.join(config.out_dir, "best.safetensors")
    step, best, best_step, bad_vals = 0, None, None, 0
    if config.resume and os.path.exists(latest + ".state"):
        from ..models import load_model

        model.load_state_dict(load_model(latest).state_dict())
        state = torch.load(latest + ".state", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step, best_step, bad_vals = int(state["step"]), state.get("best_step"), int(state.get("bad_vals", 0))
        best = state.get("best")
        log.info("resumed from %s at step %d", latest, step)

    from .losses import segmentation_loss

    log_path = os.path.join(config.out_dir, "log.csv")
    rows = []
    if step and os.path.exists(log_path):  # drop what was logged after the checkpoint we resume from
        with open(log_path, newline="") as f:
            rows = [r for r in csv.reader(f)][1:]
        rows = [r for r in rows if r and int(r[0]) <= step]
    with open(log_path, "w", newline="") as f:
        csv.writer(f).writerows([["step", "loss", "lr", "val_loss", "val_iou", "seconds"]] + rows)
    writer = _tensorboard(config.out_dir)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="train", unit="step")
    t0, start_step = time.perf_counter(), step
    model.train()
    while step < config.steps:
        rng = np.random.default_rng([config.seed, step])
        raw, target, mask = _batch(train_vols, config, rng, norm, augmenter, voxel_size, from_mask)
        x, t, m = (torch.from_numpy(a).to(device) for a in (raw, target, mask))
        x = x.contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            out = model(x)
        loss = segmentation_loss(out.float(), t, loss=config.loss, mask=m, pos_weight=config.pos_weight,
                                 channels=_loss_channels(config))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        step += 1
        loss_value = loss.item()
        row = [step, loss_value, sched.get_last_lr()[0], "", "", round(time.perf_counter() - t0, 2)]
        elapsed = time.perf_counter() - t0
        stop = config.max_minutes is not None and elapsed > 60 * config.max_minutes
        if config.max_minutes is not None and step - start_step >= 20:
            per_step = elapsed / (step - start_step)
            budget["total"] = min(config.steps, step + max(1, int((60 * config.max_minutes - elapsed) / per_step)))
        checkpoint = step % config.val_every == 0 or step == config.steps or stop
        improved = False
        if checkpoint and val_set:
            val_loss, val_iou = _validate(model, val_set, config, norm, voxel_size, device, from_mask)
            row[3:5] = [val_loss, val_iou]
            score = val_iou if config.target in ("binary", "boundary") else -val_loss
            improved = best is None or score > best
            best, best_step, bad_vals = (score, step, 0) if improved else (best, best_step, bad_vals + 1)
        with open(log_path, "a", newline="") as f:  # the row first: a checkpoint never lacks its log
            csv.writer(f).writerow(row)
        if writer is not None:
            writer.add_scalar("loss", loss_value, step)
            if row[3] != "":
                writer.add_scalar("val_loss", row[3], step)
                writer.add_scalar("val_iou", row[4], step)
        if checkpoint:
            if improved:
                _save(best_path, model, config, norm, voxel_size)
            state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                     "torch_rng": torch.get_rng_state(), "best": best, "best_step": best_step, "bad_vals": bad_vals}
            _save(latest, model, config, norm, voxel_size, {"state": state})
            if config.early_stopping and bad_vals >= config.early_stopping:
                stop = True
        if bar is not None:
            bar.set_postfix(loss=f"{loss_value:.4f}", **({"val_iou": f"{row[4]:.3f}"} if row[4] != "" else {}))
            bar.update(1)
        if stop:
            break
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - t0
    done = step - start_step
    return TrainResult(step, seconds, best, best_step, latest, best_path if os.path.exists(best_path) else None,
                       done * config.batch_size / max(seconds, 1e-9))


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
