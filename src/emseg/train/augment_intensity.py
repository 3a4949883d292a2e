"""Intensity augmentation of EM training patches: photometric changes of raw and serial-section
defects (missing and misaligned sections, stripes, low contrast, motion blur).

These change raw only (labels are returned untouched, as copies), except :func:`misalignment` in
``"step"`` mode, where the tissue really moved. Defects follow Lee et al. (2017), "Superhuman
accuracy on the SNEMI3D connectomics challenge", arXiv:1706.00120, and pytorch_connectomics'
augmentors. Conventions: see :mod:`emseg.train.augment`.
"""

import math

import numpy as np
from scipy import ndimage as ndi

from .augment_geometric import _affine_yx, _pair, _prepare, _scalar, _warp

__all__ = ["brightness_contrast", "gamma", "gaussian_blur", "gaussian_noise", "per_section_intensity",
           "missing_section", "misalignment", "missing_parts", "low_contrast_section", "motion_blur"]


def _stats(r):
    """Mean and standard deviation (at least 1e-6) as Python floats."""
    return float(r.mean(dtype=np.float64)), max(float(r.std(dtype=np.float64)), 1e-6)


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
