"""Seeded augmentation of EM training patches: geometry, intensity and serial-section defects.

Every transform is a plain function ``f(raw, labels, rng, **params) -> (raw, labels)``:

- ``raw``: floating point (any normalisation: zero mean/unit std or [0, 1]), shaped ``(z, y, x)``,
  ``(c, z, y, x)``, ``(y, x)`` or ``(c, y, x)``. The number of spatial axes is ``ndim`` (default
  ``len(voxel_size)`` where a transform takes one, else 2 for 2D raw and 3 otherwise, so
  ``(c, y, x)`` needs ``ndim=2``).
- ``labels``: None, one array or a list of arrays (returned the same way), each with raw's spatial
  shape and optionally one leading channel axis. Geometry moves them exactly like raw: integer
  and bool labels by nearest neighbour, float targets by linear interpolation (as raw).
  Direction-dependent targets (affinities, flow) are not re-oriented: compute them afterwards.
- ``rng``: a ``np.random.Generator`` (or an int seed); the only source of randomness.

Inputs are never modified; outputs have the input shapes and dtypes. Photometric and defect
transforms change raw only, except :func:`misalignment` in ``"step"`` mode. Defects follow Lee et
al. (2017), "Superhuman accuracy on the SNEMI3D connectomics challenge", arXiv:1706.00120, and
pytorch_connectomics' augmentors. :class:`Augmenter` composes them with probabilities.
"""

import inspect
import math

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Augmenter", "DEFAULT_P", "random_flip_rotate", "elastic", "rotate_scale", "brightness_contrast",
           "gamma", "gaussian_blur", "gaussian_noise", "per_section_intensity", "missing_section",
           "misalignment", "missing_parts", "low_contrast_section", "motion_blur"]


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
        return out[0], None if labels is None else out[1] if single else out[1:]

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


def _stats(r):
    """Mean and standard deviation (at least 1e-6) as Python floats."""
    return float(r.mean(dtype=np.float64)), max(float(r.std(dtype=np.float64)), 1e-6)


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
def random_flip_rotate(raw, labels, rng, voxel_size=None, *, ndim=None):
    """Random flip of every spatial axis and permutation of axes with equal voxel size and length.

    This draws uniformly from the symmetries of the patch: for ``voxel_size=(30, 6, 6)`` and a square
    yx the 16 flips and in-plane 90° rotations (z is never swapped); for isotropic cubes all 48.
    Axes of unequal length are never swapped, so a non-square yx gets flips only.

    Parameters
    ----------
    voxel_size : tuple of float, optional
        nm per spatial axis; default: y and x equal, z different (serial-section EM).

    Examples
    --------
    >>> raw = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    >>> out, lab = random_flip_rotate(raw, raw.astype(int), np.random.default_rng(0), (8, 8, 8))
    >>> out.shape, sorted(out.ravel().tolist()) == list(range(8)), bool((out == lab).all())
    ((2, 2, 2), True, True)
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim, voxel_size)
    axes = list(range(4 - back.ndim, 4))
    vs = (None, "z", "yx", "yx") if voxel_size is None else \
        (None,) * (4 - len(voxel_size)) + tuple(round(float(v), 6) for v in voxel_size)
    perm, flips = [0, 1, 2, 3], rng.random(4) < 0.5
    for key in dict.fromkeys((vs[a], r.shape[a]) for a in axes):
        group = [a for a in axes if (vs[a], r.shape[a]) == key]
        for a, b in zip(group, rng.permutation(group)):
            perm[a] = int(b)
    index = tuple(slice(None, None, -1) if flips[a] and a in axes else slice(None) for a in range(4))
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


# ---------------------------------------------------------------- photometric (raw only)
def brightness_contrast(raw, labels, rng, brightness=0.1, contrast=0.2, *, ndim=None):
    """Stretch raw about its mean by ``1 + U(-contrast, contrast)`` and shift it by
    ``U(-brightness, brightness)`` times its standard deviation (scale-free: any normalisation).

    Examples
    --------
    >>> raw = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    >>> out, _ = brightness_contrast(raw, None, np.random.default_rng(0))
    >>> out.shape, out.dtype, bool(np.allclose(np.corrcoef(raw.ravel(), out.ravel())[0, 1], 1))
    ((4, 4), dtype('float32'), True)
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim)
    brightness, contrast = _scalar("brightness", brightness), _scalar("contrast", contrast, 0, 1)
    m, s = _stats(r)
    c, b = rng.uniform(1 - contrast, 1 + contrast), rng.uniform(-brightness, brightness) * s
    return back(((r - m) * c + (m + b)).astype(r.dtype), labs)


def gamma(raw, labels, rng, gamma=(0.7, 1.5), *, ndim=None):
    """Gamma correction with a log-uniform exponent: raw is mapped to [0, 1] by its min and max,
    raised to the power and mapped back.

    Examples
    --------
    >>> raw = np.linspace(-1, 1, 9, dtype=np.float32)[None]
    >>> out, _ = gamma(raw, None, np.random.default_rng(0), gamma=2)
    >>> out.astype(float).round(3).tolist()
    [[-1.0, -0.969, -0.875, -0.719, -0.5, -0.219, 0.125, 0.531, 1.0]]
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim)
    lo, hi = _pair("gamma", gamma)
    if lo <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma!r}")
    g = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    a, b = float(r.min()), float(r.max())
    if b <= a:
        return back(r.copy(), labs)
    return back((((r - a) / (b - a)) ** g * (b - a) + a).astype(r.dtype), labs)


def gaussian_blur(raw, labels, rng, sigma=(0.0, 1.5), *, ndim=None):
    """In-plane Gaussian blur, sigma (voxels, >= 0) uniform in the given range.

    Examples
    --------
    >>> raw = np.zeros((5, 5), np.float32); raw[2, 2] = 1
    >>> float(gaussian_blur(raw, None, np.random.default_rng(0), sigma=1)[0].sum().round(4))
    1.0
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim)
    s = rng.uniform(*_pair("sigma", sigma))
    return back(ndi.gaussian_filter(r, (0, 0, s, s), mode="reflect"), labs)


def gaussian_noise(raw, labels, rng, std=(0.0, 0.1), *, ndim=None):
    """Add white Gaussian noise whose std is uniform in the range times raw's std.

    Examples
    --------
    >>> raw = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    >>> out, _ = gaussian_noise(raw, None, np.random.default_rng(0), std=0.1)
    >>> 0.01 < float((out - raw).std()) < 0.05
    True
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim)
    sd = rng.uniform(*_pair("std", std)) * _stats(r)[1]
    return back(r + (sd * rng.standard_normal(r.shape, dtype=np.float32)).astype(r.dtype), labs)


def per_section_intensity(raw, labels, rng, brightness=0.05, contrast=0.1, *, ndim=None):
    """Independent contrast (``1 + U(±contrast)``) and brightness (``U(±brightness)`` x std) per
    z-section, about the global mean, as sections of a serial-section stack differ.

    Examples
    --------
    >>> raw = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
    >>> out, _ = per_section_intensity(raw, None, np.random.default_rng(0))
    >>> [round(float(np.corrcoef(raw[z].ravel(), out[z].ravel())[0, 1]), 6) for z in range(3)]
    [1.0, 1.0, 1.0]
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim)
    brightness, contrast = _scalar("brightness", brightness), _scalar("contrast", contrast, 0, 1)
    m, s = _stats(r)
    n = (1, r.shape[1], 1, 1)
    c = rng.uniform(1 - contrast, 1 + contrast, n).astype(r.dtype)
    b = (m + s * rng.uniform(-brightness, brightness, n)).astype(r.dtype)
    return back((r - r.dtype.type(m)) * c + b, labs)


# ---------------------------------------------------------------- serial-section defects
def missing_section(raw, labels, rng, n_sections=(1, 2), value=0.0, *, ndim=None):
    """Replace 1-``n_sections`` random z-sections (never all) with ``value``; labels untouched, so
    the network learns to bridge the gap. A single section (2D raw) is returned unchanged.

    Examples
    --------
    >>> raw = np.ones((4, 3, 3), np.float32)
    >>> out, _ = missing_section(raw, None, np.random.default_rng(0), n_sections=1)
    >>> out.sum(axis=(1, 2)).tolist()
    [9.0, 9.0, 9.0, 0.0]
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim)
    lo, hi = _pair("n_sections", n_sections, 1)
    value = _scalar("value", value, -math.inf)
    r = r.copy()
    if r.shape[1] > 1:
        k = min(int(rng.integers(int(lo), int(hi) + 1)), r.shape[1] - 1)
        r[:, rng.choice(r.shape[1], k, replace=False)] = value
    return back(r, labs)


def misalignment(raw, labels, rng, max_displacement=8, mode="random", max_rotation_deg=0.0, *,
                 ndim=None):
    """Serial-section misalignment: translate (by integers up to ±max_displacement in y and x, plus
    a rotation up to ±max_rotation_deg if > 0) one random section (``"slip"``) or all sections from
    a random z on (``"step"``); ``"random"`` picks either with equal odds. Edges are reflected.

    In ``"step"`` mode the labels move with raw (the tissue really moved, as pytorch_connectomics
    and Lee et al. 2017 do); in ``"slip"`` mode only raw moves, so the network learns to predict
    the true, aligned geometry across a misregistered section. A single section is left unchanged.

    Examples
    --------
    >>> raw = np.random.default_rng(0).random((4, 16, 16), dtype=np.float32)
    >>> out, _ = misalignment(raw, None, np.random.default_rng(2), mode="step")
    >>> [bool((out[z] == raw[z]).all()) for z in range(4)]
    [True, False, False, False]
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim)
    modes = ("random", "slip", "step")
    if mode not in modes:
        raise ValueError(f"mode must be one of {modes}, got {mode!r}")
    d = int(_scalar("max_displacement", max_displacement))
    max_rotation_deg = _scalar("max_rotation_deg", max_rotation_deg, 0, 180)
    z = r.shape[1]
    if z < 2:
        return back(r.copy(), labs)
    if mode == "random":
        mode = modes[1 + int(rng.integers(2))]
    dy, dx = (int(v) for v in rng.integers(-d, d + 1, 2))
    angle = math.radians(rng.uniform(-max_rotation_deg, max_rotation_deg)) if max_rotation_deg else 0.0
    first = int(rng.integers(1, z)) if mode == "step" else int(rng.integers(z))
    part = slice(first, None if mode == "step" else first + 1)
    arrays = [r] + (labs if mode == "step" else [])
    if angle:
        coords = _affine_yx(r.shape[2:], angle, 1.0, (dy, dx))[:, None]
        moved, moved_labs = _warp(r[:, part], [a[:, part] for a in arrays[1:]], coords)
        moved = [moved] + moved_labs
    else:  # out[y, x] = in[y - dy, x - dx], edges reflected
        y, x = slice(d - dy, d - dy + r.shape[2]), slice(d - dx, d - dx + r.shape[3])
        pads = ((0, 0), (0, 0), (d, d), (d, d))
        moved = [np.pad(a[:, part], pads, mode="symmetric")[:, :, y, x] for a in arrays]
    out = [a.copy() for a in arrays]
    for a, m in zip(out, moved):
        a[:, part] = m
    return back(out[0], out[1:] if mode == "step" else labs)


def _one_section(r, rng):
    r = r.copy()
    return r, int(rng.integers(r.shape[1]))


def missing_parts(raw, labels, rng, width=(4, 16), value=0.0, *, ndim=None):
    """Black stripe: a straight band of ``width`` voxels (uniform in the range), random angle,
    through a random point of one random section, set to ``value`` (a fold or a crack).

    Examples
    --------
    >>> raw = np.ones((32, 32), np.float32)
    >>> out, _ = missing_parts(raw, None, np.random.default_rng(0), width=4)
    >>> 32 * 2 < int((out == 0).sum()) < 32 * 8
    True
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim)
    w, value = rng.uniform(*_pair("width", width)), _scalar("value", value, -math.inf)
    r, z = _one_section(r, rng)
    y0, x0 = rng.uniform(0, r.shape[2]), rng.uniform(0, r.shape[3])
    t = rng.uniform(0, math.pi)
    y, x = np.ogrid[:r.shape[2], :r.shape[3]]
    band = np.abs((y - y0) * math.cos(t) - (x - x0) * math.sin(t)) < w / 2
    r[:, z][:, band] = value
    return back(r, labs)


def low_contrast_section(raw, labels, rng, factor=(0.2, 0.5), *, ndim=None):
    """Shrink one random section's deviations from its mean by ``factor`` (uniform, in (0, 1]).

    Examples
    --------
    >>> raw = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
    >>> out, _ = low_contrast_section(raw, None, np.random.default_rng(0), factor=0.5)
    >>> (out.std(axis=(1, 2)) / raw.std(axis=(1, 2))).round(3).tolist()
    [1.0, 0.5, 1.0]
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim)
    lo, hi = _pair("factor", factor, 0, 1)
    if lo <= 0:
        raise ValueError(f"factor must be in (0, 1], got {factor!r}")
    f = rng.uniform(lo, hi)
    r, z = _one_section(r, rng)
    m = r[:, z].mean(axis=(1, 2), keepdims=True)
    r[:, z] = (r[:, z] - m) * r.dtype.type(f) + m
    return back(r, labs)


def motion_blur(raw, labels, rng, length=(5, 11), *, ndim=None):
    """Blur one random section along a line of ``length`` voxels (uniform, rounded up to odd) at a
    random angle: the section is averaged along the direction of the motion.

    Examples
    --------
    >>> raw = np.zeros((9, 9), np.float32); raw[4, 4] = 1
    >>> out, _ = motion_blur(raw, None, np.random.default_rng(0), length=5)
    >>> int((out > 0).sum()) >= 5, float(out.sum().round(4))
    (True, 1.0)
    """
    r, labs, rng, back = _prepare(raw, labels, rng, ndim)
    lo, hi = _pair("length", length, 1)
    n = int(rng.integers(int(lo), int(hi) + 1)) // 2 * 2 + 1
    t = rng.uniform(0, math.pi)
    kernel = np.zeros((n, n), r.dtype)
    steps = np.linspace(-(n // 2), n // 2, 4 * n)
    kernel[tuple(np.rint(n // 2 + steps * v).astype(int) for v in (math.sin(t), math.cos(t)))] = 1
    kernel /= kernel.sum()
    r, z = _one_section(r, rng)
    for c in range(r.shape[0]):
        r[c, z] = ndi.convolve(r[c, z], kernel, mode="reflect")
    return back(r, labs)


# ---------------------------------------------------------------- the pipeline
_PIPELINE = {f.__name__: f for f in (
    random_flip_rotate, rotate_scale, elastic, misalignment, brightness_contrast,
    per_section_intensity, gamma, gaussian_blur, low_contrast_section, motion_blur, gaussian_noise,
    missing_parts, missing_section)}

DEFAULT_P = {"random_flip_rotate": 1.0, "rotate_scale": 0.2, "elastic": 0.3, "misalignment": 0.1,
             "brightness_contrast": 0.5, "per_section_intensity": 0.3, "gamma": 0.3,
             "gaussian_blur": 0.2, "low_contrast_section": 0.05, "motion_blur": 0.05,
             "gaussian_noise": 0.3, "missing_parts": 0.05, "missing_section": 0.05}


class Augmenter:
    """Seeded composition of the transforms, each applied with its probability, in this order:
    geometry (flip/rotate, rotate_scale, elastic, misalignment), intensity (brightness_contrast,
    per_section_intensity, gamma, gaussian_blur), degradation (low_contrast_section,
    motion_blur, gaussian_noise) and constant-valued defects last (missing_parts, missing_section).

    Parameters
    ----------
    voxel_size : tuple of float
        nm per spatial axis, zyx; its length (2 or 3) is the number of spatial axes of raw.
    p : dict, optional
        Probability in [0, 1] per transform name, overriding ``DEFAULT_P``; 0 switches one off.
    params : dict, optional
        Keyword arguments per transform name, overriding its defaults (``elastic`` defaults to
        ``alpha_nm`` = 2 and ``sigma_nm`` = 10 in-plane voxels). ``voxel_size``/``ndim`` come
        from the Augmenter.
    seed : int
        Seeds the Augmenter's own ``np.random.default_rng``; calls without ``rng`` advance it.

    Raises
    ------
    ValueError
        For an unknown transform or parameter name, a probability outside [0, 1] or a bad
        magnitude (each transform is tried once on a tiny patch at construction).

    Notes
    -----
    Same seed, same sequence of calls: same outputs. In data-loader workers pass each call an
    explicit generator instead, e.g. ``rng=np.random.default_rng([seed, worker_id, step])``.
    With the defaults a (32, 128, 128) float32 patch with labels takes about 20 ms on average on
    one CPU core (5 ms without the two interpolating warps, ~35 ms when elastic is drawn).

    Examples
    --------
    >>> aug = Augmenter((30, 6, 6), p={"elastic": 0}, seed=0)
    >>> raw = np.random.default_rng(0).random((8, 32, 32), dtype=np.float32)
    >>> out, lab = aug(raw, (raw > 0.5).astype(np.uint8))
    >>> out.shape, out.dtype, lab.dtype
    ((8, 32, 32), dtype('float32'), dtype('uint8'))
    >>> Augmenter.from_config({"voxel_size": [8, 8, 8], "p": {"gamma": 1.0}}).p["gamma"]
    1.0
    """

    def __init__(self, voxel_size, p=None, params=None, seed=0):
        try:
            vs = tuple(float(v) for v in voxel_size)
        except (TypeError, ValueError):
            vs = ()
        if len(vs) not in (2, 3) or min(vs) <= 0:
            raise ValueError(f"voxel_size must be 2 or 3 positive numbers (nm, zyx), got {voxel_size!r}; "
                             "it decides which axes may be swapped, e.g. (30, 6, 6) for serial-section TEM")
        p, params = dict(p or {}), dict(params or {})
        for arg, keys in (("p", p), ("params", params)):
            unknown = sorted(set(keys) - set(_PIPELINE))
            if unknown:
                raise ValueError(f"{arg} has unknown transforms {unknown}; valid: {sorted(_PIPELINE)}")
        for name, prob in p.items():
            if not np.isscalar(prob) or not 0 <= prob <= 1:
                raise ValueError(f"p[{name!r}] must be a probability in [0, 1], got {prob!r}")
        self.voxel_size, self.seed = vs, seed
        self.p = {**DEFAULT_P, **{k: float(v) for k, v in p.items()}}
        self.params = {}
        for name, f in _PIPELINE.items():
            sig = inspect.signature(f).parameters
            kw = {"alpha_nm": 2 * vs[-1], "sigma_nm": 10 * vs[-1]} if name == "elastic" else {}
            kw.update(params.get(name, {}))
            bad = sorted(set(kw) - set(sig) | set(kw) & {"raw", "labels", "rng", "voxel_size", "ndim"})
            if bad:
                valid = [k for k in sig if k not in ("raw", "labels", "rng", "voxel_size", "ndim")]
                raise ValueError(f"params[{name!r}] has unknown keys {bad}; valid: {valid}")
            kw["voxel_size" if "voxel_size" in sig else "ndim"] = vs if "voxel_size" in sig else len(vs)
            try:  # fail now, not in a data-loader worker hours later
                f(np.zeros((4, 16, 16)[3 - len(vs):], np.float32), None, 0, **kw)
            except (TypeError, ValueError) as e:
                raise ValueError(f"params[{name!r}]: {e}") from e
            self.params[name] = kw
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_config(cls, config):
        """Build from a dict with keys ``voxel_size`` and optionally ``p``, ``params``, ``seed``."""
        valid = ("voxel_size", "p", "params", "seed")
        unknown = sorted(set(config) - set(valid))
        if unknown or "voxel_size" not in config:
            raise ValueError(f"config needs 'voxel_size' and may hold {valid[1:]}; got keys {sorted(config)}")
        return cls(**config)

    def __call__(self, raw, labels=None, rng=None):
        """Augment one patch: ``(raw, labels) -> (raw, labels)``, shapes and dtypes kept."""
        rng = self.rng if rng is None else np.random.default_rng(rng)
        for name, f in _PIPELINE.items():
            if rng.random() < self.p[name]:
                raw, labels = f(raw, labels, rng, **self.params[name])
        return raw, labels

    def __repr__(self):
        return f"Augmenter(voxel_size={self.voxel_size}, p={self.p}, seed={self.seed})"
