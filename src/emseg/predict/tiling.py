"""Run a network on one region: padding to the network's valid shape, optional sliding-window
tiles with Gaussian blending, test-time augmentation and ensembles. numpy in, numpy out."""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["predict_region", "tta_transforms", "gaussian_weights"]


def gaussian_weights(tile_shape, sigma_scale=0.125) -> np.ndarray:
    """Blending weights peaking at the tile centre (sigma = ``sigma_scale`` × tile size per axis)."""
    grids = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in tile_shape], indexing="ij")
    w = np.exp(-sum(g**2 / (2 * (max(n * sigma_scale, 1e-3)) ** 2) for g, n in zip(grids, tile_shape)))
    w = w / w.max()
    return np.maximum(w, 1e-3).astype(np.float32)  # never zero: the volume's corners stay defined


def tta_transforms(ndim, voxel_size=None, mode="flips"):
    """The test-time augmentations: ``"flips"`` (every combination of axis flips) or ``"d4"``
    (also 90° rotations/transposes in the yx plane, and of z with y/x only where the voxel size
    is isotropic). Each item is a tuple ``(flip_axes, perm)`` on the spatial axes."""
    axes = range(ndim)
    flips = [tuple(a for a, f in zip(axes, bits) if f) for bits in itertools.product((0, 1), repeat=ndim)]
    if mode == "flips":
        return [(f, tuple(axes)) for f in flips]
    if mode != "d4":
        raise ValueError(f"tta must be None, 'flips' or 'd4'; got {mode!r}")
    vs = list(voxel_size) if voxel_size is not None else [1.0] * ndim
    perms = [p for p in itertools.permutations(axes) if all(vs[i] == vs[j] for i, j in zip(axes, p))]
    return [(f, p) for f in flips for p in perms]


def _forward_padded(fn, image, divisor, batch_size):
    """``image``: (N, C, *spatial). Zero-pads the far end of each axis to a multiple of ``divisor``
    (as a whole-volume forward pass does), runs ``fn`` in batches and crops back."""
    spatial = image.shape[2:]
    pad = [(0, 0), (0, 0)] + [(0, (-n) % d) for n, d in zip(spatial, divisor)]
    x = np.pad(image, pad) if any(p[1] for p in pad) else image
    outs = [np.asarray(fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    out = np.concatenate(outs)
    return out[(slice(None), slice(None)) + tuple(slice(0, n) for n in spatial)]


def _tiled(fn, image, tile_shape, overlap, divisor, batch_size):
    """Sliding window over (N, C, *spatial) with Gaussian-weighted blending of overlapping tiles."""
    spatial = image.shape[2:]
    tile = [min(t, n) for t, n in zip(tile_shape, spatial)]
    starts = []
    for n, t in zip(spatial, tile):
        step = max(1, int(t * (1 - overlap)))
        s = list(range(0, max(n - t, 0) + 1, step))
        if s[-1] != n - t:
            s.append(n - t)
        starts.append(s)
    weight = gaussian_weights(tile)
    acc = norm = None
    for origin in itertools.product(*starts):
        roi = tuple(slice(o, o + t) for o, t in zip(origin, tile))
        pred = _forward_padded(fn, image[(slice(None), slice(None)) + roi], divisor, batch_size)
        if acc is None:
            acc = np.zeros(pred.shape[:2] + spatial, np.float32)
            norm = np.zeros(spatial, np.float32)
        acc[(slice(None), slice(None)) + roi] += pred * weight
        norm[roi] += weight
    return acc / norm


def predict_region(fns, raw, *, spatial_ndim, divisor, tile_shape=None, overlap=0.25, tta=None,
                   tta_reduce="mean", ensemble_reduce="mean", batch_size=4, voxel_size=None):
    """Predict one region with one or several models (an ensemble).

    Parameters
    ----------
    fns : list of callables
        Each maps a float32 batch (N, C_in, *spatial) to (N, C_out, *spatial).
    raw : ndarray
        Normalised input, (C_in, *spatial) for a model of ``spatial_ndim`` dimensions, or
        (C_in, Z, Y, X) for a 2D model (``spatial_ndim=2``), which is run section by section.
    tile_shape : tuple, optional
        Sliding-window tiles blended with Gaussian weights; None runs the whole region at once
        (exact: equal to a whole-volume forward pass away from the region's border).

    Returns
    -------
    ndarray (C_out, *raw spatial shape), float32
    """
    sections = raw.ndim - 1 > spatial_ndim
    if sections:  # a 2D model on a stack: the sections become the batch
        image = np.ascontiguousarray(np.moveaxis(raw, 1, 0))  # (Z, C, Y, X)
    else:
        image = raw[None]
    transforms = tta_transforms(spatial_ndim, voxel_size, tta) if tta else [((), tuple(range(spatial_ndim)))]
    per_model = []
    for fn in fns:
        preds = []
        for flips, perm in transforms:
            x = image
            if flips:
                x = np.flip(x, axis=[2 + a for a in flips])
            x = np.ascontiguousarray(np.transpose(x, [0, 1] + [2 + p for p in perm]))
            div = tuple(divisor[p] for p in perm)
            tiles = tuple(tile_shape[p] for p in perm) if tile_shape is not None else None
            y = (_forward_padded(fn, x, div, batch_size) if tiles is None
                 else _tiled(fn, x, tiles, overlap, div, batch_size))
            y = np.transpose(y, [0, 1] + [2 + perm.index(a) for a in range(spatial_ndim)])  # undo permutation
            if flips:
                y = np.flip(y, axis=[2 + a for a in flips])
            preds.append(np.ascontiguousarray(y))
        stack = np.stack(preds)
        per_model.append(stack.mean(0, dtype=np.float64) if tta_reduce == "mean" else np.median(stack, axis=0))
    stack = np.stack(per_model)
    out = stack.mean(0, dtype=np.float64) if ensemble_reduce == "mean" else stack.max(0)
    out = out.astype(np.float32, copy=False)
    return np.moveaxis(out, 0, 1) if sections else out[0]
