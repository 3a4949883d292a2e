"""Seeded synthetic EM with ground truth: cells, membranes, mitochondria and section defects.

Cells are the regions of a warped, additively weighted Voronoi diagram sized in nm (so anisotropic
voxels give cells that are long in z voxels); membranes are dark bands on the cell boundaries;
cytoplasm is grey with texture and vesicles; mitochondria are dark capsules with a double outer
membrane and cristae, each inside one cell. The image is blurred, made noisy and stretched to
uint8 like real EM, and sections can be damaged like a real serial-section stack.
"""

import math
import operator
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from .config import resolve
from .synthetic_config import DEFECTS, SyntheticConfig

__all__ = ["SyntheticEM", "SyntheticConfig", "synthetic_em"]

_CYTO, _MEMBRANE, _MITO = 0.62, 0.22, 0.40  # clean intensities, fractions of the uint8 range


@dataclass(frozen=True, eq=False)
class SyntheticEM:
    """A synthetic EM image and its ground truth, all of shape (z, y, x) or (y, x).

    Attributes
    ----------
    raw : ndarray of uint8
        The image.
    neurons : ndarray of unsigned int
        Dense cell ids ``1..N``: every voxel belongs to a cell (no 0).
    mito : ndarray of unsigned int
        Mitochondria instance ids ``1..M``, 0 = background; each lies inside one cell.
    membranes : ndarray of bool
        True on the dark membrane band at cell boundaries.
    voxel_size : tuple of float
        nm per axis, zyx.
    defects : dict
        Defects applied to ``raw`` only (the ground truth is not changed): section lists
        ``"missing"``, ``"misaligned"``, ``"low_contrast"`` and the ``(dy, dx)`` ``"shifts"`` of
        the misaligned ones, in order; empty lists when none.
    """

    raw: np.ndarray
    neurons: np.ndarray
    mito: np.ndarray
    membranes: np.ndarray
    voxel_size: tuple
    defects: dict


def synthetic_em(shape=(32, 256, 256), config=None, **options):
    """Generate an EM-like image with dense cell, membrane and mitochondria ground truth.

    Parameters
    ----------
    shape : tuple of int
        ``(z, y, x)`` or ``(y, x)``.
    config : SyntheticConfig, optional
        The options; default ``SyntheticConfig()``.
    **options
        Fields of :class:`SyntheticConfig` that replace the config's (``seed``, ``voxel_size``,
        ``defects``, ...); an unknown one is a TypeError.

    Returns
    -------
    SyntheticEM

    Raises
    ------
    ValueError
        If an argument is out of range; the message names it, what was received and what is allowed.

    Notes
    -----
    On 2 CPU cores, (32, 256, 256) takes about 0.5 s and (64, 512, 512) about 4-5 s.

    Examples
    --------
    >>> em = synthetic_em((4, 32, 32), seed=1)
    >>> em.raw.shape, em.raw.dtype, em.neurons.dtype
    ((4, 32, 32), dtype('uint8'), dtype('uint8'))
    >>> int(em.neurons.min()), bool(em.membranes.any()), em.defects["missing"]
    (1, True, [])
    >>> synthetic_em((4, 32, 32), missing_sections=[2]).defects["missing"]
    [2]
    >>> synthetic_em((64, 64), SyntheticConfig(voxel_size=(5, 5))).voxel_size
    (5.0, 5.0)
    """
    config, = resolve(options, (SyntheticConfig, config))
    shape, vs, sections = _check_shape(shape, config)
    cell_size, width = config.cell_size_nm, config.membrane_width_nm
    rng = np.random.default_rng(config.seed)
    labels, depth = _cells(shape, vs, config.n_cells, cell_size, width, rng)
    n = int(labels.max())
    clean = _cytoplasm(labels, depth, n, vs, cell_size, width, rng)
    mito = _mitochondria(clean, labels, depth, vs, config.mito_fraction, cell_size, width, rng)
    raw = _form_image(clean, vs, config.blur, config.noise, rng)
    applied = _apply_defects(raw, sections, config.noise, rng)
    return SyntheticEM(raw, labels.astype(np.min_scalar_type(n)), mito, depth < width / 2, vs, applied)


def _check_shape(shape, config):
    """``shape`` as ints, the voxel size and the sections to damage; what of ``config`` depends on the shape."""
    try:
        ints = tuple(operator.index(s) for s in shape)
    except TypeError:
        ints = ()
    if len(ints) not in (2, 3) or min(ints) < 1:
        raise ValueError(f"shape must be 2 or 3 positive ints, (y, x) or (z, y, x); got {shape!r}")
    vs = (30.0, 6.0, 6.0)[-len(ints):] if config.voxel_size is None else config.voxel_size
    if len(vs) != len(ints):
        raise ValueError(f"voxel_size must be one positive number (nm) per axis of shape {ints}; got {vs!r}")
    if config.defects and len(ints) == 2:
        raise ValueError(f"defects=True needs a 3D shape (z, y, x); got shape {ints}")
    sections = {"random": config.defects}
    for kind in DEFECTS:
        name, zs = f"{kind}_sections", getattr(config, f"{kind}_sections")
        if zs and len(ints) == 2:
            raise ValueError(f"{name} needs a 3D shape (z, y, x); got shape {ints}")
        if zs and not all(0 <= z < ints[0] for z in zs):
            raise ValueError(f"{name} must be section indices in [0, {ints[0]}); got {list(zs)}")
        sections[kind] = None if zs is None else sorted(set(zs))
    return ints, vs, sections


def _smooth_noise(shape, step, octaves, rng):
    """Sum of random fields of standard deviation ``amp`` that vary over ``scale`` nm (float32).

    Each field is white noise on knots ``scale`` apart, spread by separable Gaussian weights, so
    it costs a few small matrix products; ``octaves`` is a sequence of ``(scale, amp)``.
    """
    rows, cores = [], []
    for scale, amp in octaves:
        knots = [int(n * s / scale) + 5 for n, s in zip(shape, step)]
        w = [np.exp(-0.5 * (np.arange(n)[:, None] * (s / scale) - np.arange(k) + 2.0) ** 2)
             for n, s, k in zip(shape, step, knots)]
        w = [(x / np.sqrt((x ** 2).sum(1, keepdims=True))).astype(np.float32) for x in w]
        core = rng.standard_normal(knots, dtype=np.float32)
        for axis in reversed(range(1, len(shape))):
            core = np.moveaxis(np.tensordot(w[axis], core, axes=(1, axis)), 0, axis)
        rows.append(amp * w[0])
        cores.append(core.reshape(knots[0], -1))
    return (np.hstack(rows) @ np.vstack(cores)).reshape(shape)


def _cells(shape, vs, n_cells, cell_size, reach, rng):
    """Cell labels (dense, 1..N) and distance to the nearest boundary (nm, at most ``reach``).

    A voxel at ``p`` belongs to ``argmin_i |p + warp(p) - s_i| - a_i``: random seeds ``s_i`` with
    random weights ``a_i`` (sizes vary, boundaries are hyperbolic arcs) and a smooth random
    ``warp`` (boundaries curve). The distance to the boundary is ``(d2 - d1) / 2`` of the two
    smallest weighted distances. Only voxels near a boundary compare several seeds.
    """
    ndim = len(shape)
    step = np.array(vs, float)
    if ndim == 3 and vs[0] >= 2 * max(vs[1:]):
        step[0] /= 2  # z distances count half: cells are twice as long along z
    extent = np.array(shape) * step
    if n_cells is None:
        n_cells = max(1, round(float(np.prod(extent + cell_size)) / cell_size ** ndim))
    seeds = rng.uniform(-cell_size / 2, extent + cell_size / 2, size=(n_cells, ndim))
    weight = (0.45 * cell_size * rng.random(n_cells) ** 2).astype(np.float32)
    octaves = ((cell_size, 0.25 * cell_size), (cell_size / 3, 0.08 * cell_size))
    warp = [_smooth_noise(shape, step, octaves, rng) for _ in range(ndim)]

    # For each box of a coarse grid, the seeds that can be the nearest or come within ``reach``
    # of a boundary anywhere in it (nearest first): ``k - rank`` of them.
    g = cell_size / 8
    lo = np.array([w.min() for w in warp]) - g
    boxes = np.ceil((extent + np.array([w.max() for w in warp]) + g - lo) / g).astype(int)
    centers = lo + (np.indices(boxes).reshape(ndim, -1).T + 0.5) * g
    lo, boxes = lo.tolist(), boxes.tolist()  # Python scalars keep float32 arithmetic float32
    k = min(n_cells, 12)
    dist, cand = cKDTree(seeds).query(centers, k=k, workers=-1)
    dist, cand = dist.reshape(len(centers), k), cand.reshape(len(centers), k)
    dist -= weight[cand]
    rank = k - (dist < dist.min(1, keepdims=True) + g * math.sqrt(ndim) + 2 * reach).sum(1)
    nearest = np.take_along_axis(cand, dist.argmin(1)[:, None], 1)[:, 0]
    multi = np.flatnonzero(rank < k - 1)
    cand[multi] = np.take_along_axis(cand[multi], np.argsort(dist[multi], 1), 1)
    cand[:, 0] = nearest
    cand, rank = cand.astype(np.int32), rank.astype(np.uint8)
    seeds = [np.ascontiguousarray(x, np.float32) for x in seeds.T]
    labels, depth = np.empty(shape, np.int32), np.full(shape, reach, np.float32)
    used = np.zeros(n_cells, bool)

    def label_rows(sl):
        box, p = 0, []
        for i, (n, s, w) in enumerate(zip(shape, step.tolist(), warp)):
            q = (np.arange(n, dtype=np.float32)[sl if i == 0 else slice(None)] * s).reshape(
                [-1 if j == i else 1 for j in range(ndim)]) + w[sl]
            p.append(q.ravel())
            box = box * boxes[i] + ((q - lo[i]) / g).astype(np.int32)
        box = box.ravel()
        lab, dep, left = cand[box, 0], depth[sl].reshape(-1), rank[box]
        at = np.flatnonzero(left < k - 1)
        at = at[np.argsort(left[at], kind="stable")]  # most candidates first: work on prefixes
        box, left, p = box[at], left[at], [q[at] for q in p]
        first, second = np.full((2, len(at)), np.inf, np.float32)
        best = lab[at]
        for j in range(k - int(left.min(initial=k))):  # keep the two smallest distances
            m = np.searchsorted(left, k - j)  # voxels with more than j candidates
            ids = cand[box[:m], j]
            d = np.sqrt(sum((q[:m] - x[ids]) ** 2 for q, x in zip(p, seeds))) - weight[ids]
            np.minimum(second[:m], np.maximum(first[:m], d), out=second[:m])
            best[:m] = np.where(d < first[:m], ids, best[:m])
            np.minimum(first[:m], d, out=first[:m])
        lab[at] = best
        dep[at] = np.minimum((second - first) / 2, reach)
        labels[sl] = lab.reshape(labels[sl].shape)
        used[lab] = True

    rows = max(1, 2 ** 19 // math.prod(shape[1:]))  # chunks of ~2**19 voxels, on all cores
    with ThreadPoolExecutor(min(os.cpu_count() or 1, 8)) as pool:
        list(pool.map(label_rows, [slice(z, z + rows) for z in range(0, shape[0], rows)]))
    return np.cumsum(used).astype(np.int32)[labels], depth


def _cytoplasm(labels, depth, n, vs, cell_size, width, rng):
    """Clean image (0..1): grey cytoplasm with texture and vesicles, dark membranes."""
    shape, ndim = labels.shape, labels.ndim
    per_cell = np.concatenate([[0], rng.normal(0, 0.06, n)]).astype(np.float32)
    img = _smooth_noise(shape, vs, ((cell_size / 3, 0.04),), rng)
    img += _CYTO + per_cell[labels]

    # Vesicles, 28-48 nm: a dark ring round a lighter lumen, plentiful in a third of the cells.
    rich = np.concatenate([[0], np.where(rng.random(n) < 0.3, 1.0, 0.08)])
    centers = rng.random((int(math.prod(shape) * math.prod(vs) / 70.0 ** ndim), ndim)) * shape
    base = centers.astype(np.intp)
    at = tuple(base.T)
    keep = (rng.random(len(centers)) < rich[labels[at]]) & (depth[at] >= width)
    base, frac = base[keep], centers[keep] - base[keep]
    radii = rng.uniform(14, 24, len(base))
    span = [np.arange(-int(36 // v) - 1, int(36 // v) + 2) for v in vs]  # voxel offsets per axis
    sq = [((o + 0.5 - f[:, None]) * v) ** 2 for o, f, v in zip(span, frac.T, vs)]  # nm^2
    fits = [(b[:, None] + o >= 0) & (b[:, None] + o < n) for o, b, n in zip(span, base.T, shape)]
    for off in np.indices([len(o) for o in span]).reshape(ndim, -1).T:
        rho = np.sqrt(sum(d[:, i] for d, i in zip(sq, off)))
        val = 0.10 * (rho < radii) - 0.30 * np.exp(-0.5 * ((rho - radii) / 3.5) ** 2)
        ok = np.flatnonzero(np.logical_and.reduce([f[:, i] for f, i in zip(fits, off)])
                            & (np.abs(val) > 0.005))
        if len(ok):  # (two vesicles on one voxel would add once: rare and harmless)
            img[tuple(b[ok] + o[i] for b, o, i in zip(base.T, span, off))] += val[ok]

    # Membranes: distance to the boundary < width / 2, anti-aliased over a voxel.
    soft = min(vs) / 2
    band = np.clip((width / 2 + soft - depth) * (0.5 / soft), 0, 1)
    img -= band * (img - _MEMBRANE)
    return img


def _mitochondria(img, labels, depth, vs, fraction, cell_size, width, rng):
    """Draw capsule-shaped mitochondria into ``img`` until ``fraction`` of voxels is covered.

    Each lies in one cell, at least ``width`` from its membrane and ``2 * width`` from other
    mitochondria, is at most slightly clipped, and has a dark double outer membrane and cristae.
    """
    shape, ndim, vs = labels.shape, labels.ndim, np.array(vs)
    mito = np.zeros(shape, np.int32)
    target, covered, tries, m, todo, far = fraction * labels.size, 0, 0, 0, [], depth.max()
    while covered < target and tries < 20000 + 100 * m:
        if not todo:  # draw candidates in batches; keep those whose axis lies well inside a cell
            tries += 256
            cs = rng.integers(0, shape, size=(256, ndim))
            rs = np.minimum(rng.uniform(50, 110, 256), 0.3 * cell_size)
            axes = rng.normal(size=(256, ndim)) * ([1.5] + [1] * (ndim - 1) if ndim == 3 else 1)
            axes /= np.linalg.norm(axes, axis=1, keepdims=True)
            hs = rng.uniform(0.3, 2.5, 256) * rs  # half-length of the axis
            probe = np.multiply.outer(hs, [-1, -0.5, 0.5, 1])[..., None] * axes[:, None]
            probe = ((probe + ((cs + 0.5) * vs)[:, None]) // vs).astype(int)
            probe = tuple(np.clip(probe, 0, np.array(shape) - 1).T)
            ok = ((labels[probe] == labels[tuple(cs.T)]).all(0) & (depth[probe] >= width).all(0)
                  & (depth[tuple(cs.T)] >= far))
            todo = list(zip(cs[ok], rs[ok], axes[ok], hs[ok]))[::-1]
            continue
        c, r, v, h = todo.pop()
        if mito[tuple(c)]:
            continue
        center = (c + 0.5) * vs
        lo = np.maximum(((center - h * np.abs(v) - r) / vs).astype(int), 0)
        hi = np.minimum(((center + h * np.abs(v) + r) / vs).astype(int) + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        x = [((np.arange(a, b, dtype=np.float32) + 0.5) * s - o).reshape(
             [-1 if j == i else 1 for j in range(ndim)])
             for i, (a, b, s, o) in enumerate(zip(lo, hi, vs.tolist(), center.tolist()))]
        v = v.tolist()
        t = sum(xi * vi for xi, vi in zip(x, v))  # nm along the axis from the centre
        dist = np.sqrt(sum((xi - np.clip(t, -h, h) * vi) ** 2 for xi, vi in zip(x, v)))
        if mito[box][dist < r + 2 * width].any():
            continue
        parts, _ = ndi.label((dist < r) & (labels[box] == labels[tuple(c)]) & (depth[box] >= width))
        inside = parts == parts[tuple(c - lo)]
        size = int(inside.sum())
        if not inside[tuple(c - lo)] or size < max(8, 0.85 * (dist < r).sum()):
            continue  # cut by a membrane: it would look clipped
        if covered + size > 1.25 * target + 8:
            continue  # it would overshoot the target
        m, covered = m + 1, covered + size
        mito[box][inside] = m
        # Cristae: dark wavy stripes across the axis; outer membrane: two dark rims.
        t, skin = np.broadcast_to(t, inside.shape)[inside], r - dist[inside]
        u = np.broadcast_to(x[-1] * v[-2] - x[-2] * v[-1], inside.shape)[inside]  # across
        period = rng.uniform(35, 60)
        wave = 0.3 * period * np.sin(np.pi * u / r + rng.uniform(0, 6.3)) + 5 * np.sin(t / 23)
        cristae = np.cos(np.pi * (t + wave) / period) ** 6
        rims = np.exp(-0.5 * ((skin - 4) / 3) ** 2) + 0.8 * np.exp(-0.5 * ((skin - 13) / 3) ** 2)
        img[box][inside] = _MITO + 0.06 + 0.02 * rng.normal() - 0.2 * cristae - 0.2 * rims
    return mito.astype(np.min_scalar_type(m))


def _form_image(clean, vs, blur, noise, rng):
    """Blur (less along a coarser z), add noise, and convert to uint8."""
    sigma = [blur * min(vs[-2:]) / v for v in vs]
    sigma = [s if s >= 0.25 else 0 for s in sigma]  # below a quarter voxel a blur does nothing
    img = ndi.gaussian_filter(clean, sigma, truncate=3.0) if any(sigma) else clean
    scale = np.maximum(img, 0) * (0.5 / _CYTO) + 0.5  # variance: half constant, half signal
    np.sqrt(scale, out=scale)
    # Neighbouring detector samples are correlated: sum white noise over 2 x 2 in-plane windows.
    white = rng.standard_normal(img.shape[:-2] + (img.shape[-2] + 1, img.shape[-1] + 1), np.float32)
    white = white[..., 1:, :] + white[..., :-1, :]
    scale *= white[..., 1:] + white[..., :-1]
    img += (0.5 * noise) * scale
    img *= 255
    img += 0.5
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def _apply_defects(raw, sections, noise, rng):
    """Damage sections of ``raw`` in place; return the ``defects`` record."""
    kinds = ("missing", "misaligned", "low_contrast")
    out = {kind: sections.get(kind) or [] for kind in kinds}
    out["shifts"] = []
    if raw.ndim == 2:
        return out
    nz = raw.shape[0]
    if sections["random"]:  # distinct inner sections, none already given
        free = [z for z in rng.permutation(np.arange(1, nz - 1) if nz > 2 else np.arange(nz))
                if not any(z in out[kind] for kind in kinds)]
        per_kind = max(1, nz // 32)
        for kind in kinds:
            if sections[kind] is None:
                out[kind], free = sorted(int(z) for z in free[:per_kind]), free[per_kind:]
    for z in out["missing"]:
        flat = rng.choice([0.06, 0.5, 0.94]) + 0.5 * noise * rng.standard_normal(raw.shape[1:])
        raw[z] = np.clip(flat * 255 + 0.5, 0, 255)
    for z in out["misaligned"]:
        shift = tuple(int(s) for s in rng.integers(3, 9, 2) * rng.choice([-1, 1], 2))
        raw[z] = ndi.shift(raw[z], shift, order=0, mode="nearest")
        out["shifts"].append(shift)
    for z in out["low_contrast"]:
        mean = raw[z].mean()
        raw[z] = np.clip(mean + rng.uniform(0.2, 0.35) * (raw[z] - mean) + 0.5, 0, 255)
    return out
