"""What a training run learns from: the volumes of a config, their validation patches, the
normalisation and augmentation, and each step's batch of patches with their targets.

A batch depends only on the generator it is drawn from; the trainer seeds one by ``(seed, step)``
(:mod:`emseg.train.loop`), so every step's batch is the same in a resumed run.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..normalization import Normalization, fit_normalization
from ..tasks import get_task
from .config import TrainConfig
from .patches import load_train_volume, sample_patch, validation_patches
from .sparse import UNKNOWN, Known, is_sparse

__all__ = ["TrainingData", "Batch", "load_training_data", "draw_batch", "make_target", "channels_first"]


class TrainingData(NamedTuple):
    """The training volumes of a config and what every step uses with them."""

    volumes: list
    """The :class:`~emseg.train.patches.TrainVolume` of each raw/labels pair (their training regions)."""
    validation: list
    """The fixed validation patches (:class:`~emseg.train.patches.Patch`) of every validation region; may be empty."""
    voxel_size: list | None
    """nm per axis (zyx), from the config or the first raw volume; None when unknown."""
    from_mask: bool
    """The labels are semantic masks of an instance task: targets take their connected components."""
    normalization: Normalization
    """Fitted on the first training volume; stored in every checkpoint."""
    augmenter: object
    """The :class:`~emseg.train.augment.Augmenter` of ``config.augment``, or None."""
    unlabelled: object = None
    """Semi-supervised runs: the :class:`~emseg.train.semi.Unlabelled` sources and views; else None."""


class Batch(NamedTuple):
    """One step's inputs, channels first: ``raw`` (N, 1, ...) (N, 2k+1, y, x for 2.5D), ``target`` and ``mask``
    (N, C, ...), float32."""

    raw: np.ndarray
    target: np.ndarray
    mask: np.ndarray


def make_target(labels: np.ndarray, config: TrainConfig, voxel_size=None, from_mask=False):
    """(target, mask) channels-first float32 arrays for ``labels`` under the config's task (:mod:`emseg.tasks`).

    ``from_mask``: the labels are a semantic mask (0/1, 0/255); instance targets (bc, bcd, sdt) then
    take its connected components as the instances. With sparse labels (:mod:`emseg.train.sparse`)
    the patches' unknown voxels hold :data:`~emseg.train.sparse.UNKNOWN`: no loss there, nor on
    contours and affinities that touch them.
    """
    task = get_task(config.target)
    if voxel_size is not None:
        voxel_size = list(voxel_size)[-labels.ndim:]
    ignore = UNKNOWN if is_sparse(config) else config.ignore_label
    if task.instances and from_mask:
        from scipy import ndimage

        ignored = None if ignore is None else labels == ignore
        labels = ndimage.label((labels > 0) if ignored is None else (labels > 0) & ~ignored)[0]
        if ignored is not None and ignored.any():
            labels = labels.astype(np.int64)
            labels[ignored] = ignore
    return task.target(labels, config.task_params, voxel_size, ignore)


def load_training_data(config: TrainConfig) -> TrainingData:
    """Open and split every raw/labels pair of ``config``, fit the normalisation, build the augmenter.

    Raises
    ------
    ValueError
        Bad data: see :func:`~emseg.train.patches.load_train_volume`; raw whose normalisation is
        not finite (NaN/Inf voxels); a patch larger than a validation region.
    """
    train_vols, val_vols, val_of = [], [], []
    for i, (r, lab) in enumerate(zip(config.raw, config.labels)):
        known = Known(config.sections, config.label_mask[i] if config.label_mask else None, config.ignore_label,
                      config.background_label) if is_sparse(config) else None
        tv, vv = load_train_volume(r, lab, val_fraction=config.val_fraction, val_roi=config.val_roi,
                                   seed=config.seed + i, known=known)
        train_vols.append(tv)
        val_of.append(vv)
        if vv is not None:
            val_vols.append(vv)
    first = config.raw[0] if config.raw else config.unlabelled[0]  # no labels: adapting to unlabelled volumes
    voxel_size = list(config.voxel_size) if config.voxel_size else _voxel_size(first)
    values = [v.values | (vv.values if vv is not None else frozenset()) for v, vv in zip(train_vols, val_of)]
    from_mask = bool(train_vols) and get_task(config.target).instances and all(len(v) <= 2 for v in values)
    if train_vols:
        norm = fit_normalization(train_vols[0].raw, config.normalization)
    else:
        from ..io import open_volume

        with open_volume(first) as vol:
            norm = fit_normalization(vol, config.normalization)
    if not (math.isfinite(norm.low) and math.isfinite(norm.high)):
        raise ValueError(f"raw {first}: the {config.normalization} normalization of its voxels is "
                         f"{norm.low}..{norm.high}: the raw holds NaN/Inf values; fix the data")
    from .augment import build_augmenter

    # an unknown voxel size is taken as isotropic: every axis may then be flipped and swapped
    augmenter = build_augmenter(config.augment, voxel_size, config.seed, ndim=len(config.patch_shape))
    val_set = [p for v in val_vols
               for p in validation_patches(v, config.patch_shape, config.val_patches, config.seed, config.context)]
    data = TrainingData(train_vols, val_set, voxel_size, from_mask, norm, augmenter)
    from .semi import load_unlabelled

    return data._replace(unlabelled=load_unlabelled(config, data))


def draw_batch(data: TrainingData, config: TrainConfig, rng) -> Batch:
    """``config.batch_size`` patches drawn with ``rng``: sampled, normalised, augmented, with their targets."""
    raws, targets, masks = [], [], []
    for _ in range(config.batch_size):
        raw, lab = sample_patch(data.volumes, config.patch_shape, rng, config.foreground_fraction, config.context)
        raw = data.normalization(raw)
        if data.augmenter is not None:
            raw, lab = data.augmenter(raw, lab, rng=rng)
        target, mask = make_target(np.asarray(lab), config, data.voxel_size, data.from_mask)
        raws.append(channels_first(raw, config))
        targets.append(target)
        masks.append(mask)
    return Batch(np.stack(raws), np.stack(targets), np.stack(masks))


def channels_first(raw, config) -> np.ndarray:
    """A patch's raw with its channel axis: (1, ...) for one section or volume, as is for a 2.5D patch
    (``config.context``: its 2k+1 sections are the channels already)."""
    return raw if config.context else raw[None]


def _voxel_size(path):
    from ..io import open_volume

    with open_volume(path) as vol:
        return list(vol.voxel_size) if vol.voxel_size else None
