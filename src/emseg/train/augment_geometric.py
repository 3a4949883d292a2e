"""Geometric augmentation of EM training patches: axis flips and 90° rotations that respect the
voxel size, smooth elastic deformation, in-plane rotation and zoom; and the input handling and
resampling every transform of :mod:`emseg.train.augment` shares.

Conventions (see :mod:`emseg.train.augment`): ``f(raw, labels, rng, **params) -> Patch(raw, labels)``;
labels move exactly like raw (nearest neighbour for integer and bool labels, linear for floats).
"""

import math

import numpy as np

from .patches import Patch

__all__ = ["random_flip_rotate", "elastic", "rotate_scale", "ROTATE90"]

ROTATE90 = (True, False, "yx", "zyx")
"""Values of ``rotate90``: which axes :func:`random_flip_rotate` may permute (see there)."""


# ---------------------------------------------------------------- input handling
def _prepare(raw, labels, rng, ndim, voxel_size=None):
    """Views of raw and labels as (c, z, y, x) (z = 1 in 2D), the rng, and a function undoing it."""
    if not isinstance(raw, np.ndarray) or raw.dtype.kind != "f":
        got = raw.dtype if isinstance(raw, np.ndarray) else type(raw).__name__
        raise TypeError(f"raw must be a floating point ndarray, got {got}; normalise it first, "
                        "e.g. raw.astype(np.float32) / 255")
    if voxel_size is not None:
        if np.ndim(voxel_size) != 1 or len(voxel_size) not in (2, 3) or min(voxel_size) <= 0:
            raise ValueError(f"voxel_size must be 2 or 3 positive numbers (nm, zyx), got {voxel_size!r}")
        if ndim is not None and ndim != len(voxel_size):
            raise ValueError(f"ndim {ndim} disagrees with voxel_size {tuple(voxel_size)}")
        ndim = len(voxel_size)
    ndim = (2 if raw.ndim == 2 else 3) if ndim is None else ndim
    if ndim not in (2, 3) or raw.ndim not in (ndim, ndim + 1):
        raise ValueError(f"raw of shape {raw.shape} does not fit ndim={ndim} spatial axes; expected "
                         "(z, y, x), (c, z, y, x), (y, x) or (c, y, x) (pass ndim=2 for (c, y, x))")
    spatial = raw.shape[raw.ndim - ndim:]
    shape4 = (-1,) + (1,) * (3 - ndim) + spatial
    single = isinstance(labels, np.ndarray)
    labs = [] if labels is None else [labels] if single else list(labels)
    for i, lab in enumerate(labs):
        if (not isinstance(lab, np.ndarray) or lab.ndim not in (ndim, ndim + 1)
                or lab.shape[lab.ndim - ndim:] != spatial):
            what = lab.shape if isinstance(lab, np.ndarray) else type(lab).__name__
            raise ValueError(f"labels[{i}] has shape {what}; expected raw's spatial shape {spatial}, "
                             "optionally after one channel axis")
    if not isinstance(rng, (np.random.Generator, int, np.integer)) or isinstance(rng, bool):
        raise TypeError(f"rng must be a np.random.Generator or an int seed, got {type(rng).__name__}")
    views = [raw.reshape(shape4)] + [lab.reshape(shape4) for lab in labs]

    def back(r, ls):
        out = [np.ascontiguousarray(a).reshape(b.shape) for a, b in zip([r] + list(ls), [raw] + labs)]
        return Patch(out[0], None if labels is None else out[1] if single else out[1:])

    back.ndim = ndim
    return views[0], views[1:], np.random.default_rng(rng), back


def _pair(name, value, low=0.0, high=math.inf):
    """A number v or a (min, max) pair as floats with low <= min <= max <= high."""
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or not all(np.isscalar(v) and np.isreal(v) and not isinstance(v, (bool, str))
                                 for v in pair) \
            or not low <= pair[0] <= pair[1] <= high:
        raise ValueError(f"{name} must be a number or a (min, max) pair with {low} <= min <= max "
                         f"<= {high}; got {value!r}")
    return float(pair[0]), float(pair[1])


def _scalar(name, value, low=0.0, high=math.inf, strict=False):
    """A number with low <= value <= high (low < value if strict)."""
    if not (np.isscalar(value) and np.isreal(value) and not isinstance(value, (bool, str))) \
            or not (low < value if strict else low <= value) or not value <= high:
        bound = f"{'>' if strict else '>='} {low} and <= {high}"
        raise ValueError(f"{name} must be a number {bound}; got {value!r}")
    return float(value)


# ---------------------------------------------------------------- resampling
def _lerp(flat, idx, weights, strides):
    """Multilinear interpolation from a flat array: corners idx + {0, stride} along each axis."""
    if not weights:
        return flat.take(idx)
    lo = _lerp(flat, idx, weights[1:], strides[1:])
    lo += (_lerp(flat, idx + strides[0], weights[1:], strides[1:]) - lo) * weights[0]
    return lo


def _warp(r, labs, coords):
    """Sample (c, z, y, x) arrays at coords (k, z or 1, y, x) along their last k = 2 or 3 axes, edges
    reflected like scipy's mode='reflect': linear for floats (equal to ndimage.map_coordinates with
    order=1), nearest neighbour otherwise. Faster than map_coordinates by padding once, not per voxel."""
    k, spatial = len(coords), r.shape[1:]
    ext = max(max(-float(c.min()), float(c.max()) - (n - 1)) for c, n in zip(coords, spatial[3 - k:]))
    p = max(int(math.ceil(ext)), 0) + 1
    pads = [(0, 0)] * (3 - k) + [(p, p)] * k
    padded = tuple(n + sum(w) for n, w in zip(spatial, pads))
    strides = [padded[1] * padded[2], padded[2], 1]
    idx, near, weights = 0, 0, []
    nearest = any(a.dtype.kind != "f" for a in labs)
    for c, stride in zip(coords, strides[3 - k:]):
        c = c + np.float32(p)  # >= 1
        f = np.floor(c)
        weights.append(c - f)
        idx = idx + f.astype(np.intp) * stride
        if nearest:
            near = near + (weights[-1] >= 0.5) * stride
    if k == 2:
        idx = idx + (np.arange(spatial[0]) * strides[0])[:, None, None]
    idx = np.broadcast_to(idx, spatial)
    out = []
    for a in [r] + labs:
        b = np.empty_like(a)
        for ch in range(a.shape[0]):
            flat = np.pad(a[ch], pads, mode="symmetric").ravel()
            if a.dtype.kind == "f":
                b[ch] = _lerp(flat, idx, weights, strides[3 - k:])
            else:
                b[ch] = flat.take(idx + near)
        out.append(b)
    return out[0], out[1:]


def _affine_yx(shape, angle, scale, shift=(0.0, 0.0)):
    """In-plane sampling coordinates (2, y, x): rotate by angle (rad) and zoom by scale about the
    centre, then translate by shift (output = input moved by shift)."""
    c = (np.asarray(shape, float) - 1) / 2
    y, x = np.meshgrid(np.arange(shape[0]) - c[0] - shift[0], np.arange(shape[1]) - c[1] - shift[1],
                       indexing="ij", sparse=True)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    yx = np.broadcast_arrays(c[0] + cos * y - sin * x, c[1] + sin * y + cos * x)
    return np.stack(yx).astype(np.float32)


# ---------------------------------------------------------------- geometric
def random_flip_rotate(raw, labels, rng, voxel_size=None, *, flip=True, rotate90=True, ndim=None):
    """Random flip of every spatial axis and permutation of axes with equal voxel size and length.

    This draws uniformly from the symmetries of the patch: for ``voxel_size=(30, 6, 6)`` and a square
    yx the 16 flips and in-plane 90° rotations (z is never swapped); for isotropic cubes all 48.
    Axes of unequal length are never swapped, so a non-square yx gets flips only.

    Parameters
    ----------
    voxel_size : tuple of float, optional
        nm per spatial axis; default: y and x equal, z different (serial-section EM).
    flip : bool
        Flip each spatial axis with probability 1/2; False: never flip.
    rotate90 : {True, False, "yx", "zyx"}
        Which axes may be swapped (90° rotations, transposes), always only among axes of equal
        length: True, axes of equal voxel size (in-plane on anisotropic voxels, every axis on
        isotropic ones); ``"yx"``, y and x only, also on isotropic voxels; ``"zyx"``, every
        axis, refused on anisotropic voxels (it would mix z with y/x); False, none.

    Raises
    ------
    ValueError
        For ``rotate90="zyx"`` on anisotropic voxels (or without ``voxel_size``), or a
        ``rotate90`` or ``flip`` that is not one of the values above.

    Notes
    -----
    The same random numbers are drawn whatever ``flip`` says, and whatever ``rotate90`` says
    between True, "zyx" and False: switching one off leaves the other's draws unchanged.

    Examples
    --------
    >>> raw = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    >>> out, lab = random_flip_rotate(raw, raw.astype(int), np.random.default_rng(0), (8, 8, 8))
    >>> out.shape, sorted(out.ravel().tolist()) == list(range(8)), bool((out == lab).all())
    ((2, 2, 2), True, True)
    >>> random_flip_rotate(raw, None, 0, (30, 6, 6), rotate90="zyx")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: rotate90='zyx' swaps every pair of axes, but voxel_size (30.0, 6.0, 6.0) is anisotropic: ...
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim, voxel_size)
    if not isinstance(flip, (bool, np.bool_)):
        raise ValueError(f"flip must be True or False, got {flip!r}")
    if not (isinstance(rotate90, (bool, np.bool_)) or rotate90 in ROTATE90[2:]):
        raise ValueError(f"rotate90 must be one of {ROTATE90}, got {rotate90!r}")
    axes = list(range(4 - back.ndim, 4))
    vs = (None, "z", "yx", "yx") if voxel_size is None else \
        (None,) * (4 - len(voxel_size)) + tuple(round(float(v), 6) for v in voxel_size)
    if rotate90 == "zyx" and len({vs[a] for a in axes}) > 1:
        given = "None (z taken as different)" if voxel_size is None else tuple(float(v) for v in voxel_size)
        raise ValueError(f"rotate90='zyx' swaps every pair of axes, but voxel_size {given} is anisotropic: it "
                         "would mix axes of different resolution; use rotate90=True, which swaps only axes of "
                         "equal voxel size")
    if rotate90 == "yx":
        vs = (None, "z") + vs[2:]  # z in a group of its own
    perm, flips = [0, 1, 2, 3], rng.random(4) < 0.5
    for key in dict.fromkeys((vs[a], r.shape[a]) for a in axes):
        group = [a for a in axes if (vs[a], r.shape[a]) == key]
        for a, b in zip(group, rng.permutation(group)):
            perm[a] = int(b)
    perm = perm if rotate90 else [0, 1, 2, 3]
    index = tuple(slice(None, None, -1) if flip and flips[a] and a in axes else slice(None) for a in range(4))
    return back(r.transpose(perm)[index], [lab.transpose(perm)[index] for lab in labs])


def elastic(raw, labels, rng, alpha_nm, sigma_nm, voxel_size):
    """Smooth random deformation; in-plane (y, x) only when z has a different voxel size.

    The displacement along each moved axis is Gaussian-smoothed white noise (a sum of Gaussian
    bumps of width ``sigma_nm`` with random weights), scaled to a root-mean-square of ``alpha_nm``.

    Parameters
    ----------
    alpha_nm : float
        RMS displacement per moved axis, nm (>= 0).
    sigma_nm : float
        Smoothness (correlation length) of the field, nm (> 0).
    voxel_size : tuple of float
        nm per spatial axis; also gives the number of spatial axes.

    Examples
    --------
    >>> raw = np.random.default_rng(0).random((4, 16, 16), dtype=np.float32)
    >>> out, _ = elastic(raw, None, np.random.default_rng(1), 12, 60, (30, 6, 6))
    >>> out.shape, out.dtype, bool(np.abs(out - raw).max() > 0)
    ((4, 16, 16), dtype('float32'), True)
    """
    r, labs, rng, back = _prepare(raw, labels, rng, None, voxel_size)
    alpha_nm, sigma_nm = _scalar("alpha_nm", alpha_nm), _scalar("sigma_nm", sigma_nm, strict=True)
    vs = np.array(((voxel_size[0],) if len(voxel_size) == 3 else (1.0,)) + tuple(voxel_size[-2:]), float)
    moved = [a for a in (0, 1, 2) if np.isclose(vs[a], vs[1]) and not (a == 0 and len(voxel_size) == 2)]
    weights = []  # per axis: Gaussian bumps every sigma, from 2 sigma outside the patch
    for n, s in zip(r.shape[1:], sigma_nm / vs):
        s = max(s, 0.5)
        centres = np.arange(-2 * s, n - 1 + 2 * s + 1e-9, s) if n > 1 else np.zeros(1)
        weights.append(np.exp(-0.5 * ((np.arange(n)[:, None] - centres) / s) ** 2).astype(np.float32))
    coords = []
    for a in moved:
        field = rng.standard_normal([w.shape[1] for w in weights], dtype=np.float32)
        # separable: ((field . wx) . wy) . wz; the big product by einsum, as OpenBLAS threads thrash
        field = (weights[1] @ (field @ weights[2].T)).reshape(len(field), -1)
        field = np.einsum("zk,kq->zq", weights[0], field).reshape(r.shape[1:])
        rms = float(np.sqrt(np.mean(np.square(field, dtype=np.float64))))
        field *= np.float32(alpha_nm / vs[a] / rms if rms > 0 else 0)
        field += np.arange(r.shape[1 + a], dtype=np.float32).reshape((-1,) + (1,) * (2 - a))
        coords.append(field)
    return back(*_warp(r, labs, np.stack(coords)))


def rotate_scale(raw, labels, rng, max_angle_deg=15.0, scale=(0.9, 1.1), *, ndim=None):
    """In-plane rotation by a uniform angle in ±max_angle_deg and zoom by a uniform factor in scale,
    about the patch centre (edges reflected), the same for every section.

    Examples
    --------
    >>> raw = np.random.default_rng(0).random((2, 16, 16), dtype=np.float32)
    >>> out, _ = rotate_scale(raw, None, np.random.default_rng(0), 0, 1)
    >>> bool(np.allclose(out, raw))
    True
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim)
    max_angle_deg = _scalar("max_angle_deg", max_angle_deg, 0, 180)
    lo, hi = _pair("scale", scale)
    if lo <= 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    angle, s = math.radians(rng.uniform(-max_angle_deg, max_angle_deg)), rng.uniform(lo, hi)
    coords = _affine_yx(r.shape[2:], angle, s)
    return back(*_warp(r, labs, coords[:, None]))
