"""What every training target shares: the :class:`Target` pair, the checks of labels and options,
voxel sizes as sampling, contours along chosen axes, and channels stacked into float32.

The targets themselves: :mod:`emseg.train.targets` (which imports them all from their modules).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

__all__ = ["Target"]


class Target(NamedTuple):
    """A training target and where it is valid: two float32 arrays of shape ``(C, *labels.shape)``."""

    target: np.ndarray
    mask: np.ndarray


def _check_labels(labels, ignore_label, name="labels"):
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.view(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must be an integer (or bool) array with 0 = background; got dtype "
                        f"{labels.dtype}. Convert whole-valued data with {name}.astype(np.uint32)")
    if labels.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2D (y, x) or 3D (z, y, x); got shape {labels.shape}")
    if ignore_label is not None and (isinstance(ignore_label, bool)
                                     or not np.issubdtype(type(ignore_label), np.integer)):
        raise TypeError(f"ignore_label must be an integer or None; got {ignore_label!r}")
    ignored = None if ignore_label is None else labels == ignore_label
    if labels.dtype.kind == "i" and labels.size:
        low = labels.min() if ignored is None else np.where(ignored, 0, labels).min()
        if low < 0:
            raise ValueError(f"{name} must be >= 0 (0 = background); got {low}. "
                             "Negative values are allowed only as ignore_label")
    return labels, ignored


def _options(value, name, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _sampling(voxel_size, ndim):
    if voxel_size is None:
        return (1.0,) * ndim
    vs = tuple(float(v) for v in np.ravel(voxel_size))
    if len(vs) != ndim or not all(np.isfinite(v) and v > 0 for v in vs):
        raise ValueError(f"voxel_size must hold {ndim} positive numbers (one per axis, zyx); got {voxel_size!r}")
    return vs


def _section_axes(ndim, per_section, voxel_size):
    """Axes along which contours are looked for: all, or y and x only for per-section 3D contours."""
    vs = None if voxel_size is None else _sampling(voxel_size, ndim)
    if per_section is None:
        per_section = ndim == 3 and vs is not None and vs[0] >= 2 * max(vs[1:])
    return tuple(range(1, ndim)) if per_section and ndim == 3 else tuple(range(ndim))


def _cross(ndim, axes):
    """Face-neighbour structuring element restricted to ``axes``."""
    cross = np.zeros((3,) * ndim, bool)
    for ax in axes:
        cross[tuple(slice(None) if a == ax else 1 for a in range(ndim))] = True
    return cross


def _contour(labels, ignored, width, mode, axes):
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be an integer >= 1 (contour thickness in voxels); got {width!r}")
    _options(mode, "mode", ("inner", "thick"))
    edge = np.zeros(labels.shape, bool)  # voxels with a face neighbour of another label
    for ax in axes:
        lo, hi = [slice(None)] * labels.ndim, [slice(None)] * labels.ndim
        lo[ax], hi[ax] = slice(None, -1), slice(1, None)
        change = labels[tuple(lo)] != labels[tuple(hi)]
        edge[tuple(lo)] |= change
        edge[tuple(hi)] |= change
    cross = _cross(labels.ndim, axes)
    if width > 1:  # within city-block distance `width` of another label
        edge = ndimage.binary_dilation(edge, cross, iterations=width - 1)
    if mode == "inner":
        edge &= labels > 0
    valid = np.ones(labels.shape, bool)
    if ignored is not None:
        valid = ~ndimage.binary_dilation(ignored, cross, iterations=width)
        edge &= valid
    return edge, valid


def _stack(shape, targets, masks):
    """Channels-first float32 target and mask from per-channel arrays (or scalars)."""
    out = Target(np.empty((len(targets), *shape), np.float32), np.empty((len(masks), *shape), np.float32))
    for c, (t, m) in enumerate(zip(targets, masks)):
        out.target[c], out.mask[c] = t, m
    return out
