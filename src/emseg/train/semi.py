"""Semi-supervised training on the unlabelled rest of the volume: a mean teacher.

With ``semi: mean_teacher`` every step also draws ``batch_size`` unlabelled patches (uniform over
the training region, labelled or not, or over the ``unlabelled`` raw volumes). The teacher, an
exponential moving average of the student's weights and statistics (Tarvainen & Valpola 2017),
sees a *weak* view (the config's flips and rotations); the student sees a *strong* view of the same
patch (intensity changes, blur, noise, missing parts on top). On the sigmoid channels, voxels where
the teacher is confident (``max(p, 1 - p) >= confidence``) give the student a BCE loss towards
the teacher's decision (a scheduled threshold with ``confidence_start``: it moves linearly from
there to ``confidence`` while the weight ramps up, :func:`confidence_at`); its weight ramps up as ``consistency_weight * exp(-5 (1 - t)^2)`` over
the first ``consistency_rampup`` fraction of the run (Laine & Aila 2017). The labelled patches'
own loss is unchanged; unlabelled patches are drawn from their own generator, so the labelled
batches are those of a supervised run with the same seed.

The teacher is stored in the trainer state (exact resume) and exported as ``teacher.safetensors``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["SEMI", "Unlabelled", "load_unlabelled", "views", "draw_unlabelled", "make_teacher", "ema_update",
           "consistency_loss", "classification_channels", "rampup", "confidence_at"]

SEMI = ("none", "mean_teacher")
_GEOMETRY = ("rotate_scale", "elastic", "misalignment")
_INTENSITY = ("brightness_contrast", "per_section_intensity", "gamma", "gaussian_blur", "low_contrast_section",
              "motion_blur", "gaussian_noise", "missing_parts", "missing_section")
STRONG_P = {"brightness_contrast": 0.8, "gamma": 0.5, "gaussian_blur": 0.3, "gaussian_noise": 0.5,
            "per_section_intensity": 0.3, "low_contrast_section": 0.1, "motion_blur": 0.1, "missing_parts": 0.1,
            "missing_section": 0.0}
"""Probabilities of the strong view's intensity transforms (their magnitudes are the defaults)."""


class Unlabelled(NamedTuple):
    """Where unlabelled patches come from: (raw, region, normalization) per volume, and the two views."""

    volumes: list
    weak: object
    strong: object


def load_unlabelled(config, data) -> Unlabelled | None:
    """The unlabelled sources of ``config`` (None unless ``semi`` is on): the ``unlabelled`` raw volumes
    (each with its own normalisation, fitted on it), else the training volumes' regions."""
    if config.semi == "none" and config.pretrain == "none":
        return None
    from ..io import open_volume
    from ..normalization import fit_normalization

    vols = []
    if config.unlabelled:
        for path in config.unlabelled:
            raw = open_volume(path)
            if len(raw.shape) != 3 and (len(config.patch_shape) == 3 or config.context):
                run = "a 3D run" if len(config.patch_shape) == 3 else f"a 2.5D run (context {config.context})"
                raise ValueError(f"unlabelled {path} has shape {raw.shape}; {run} needs a volume (zyx)")
            raw = raw[...] if raw.nbytes < 2 * 2**30 else raw
            vols.append((raw, tuple(slice(0, n) for n in raw.shape), fit_normalization(raw, config.normalization)))
    else:
        vols = [(v.raw, v.region, data.normalization) for v in data.volumes]
    weak, strong = views(config, data.voxel_size)
    return Unlabelled(vols, weak, strong)


def views(config, voxel_size):
    """The (weak, strong) Augmenters: weak = the config's flips and rotations only; strong = intensity
    transforms (:data:`STRONG_P`) applied after the weak one. ``weak`` is None without augmentation."""
    from .augment import build_augmenter

    ndim = len(config.patch_shape)
    aug = config.augment if isinstance(config.augment, dict) else {}
    off = {n: 0.0 for n in _GEOMETRY + _INTENSITY}
    weak = None if config.augment is False else build_augmenter(
        {**{k: aug[k] for k in ("flip", "rotate90") if k in aug}, **off}, voxel_size, config.seed, ndim=ndim)
    p = dict(STRONG_P)
    if ndim == 2:
        p["per_section_intensity"] = p["low_contrast_section"] = 0.0  # section defects of a volume
    strong = build_augmenter({"flip": False, "rotate90": False, **off, **p}, voxel_size, config.seed, ndim=ndim)
    return weak, strong


def draw_unlabelled(unlabelled: Unlabelled, config, rng, strong=True):
    """``batch_size`` unlabelled patches as (teacher view, student view), float32 (N, 1, ...) (2.5D: N,
    2k+1, y, x); the student view is None when not ``strong``."""
    from .batches import channels_first
    from .patches import read_raw

    teacher, student = [], []
    ndim = len(config.patch_shape)
    for _ in range(config.batch_size):
        raw, region, norm = unlabelled.volumes[int(rng.integers(len(unlabelled.volumes)))]
        full = [1] * (len(region) - ndim) + list(config.patch_shape)
        size = [s.stop - s.start for s in region]
        if any(f > s for f, s in zip(full, size)):
            raise ValueError(f"patch_shape {tuple(config.patch_shape)} is larger than an unlabelled volume's "
                             f"region {tuple(size[-ndim:])}")
        start = [s.start + int(rng.integers(0, n - f + 1)) for s, n, f in zip(region, size, full)]
        patch = read_raw(raw, tuple(slice(a, a + f) for a, f in zip(start, full)), config.context)
        patch = norm(patch if config.context else patch.reshape(patch.shape[len(region) - ndim:]))
        if unlabelled.weak is not None:
            patch = unlabelled.weak(patch, None, rng=rng).raw
        teacher.append(channels_first(patch, config))
        if strong:
            student.append(channels_first(unlabelled.strong(patch, None, rng=rng).raw, config))
    return np.stack(teacher).astype(np.float32), np.stack(student).astype(np.float32) if strong else None


def make_teacher(model):
    """A copy of ``model`` that does not train: the mean teacher, in eval mode."""
    import copy

    teacher = copy.deepcopy(model)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def ema_update(teacher, student, decay) -> None:
    """``teacher = decay * teacher + (1 - decay) * student`` for every floating-point weight and
    statistic; integer buffers (BatchNorm's batch counts) are copied."""
    import torch

    with torch.no_grad():
        s_state = student.state_dict()
        for name, t in teacher.state_dict().items():
            s = s_state[name]
            if t.is_floating_point():
                t.mul_(decay).add_(s.to(t.dtype), alpha=1.0 - decay)
            else:
                t.copy_(s)


def classification_channels(config) -> list:
    """The channels the consistency loss acts on: those trained as probabilities (BCE/Dice) and read
    through a sigmoid; regressed channels (the distance of BCD, SDT, anything trained with MSE/L1) are
    left out, as a pull towards 0/1 would flatten them.

    Examples
    --------
    >>> from emseg.train import TrainConfig
    >>> classification_channels(TrainConfig(target="bcd")), classification_channels(TrainConfig(target="sdt"))
    ([0, 1], [])
    """
    from ..tasks import get_task

    task = get_task(config.target)
    if task.loss is not None:  # a task's own loss (sdt): regression
        return []
    params = config.task_params
    groups = task.channel_losses(params, config.loss)
    probability = ("bce", "dice", "bce_dice")
    if groups:
        chosen = sorted(i for name, idx in groups.items() if name in probability for i in idx)
    else:
        chosen = list(range(task.channels(params))) if config.loss in probability else []
    activations = task.channel_activations(params, config.loss)
    return [i for i in chosen if activations[i] == "sigmoid"]


def rampup(step, total, fraction) -> float:
    """The consistency weight's factor at ``step``: ``exp(-5 (1 - t)^2)``, t = step / (fraction * total) up to 1.

    Examples
    --------
    >>> [round(rampup(s, 100, 0.2), 3) for s in (0, 10, 20, 50)]
    [0.007, 0.287, 1.0, 1.0]
    """
    length = max(1.0, fraction * total)
    t = min(1.0, step / length)
    return float(np.exp(-5.0 * (1.0 - t) ** 2)) if fraction > 0 else 1.0


def confidence_at(step, total, config) -> float:
    """The teacher confidence a voxel needs at ``step`` of ``total``: ``config.confidence``, or with
    ``config.confidence_start`` set, a linear move from it to ``confidence`` over the first
    ``consistency_rampup`` of the run (the part where the consistency weight ramps up).

    Examples
    --------
    >>> from types import SimpleNamespace as C
    >>> [round(confidence_at(s, 100, C(confidence=0.9, confidence_start=0.7, consistency_rampup=0.2)), 3)
    ...  for s in (0, 10, 20, 50)]
    [0.7, 0.8, 0.9, 0.9]
    >>> confidence_at(10, 100, C(confidence=0.8, confidence_start=None, consistency_rampup=0.2))
    0.8
    """
    start = config.confidence_start
    if start is None or config.consistency_rampup <= 0:
        return float(config.confidence)
    t = min(1.0, step / max(1.0, config.consistency_rampup * total))
    return float(start + t * (config.confidence - start))


def consistency_loss(student_logits, teacher_logits, channels, confidence):
    """BCE of the student towards the teacher's decisions on the confident voxels of ``channels``.

    Returns ``(loss, share)``: the mean over confident voxels (0 when there are none) and the share
    of voxels that were confident.
    """
    import torch
    import torch.nn.functional as F

    idx = list(channels)
    p = torch.sigmoid(teacher_logits[:, idx].float())
    confident = (torch.maximum(p, 1 - p) >= confidence).float()
    bce = F.binary_cross_entropy_with_logits(student_logits[:, idx].float(), (p > 0.5).float(), reduction="none")
    n = confident.sum()
    loss = (bce * confident).sum() / n.clamp_min(1.0)
    return loss, float(n) / max(1, confident.numel())
