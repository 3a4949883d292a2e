"""Training data: volumes with a train/validation split by region and seeded patch sampling (uniform or
foreground-weighted) from any lazy volume. Normalisation: :mod:`emseg.normalization`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .sparse import Known, known_labels, scan_known

__all__ = ["TrainVolume", "TrainSplit", "Regions", "Patch", "load_train_volume", "sample_patch",
           "validation_patches", "split_region", "read_raw"]


class Regions(NamedTuple):
    """The training and the validation region of a volume (tuples of slices; ``validation`` may be None)."""

    train: tuple
    validation: tuple | None


class Patch(NamedTuple):
    """A raw patch and its labels, voxel for voxel."""

    raw: np.ndarray
    labels: np.ndarray


def split_region(shape, val_fraction=0.0, val_roi=None) -> Regions:
    """Train and validation regions (tuples of slices) of a volume, split along z (axis 0).

    ``val_roi`` such as ``"140:165"`` (z range) wins over ``val_fraction`` (the last part of z).

    Examples
    --------
    >>> split_region((10, 4, 4), val_roi="8:10").validation
    (slice(8, 10, None), slice(0, 4, None), slice(0, 4, None))
    >>> split_region((10, 4, 4)).validation is None
    True
    """
    full = tuple(slice(0, n) for n in shape)
    if val_roi is not None:
        z0, z1 = (int(v) for v in str(val_roi).split(":"))
        if not 0 <= z0 < z1 <= shape[0]:
            raise ValueError(f"val_roi {val_roi!r} must be a z range inside 0:{shape[0]}")
        if z0 == 0:
            return Regions((slice(z1, shape[0]),) + full[1:], (slice(z0, z1),) + full[1:])
        return Regions((slice(0, z0),) + full[1:], (slice(z0, z1),) + full[1:])
    if not val_fraction:
        return Regions(full, None)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}")
    cut = int(round(shape[0] * (1 - val_fraction)))
    if cut < 1 or cut >= shape[0]:
        raise ValueError(f"val_fraction {val_fraction} leaves no training or no validation z-section of {shape[0]}")
    return Regions((slice(0, cut),) + full[1:], (slice(cut, shape[0]),) + full[1:])


@dataclass(eq=False)
class TrainVolume:
    """One raw/labels pair in memory (or lazy), its training region and foreground coordinates."""

    name: str
    raw: np.ndarray
    labels: np.ndarray
    region: tuple
    foreground: np.ndarray  # (n, ndim) coordinates of foreground voxels inside the region (a sample)
    known: Known | None = None
    """Sparse or partial labels (:mod:`emseg.train.sparse`): which voxels are known; None: all of them."""
    known_coords: np.ndarray | None = None
    """(n, ndim) coordinates of known voxels inside the region (a sample), or None when all are known."""
    values: frozenset = frozenset()
    """Label values seen in the region's known voxels (at most 3: enough to tell a 0/1 mask from ids)."""


class TrainSplit(NamedTuple):
    """A raw/labels pair split for training: its training volume and its validation volume (or None)."""

    train: TrainVolume
    validation: TrainVolume | None


def _check_pair(raw, labels, raw_path, labels_path, sections=None):
    """Refuse raw EM given as labels, and labels or a mask given as raw (a swapped pair trains on noise).

    With ``sections``, only the first of them is looked at (the others' labels are unknown)."""
    from ..probabilities import check_raw_source, sample_stats

    if sections is not None:
        z = min(sections)
        labels = np.asarray(labels[z:z + 1]) if 0 <= z < labels.shape[0] else labels[:0]
    stats = sample_stats(labels, str(labels_path))
    if stats.looks_like_raw_em:
        raise ValueError(f"labels {labels_path} look like raw EM, not labels ({stats.raw_em_reason()}); "
                         "are raw and labels swapped?")
    try:
        check_raw_source(raw, f"raw {raw_path}")
    except ValueError as e:
        raise ValueError(f"{e}; are raw and labels swapped?") from None


def load_train_volume(raw_path, labels_path, *, val_fraction=0.0, val_roi=None, in_memory=None,
                      max_foreground=200_000, seed=0, known: Known | None = None) -> TrainSplit:
    """Open a raw/labels pair and split it into a :class:`TrainSplit` (``train``, ``validation`` or None).

    ``in_memory=None`` reads volumes under 2 GiB into memory and samples larger ones lazily from
    disk (each patch reads only its chunks). Sparse or partial labels (:mod:`emseg.train.sparse`):
    ``known`` (a :class:`~emseg.train.sparse.Known` whose ``mask`` is a path, nonzero where labels are
    known) makes every patch's unknown voxels :data:`~emseg.train.sparse.UNKNOWN` and draws patches
    around known voxels. A validation region without known voxels gives no validation volume.
    """
    from ..io import open_volume

    sections = None if known is None else known.sections
    label_mask = None if known is None else known.mask

    raw = open_volume(raw_path)
    labels = open_volume(labels_path)
    if sections is not None:
        bad = [z for z in sections if not 0 <= z < labels.shape[0]]
        if bad:
            raise ValueError(f"sections: {', '.join(map(str, bad))} outside labels {labels_path} "
                             f"({labels.shape[0]} sections, z 0-{labels.shape[0] - 1})")
    _check_pair(raw, labels, raw_path, labels_path, sections)
    if raw.shape != labels.shape:
        raise ValueError(f"labels {labels_path} have shape {labels.shape} but raw {raw_path} has {raw.shape}; "
                         "they must match voxel for voxel")
    mask = None
    if label_mask is not None:
        mask = open_volume(label_mask)
        if mask.shape != labels.shape:
            raise ValueError(f"label_mask {label_mask} has shape {mask.shape} but labels {labels_path} have "
                             f"{labels.shape}; it must match voxel for voxel (nonzero where the labels are known)")
    if in_memory is None:
        in_memory = raw.nbytes + labels.nbytes < 2 * 2**30
    raw_a = raw[...] if in_memory else raw
    lab_a = labels[...] if in_memory and sections is None else labels  # sparse sections: only they are read
    if mask is not None and in_memory:
        mask = mask[...]
    if known is not None:
        known = Known(None if sections is None else tuple(sorted(set(sections))), mask, known.ignore_label,
                      known.background_label)
    if in_memory:
        _check_finite(raw_a, f"raw {raw_path}")
    train_roi, val_roi_ = split_region(raw.shape, val_fraction, val_roi)
    rng = np.random.default_rng(seed)
    empty = []

    def make(roi, name):
        if any(s.stop <= s.start for s in roi):
            raise ValueError(f"{labels_path}: the {name} region {roi} is empty")
        fg, known_coords, values, no_labels = scan_known(lab_a, roi, known or Known(), max_foreground, rng)
        empty.extend(no_labels)
        return TrainVolume(f"{raw_path}[{name}]", raw_a, lab_a, roi, fg, known, known_coords, frozenset(values))

    train = make(train_roi, "train")
    validation = make(val_roi_, "validation") if val_roi_ is not None else None
    if empty:
        raise ValueError(f"sections: {', '.join(map(str, sorted(empty)))} of labels {labels_path} hold no labels "
                         "(all 0); list only annotated sections")
    if train.known_coords is not None and not len(train.known_coords):
        raise ValueError(f"{labels_path}: the training region z {train_roi[0].start}:{train_roi[0].stop} holds no "
                         f"known labels ({_known_text(known)}); label some voxels there or move val_roi")
    if not len(train.foreground):
        raise ValueError(f"{labels_path}: the training region holds no foreground (all labels are 0); "
                         "check the labels file and key")
    if validation is not None and validation.known_coords is not None and not len(validation.known_coords):
        validation = None
    return TrainSplit(train, validation)


def _known_text(known):
    parts = []
    if known.sections is not None:
        parts.append(f"labelled sections {', '.join(map(str, known.sections))}")
    if known.mask is not None:
        parts.append("the label mask")
    if known.ignore_label is not None:
        parts.append(f"ignore_label {known.ignore_label}")
    return "; ".join(parts)


def _check_patch(vol: TrainVolume, patch_shape):
    size = [s.stop - s.start for s in vol.region]
    spatial = size[-len(patch_shape):]
    if any(p > s for p, s in zip(patch_shape, spatial)):
        raise ValueError(f"patch_shape {tuple(patch_shape)} is larger than the region {tuple(spatial)} of "
                         f"{vol.name}; use a patch of at most {tuple(spatial)}")


def read_raw(raw, roi, context=0) -> np.ndarray:
    """``raw[roi]``; with ``context`` k (2.5D: ``roi`` is one section ``z:z+1`` of a volume) the sections
    z-k..z+k as a (2k+1, y, x) array, the volume's first/last section repeated beyond its ends, as
    prediction reads them (the neighbours of a section at the edge of a training region are read
    from the volume: raw only, their labels stay unknown to training).

    Examples
    --------
    >>> vol = np.arange(5)[:, None, None] * np.ones((1, 2, 2), int)
    >>> read_raw(vol, (slice(0, 1), slice(0, 2), slice(0, 2)), context=1)[:, 0, 0].tolist()
    [0, 0, 1]
    >>> read_raw(vol, (slice(3, 4), slice(0, 2), slice(0, 2)), context=2)[:, 0, 0].tolist()
    [1, 2, 3, 4, 4]
    """
    if not context:
        return np.asarray(raw[roi])
    z = roi[0].start
    z0, z1 = max(0, z - context), min(raw.shape[0], z + context + 1)
    block = np.asarray(raw[(slice(z0, z1),) + tuple(roi[1:])])
    return block[np.clip(np.arange(z - context, z + context + 1), z0, z1 - 1) - z0]


def sample_patch(volumes, patch_shape, rng, foreground_fraction=0.5, context=0) -> Patch:
    """Draw one :class:`Patch` (``raw``, ``labels``): a random volume, then a random position inside
    its region, centred on a random foreground voxel with probability ``foreground_fraction``.

    A 2D ``patch_shape`` on 3D volumes draws a patch from one z-section; with ``context`` k (2.5D)
    its raw holds the sections z-k..z+k as channels (:func:`read_raw`), its labels section z alone.
    """
    vol = volumes[int(rng.integers(len(volumes)))]
    _check_patch(vol, patch_shape)
    ndim = len(vol.region)
    if context and ndim != len(patch_shape) + 1:
        raise ValueError(f"context {context} (2.5D) needs a 2D patch_shape on a volume (zyx); {vol.name} has "
                         f"{ndim} axes and patch_shape {tuple(patch_shape)}")
    full = [1] * (ndim - len(patch_shape)) + list(patch_shape)
    lo = np.array([s.start for s in vol.region])
    hi = np.array([s.stop for s in vol.region]) - np.array(full)
    if len(vol.foreground) and rng.random() < foreground_fraction:
        centre = vol.foreground[int(rng.integers(len(vol.foreground)))]
        start = np.clip(centre - np.array(full) // 2, lo, hi)
    elif vol.known_coords is not None:  # sparse labels: around a known voxel, so that the loss has voxels to use
        centre = vol.known_coords[int(rng.integers(len(vol.known_coords)))]
        start = np.clip(centre - np.array(full) // 2, lo, hi)
    else:
        start = np.array([int(rng.integers(a, b + 1)) for a, b in zip(lo, hi)])
    roi = tuple(slice(int(s), int(s) + f) for s, f in zip(start, full))
    raw = read_raw(vol.raw, roi, context)
    lab = np.asarray(vol.labels[roi]) if vol.known is None else known_labels(vol.labels, roi, vol.known)
    _check_finite(raw, f"{vol.name}, patch {_roi_text(roi)}")
    squeeze = tuple(range(ndim - len(patch_shape)))
    if not squeeze:
        return Patch(raw, lab)
    return Patch(raw if context else raw.squeeze(squeeze), lab.squeeze(squeeze))


def _check_finite(raw, where, block_voxels=2**24):
    """ValueError naming ``where`` and the first NaN/Inf voxel of a floating-point ``raw`` (checked in z-slabs)."""
    if raw.dtype.kind not in "fc" or raw.size == 0:
        return
    step = max(1, block_voxels // max(1, raw[0].size))
    for z in range(0, raw.shape[0], step):
        bad = ~np.isfinite(raw[z:z + step])
        if bad.any():
            first = np.unravel_index(int(bad.argmax()), bad.shape)
            first = (first[0] + z,) + tuple(first[1:])
            count = int(bad.sum()) + sum(int((~np.isfinite(raw[k:k + step])).sum())
                                         for k in range(z + step, raw.shape[0], step))
            raise ValueError(f"{where} holds {count} NaN/Inf value(s), the first at index "
                             f"{tuple(int(i) for i in first)}; training needs finite intensities: fix the raw data")


def _roi_text(roi):
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in roi) + "]"


def validation_patches(volume: TrainVolume, patch_shape, n, seed=0, context=0):
    """A fixed, seeded list of ``n`` validation patches (:class:`Patch`; uniform positions in the validation region)."""
    rng = np.random.default_rng(seed)
    return [sample_patch([volume], patch_shape, rng, foreground_fraction=0.5, context=context) for _ in range(n)]
