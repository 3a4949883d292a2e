"""Run a network on one region: padding to the network's valid shape, optional sliding-window
tiles with Gaussian blending, test-time augmentation and ensembles. numpy in, numpy out."""

from __future__ import annotations

import itertools
import logging

import numpy as np

from ..blockwise.geometry import ceil_to

from .config import PredictConfig

__all__ = ["predict_region", "check_tile_shape", "tta_transforms", "gaussian_weights"]
log = logging.getLogger(__name__)


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


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_tile_shape(tile_shape, volume_ndim, model_ndim, divisor, halo=None, overlap=0.25):
    """Validate sliding-window tiles against the network; returns them with one entry per model axis.

    Parameters
    ----------
    tile_shape : sequence of int or None
        None: no tiles (only ``overlap`` is checked). A 2D model on a 3D stack takes ``(y, x)``, or
        ``(1, y, x)`` (the 1 is dropped: the model sees one section at a time).
    volume_ndim, model_ndim : int
        Spatial dimensions of the volume and of the model.
    divisor, halo : sequence of int
        The network's input divisor and the context it needs on each side (its receptive-field
        halo, or the halo the blocks are read with); one entry per model axis, or per volume axis
        (the leading ones are then ignored). A tile is read with ``halo`` of context on each inner
        side, so each entry must be a multiple of the divisor and at least ``2 halo + divisor``.
    overlap : float in [0, 1)
        Fraction of a tile shared with its neighbour (at least ``2 halo`` voxels are always shared).

    Returns
    -------
    tuple of int (``model_ndim`` entries) or None

    Raises
    ------
    ValueError
        Naming ``tile_shape``, what is wrong and the nearest valid shape.

    Examples
    --------
    >>> check_tile_shape((1, 256, 256), 3, 2, (16, 16), (24, 24))
    (256, 256)
    >>> check_tile_shape((1, 100, 100), 3, 2, (16, 16), (24, 24))
    Traceback (most recent call last):
    ...
    ValueError: tile_shape (1, 100, 100): 100 is not a multiple of the network's input divisor 16 along axis y; use (1, 112, 112)
    >>> check_tile_shape((1, 8, 8), 3, 3, (1, 8, 8), (1, 24, 24))
    Traceback (most recent call last):
    ...
    ValueError: tile_shape (1, 8, 8): a tile is read with the halo (1, 24, 24) (z,y,x) as context on each side, so each entry must be at least 2 x halo + divisor (most of a smaller tile is context, and tiles multiply); use (3, 56, 56) or larger
    """
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float, np.number)) or not 0 <= overlap < 1:
        raise ValueError(f"overlap={overlap!r} must be a fraction in [0, 1) of each tile shared with its neighbour")
    if tile_shape is None:
        return None
    given = tuple(tile_shape) if np.ndim(tile_shape) else (tile_shape,)
    if not all(_is_int(t) and t > 0 for t in given):
        raise ValueError(f"tile_shape {given} must hold positive integers (one per axis: {'zyx'[-model_ndim:]})")
    tile = given
    axes = "zyx"[-model_ndim:]
    if len(tile) == volume_ndim == model_ndim + 1:
        if tile[0] != 1:
            raise ValueError(f"tile_shape {given}: the {model_ndim}D model predicts one section at a time, so a tile "
                             f"spans one section; give {','.join(axes)} (e.g. {','.join(map(str, tile[1:]))})")
        tile = tile[1:]
    if len(tile) != model_ndim:
        raise ValueError(f"tile_shape {given} must have {model_ndim} entries ({','.join(axes)}) for a {model_ndim}D "
                         f"model on a {volume_ndim}D volume")
    div = tuple(int(d) for d in divisor)[-model_ndim:]
    hal = (0,) * model_ndim if halo is None else halo if np.ndim(halo) else (halo,) * model_ndim
    hal = tuple(int(h) for h in hal)[-model_ndim:]
    tile = tuple(int(t) for t in tile)
    lead = (1,) * (len(given) - len(tile))
    bad_div = [a for a, (t, d) in enumerate(zip(tile, div)) if t % d]
    if bad_div:
        a = bad_div[0]
        fix = tuple(max(ceil_to(t, d), ceil_to(2 * h + d, d)) for t, d, h in zip(tile, div, hal))
        raise ValueError(f"tile_shape {given}: {tile[a]} is not a multiple of the network's input divisor {div[a]} "
                         f"along axis {axes[a]}; use {_fmt(lead + fix)}")
    small = [a for a, (t, d, h) in enumerate(zip(tile, div, hal)) if t < 2 * h + d]
    if small:
        fix = tuple(max(t, ceil_to(2 * h + d, d)) for t, d, h in zip(tile, div, hal))
        raise ValueError(f"tile_shape {given}: a tile is read with the halo {_fmt(hal)} ({','.join(axes)}) as "
                         "context on each side, so each entry must be at least 2 x halo + divisor (most of a smaller tile is "
                         f"context, and tiles multiply); use {_fmt(lead + fix)} or larger")
    kept = float(np.prod([(t - 2 * h) / t for t, h in zip(tile, hal)]))
    if kept < 0.25:
        log.warning("tile_shape %s with halo %s: only %.0f%% of each tile is kept, the rest is context; "
                    "larger tiles (or a smaller halo) are faster", _fmt(given), _fmt(hal), 100 * kept)
    return tile


def _fmt(shape):
    return f"({', '.join(str(int(v)) for v in shape)})" if len(shape) != 1 else f"{int(shape[0])}"


def _stop(should_stop):
    if should_stop is not None and should_stop():
        raise KeyboardInterrupt("prediction stopped")


def _forward_padded(fn, image, divisor, batch_size, should_stop=None):
    """``image``: (N, C, *spatial). Zero-pads the far end of each axis to a multiple of ``divisor``
    (as a whole-volume forward pass does), runs ``fn`` in batches and crops back."""
    spatial = image.shape[2:]
    pad = [(0, 0), (0, 0)] + [(0, (-n) % d) for n, d in zip(spatial, divisor)]
    x = np.pad(image, pad) if any(p[1] for p in pad) else image
    outs = []
    for i in range(0, len(x), batch_size):
        _stop(should_stop)
        outs.append(np.asarray(fn(x[i:i + batch_size])))
    out = np.concatenate(outs) if len(outs) > 1 else outs[0]
    return out[(slice(None), slice(None)) + tuple(slice(0, n) for n in spatial)]


def _tiles_1d(n, t, d, h, overlap):
    """Tiles along one axis of length ``n``: ``(start, stop, keep_start, keep_stop)``. Starts are
    multiples of ``d`` (the pooling grid of a whole-region pass); a tile's values are kept only at
    least ``h`` from its inner edges, where the network saw all the context it needs; consecutive
    kept parts overlap, so every voxel is kept by at least one tile. The last tile ends at ``n``."""
    if t >= n:
        return [(0, n, 0, n)]
    step = max(d, min(int(t * (1 - overlap)) // d * d, (t - 2 * h) // d * d))
    last = (n - t) // d * d
    starts = list(range(0, last + 1, step))
    if starts[-1] != last:
        starts.append(last)
    out = []
    for i, s in enumerate(starts):
        e = n if i == len(starts) - 1 else s + t
        out.append((s, e, s if s == 0 else s + h, e if e == n else e - h))
    return out


def _tiled(fn, image, tile_shape, overlap, divisor, halo, batch_size, should_stop=None):
    """Sliding window over (N, C, *spatial): each tile keeps its values at least ``halo`` from its
    inner edges, blended with Gaussian weights where the kept parts of neighbours overlap. With a
    halo that covers the network's receptive field this equals a whole-region pass up to rounding."""
    spatial = image.shape[2:]
    if all(t >= n for t, n in zip(tile_shape, spatial)):
        return _forward_padded(fn, image, divisor, batch_size, should_stop)
    per_axis = [_tiles_1d(n, t, d, h, overlap) for n, t, d, h in zip(spatial, tile_shape, divisor, halo)]
    weights = {}
    acc = norm = None
    lead = (slice(None), slice(None))
    for tiles in itertools.product(*per_axis):
        _stop(should_stop)
        read = tuple(slice(s, e) for s, e, _, _ in tiles)
        pred = _forward_padded(fn, image[lead + read], divisor, batch_size, should_stop)
        shape = tuple(e - s for s, e, _, _ in tiles)
        if shape not in weights:
            weights[shape] = gaussian_weights(shape)
        keep = tuple(slice(ks - s, ke - s) for s, e, ks, ke in tiles)
        dest = tuple(slice(ks, ke) for _, _, ks, ke in tiles)
        if acc is None:
            acc = np.zeros(pred.shape[:2] + spatial, np.float32)
            norm = np.zeros(spatial, np.float32)
        w = weights[shape][keep]
        acc[lead + dest] += pred[lead + keep] * w
        norm[dest] += w
    return acc / norm


def predict_region(fns, raw, *, spatial_ndim, divisor, halo=None, voxel_size=None, config=None,
                   should_stop=None):
    """Predict one region with one or several models (an ensemble).

    Parameters
    ----------
    fns : list of callables
        Each maps a float32 batch (N, C_in, *spatial) to (N, C_out, *spatial).
    raw : ndarray
        Normalised input, (C_in, *spatial) for a model of ``spatial_ndim`` dimensions, or
        (C_in, Z, Y, X) for a 2D model (``spatial_ndim=2``), which is run section by section.
    divisor : tuple
        The network's input divisor, one entry per model axis.
    halo : tuple, optional
        Context each tile needs (default 0: tiles blended over their whole extent); pass the
        network's halo and tiles equal the whole-region pass up to rounding.
    voxel_size : tuple, optional
        Which axes are isotropic, for ``tta="d4"``.
    config : PredictConfig, optional
        Its ``tile_shape`` (sliding-window tiles, checked by :func:`check_tile_shape`; None runs the
        whole region at once, exactly: equal to a whole-volume forward pass away from the region's
        border; tiles start on the divisor grid and keep only their values at least ``halo`` from
        their inner edges, blended with Gaussian weights where kept parts overlap), ``overlap``,
        ``tta`` and ``tta_reduce``, ``ensemble_reduce`` and ``batch_size``; its other fields are
        not used here.
    should_stop : callable, optional
        Called before every batch, tile, test-time augmentation and model; when it returns True
        the prediction stops with KeyboardInterrupt (so Ctrl-C lands within one tile's time).

    Returns
    -------
    ndarray (C_out, *raw spatial shape), float32

    Examples
    --------
    >>> double = lambda x: 2 * x
    >>> raw = np.ones((1, 6, 6), np.float32)
    >>> out = predict_region([double], raw, spatial_ndim=2, divisor=(1, 1),
    ...                      config=PredictConfig(tile_shape=(4, 4), tta="flips"))
    >>> out.shape, float(out.min()), float(out.max())
    ((1, 6, 6), 2.0, 2.0)
    """
    config = PredictConfig() if config is None else config
    if not isinstance(config, PredictConfig):
        raise TypeError(f"config must be a PredictConfig; got {type(config).__name__}")
    overlap, tta, batch_size = config.overlap, config.tta, config.batch_size
    divisor = tuple(int(d) for d in divisor)[-spatial_ndim:]
    halo = (0,) * spatial_ndim if halo is None else tuple(int(h) for h in halo)[-spatial_ndim:]
    tile_shape = check_tile_shape(config.tile_shape, raw.ndim - 1, spatial_ndim, divisor, halo, overlap)
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
            _stop(should_stop)
            x = image
            if flips:
                x = np.flip(x, axis=[2 + a for a in flips])
            x = np.ascontiguousarray(np.transpose(x, [0, 1] + [2 + p for p in perm]))
            div = tuple(divisor[p] for p in perm)
            tiles = tuple(tile_shape[p] for p in perm) if tile_shape is not None else None
            y = (_forward_padded(fn, x, div, batch_size, should_stop) if tiles is None
                 else _tiled(fn, x, tiles, overlap, div, tuple(halo[p] for p in perm), batch_size, should_stop))
            y = np.transpose(y, [0, 1] + [2 + perm.index(a) for a in range(spatial_ndim)])  # undo permutation
            if flips:
                y = np.flip(y, axis=[2 + a for a in flips])
            preds.append(np.ascontiguousarray(y))
        if len(preds) == 1:
            per_model.append(preds[0])
        else:
            per_model.append(_reduce(preds, config.tta_reduce))
    out = per_model[0] if len(per_model) == 1 else _reduce(per_model, config.ensemble_reduce)
    out = out.astype(np.float32, copy=False)
    return np.moveaxis(out, 0, 1) if sections else out[0]


def _reduce(preds, how):
    """The mean (in float64) or the median of equally shaped predictions."""
    stack = np.stack(preds)
    return stack.mean(0, dtype=np.float64) if how == "mean" else np.median(stack, axis=0)
