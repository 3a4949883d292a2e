"""A block's partial region table, and the exact merge of partial tables into one.

A partial table holds, per object id found in a block: the voxel count, the mean position, the
central second moments (scatter matrix), the bounding box, the intensity sum/min/max and the mesh
area of the cells the block owns (:mod:`emseg.measure.surface`). Counts, sums, extremes and areas
add up or take the extreme over blocks; the scatter matrices are combined about the common mean
(Chan, Golub & LeVeque's pairwise update, the stable form), so an object cut by block faces gets
the moments of the whole object, not ``E[x^2] - E[x]^2`` with its cancellation on large volumes.
Within a block the sums are exact integers about the block's corner.
"""

from __future__ import annotations

import fastremap
import numba
import numpy as np

from .surface import cell_areas, cube_areas

__all__ = ["FIELDS", "block_partial", "merge_partials"]

FIELDS = ("ids", "count", "mean", "m2", "lo", "hi", "isum", "imin", "imax", "area")
"""The arrays of a partial table: ``mean`` (K, 3) in voxels of the whole volume; ``m2`` (K, 6): the
scatter sums zz, yy, xx, zy, zx, yx about the mean; ``lo``/``hi`` (K, 3): the first and last voxel."""

PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
"""The axes of the six ``m2`` columns."""


@numba.njit(cache=True, nogil=True)
def _sums(ids, raw, has_raw, k):  # pragma: no cover - compiled by numba
    count = np.zeros(k, np.int64)
    s1 = np.zeros((k, 3), np.int64)
    s2 = np.zeros((k, 6), np.int64)
    lo = np.full((k, 3), np.iinfo(np.int64).max, np.int64)
    hi = np.full((k, 3), -1, np.int64)
    isum = np.zeros(k)
    imin = np.full(k, np.inf)
    imax = np.full(k, -np.inf)
    nz, ny, nx = ids.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                i = ids[z, y, x]
                if i == 0:
                    continue
                count[i] += 1
                s1[i, 0] += z
                s1[i, 1] += y
                s1[i, 2] += x
                s2[i, 0] += z * z
                s2[i, 1] += y * y
                s2[i, 2] += x * x
                s2[i, 3] += z * y
                s2[i, 4] += z * x
                s2[i, 5] += y * x
                lo[i, 0] = min(lo[i, 0], z)
                lo[i, 1] = min(lo[i, 1], y)
                lo[i, 2] = min(lo[i, 2], x)
                hi[i, 0] = max(hi[i, 0], z)
                hi[i, 1] = max(hi[i, 1], y)
                hi[i, 2] = max(hi[i, 2], x)
                if has_raw:
                    v = raw[z, y, x]
                    isum[i] += v
                    imin[i] = min(imin[i], v)
                    imax[i] = max(imax[i], v)
    return count, s1, s2, lo, hi, isum, imin, imax


def block_partial(labels, raw, write, origin, pad, voxel_size):
    """The partial table of one block.

    Parameters
    ----------
    labels : ndarray (z, y, x)
        The block's read region: its write region plus one voxel after it on each axis where the
        volume goes on (the cells of its last voxels), integer ids, 0 = background.
    raw : ndarray or None
        The write region's intensities.
    write : tuple of slice
        The write region within ``labels``.
    origin : tuple of int
        The write region's first voxel in the whole volume.
    pad : tuple of (int, int)
        Background voxels to add before and after ``labels`` on each axis (1 at the volume's border:
        the objects are closed there, as the reference pads its masks).
    voxel_size : tuple of float
        Nanometres per voxel (z, y, x), for the mesh areas.

    Returns
    -------
    dict of the :data:`FIELDS`
    """
    lab = np.ascontiguousarray(labels)
    if lab.dtype.kind not in "ui":
        raise ValueError(f"labels must be integer ids; got dtype {lab.dtype}")
    if lab.dtype.kind == "i" and lab.size and int(lab.min()) < 0:
        raise ValueError(f"labels must be non-negative ids; found {int(lab.min())}")
    dense, mapping = fastremap.renumber(lab, preserve_zero=True, in_place=False)
    k = max(mapping.values(), default=0) + 1  # the mapping holds 0 -> 0 when there is background
    ids = np.zeros(k, np.uint64)
    for orig, new in mapping.items():
        ids[new] = orig
    dense = np.pad(dense.astype(np.uint32, copy=False), pad)
    area = cell_areas(dense, cube_areas(voxel_size), k)
    inner = tuple(slice(s.start + p[0], s.stop + p[0]) for s, p in zip(write, pad))
    has_raw = raw is not None
    r = np.asarray(raw, dtype=np.float64) if has_raw else np.zeros((1, 1, 1))
    count, s1, s2, lo, hi, isum, imin, imax = _sums(dense[inner], r, has_raw, k)
    n = np.maximum(count, 1).astype(np.float64)
    local = s1 / n[:, None]
    s1f = s1.astype(np.float64)  # the product of two int64 sums can pass 2^63 on large blocks
    m2 = np.stack([s2[:, c] - s1f[:, a] * s1f[:, b] / n for c, (a, b) in enumerate(PAIRS)], axis=1)
    o = np.asarray(origin, np.int64)
    has = count[:, None] > 0  # ids that only meet the block's cells (its halo) have no voxels here
    part = {"ids": ids, "count": count, "mean": local + o, "m2": m2, "lo": np.where(has, lo + o, lo),
            "hi": np.where(has, hi + o, hi),
            "isum": isum, "imin": imin, "imax": imax, "area": area}
    return {f: v[1:] for f, v in part.items()}  # id 0 is the background


def merge_partials(parts):
    """One partial table from many: each id once (sorted), its statistics over all the parts.

    Examples
    --------
    A line of 4 voxels cut in two halves has the moments of the whole line:

    >>> import numpy as np
    >>> lab = np.ones((1, 1, 4), np.uint8)
    >>> whole = block_partial(lab, None, (slice(0, 1), slice(0, 1), slice(0, 4)), (0, 0, 0), ((1, 1),) * 3, (1, 1, 1))
    >>> a = block_partial(lab[..., :3], None, (slice(0, 1), slice(0, 1), slice(0, 2)), (0, 0, 0),
    ...                   ((1, 1), (1, 1), (1, 0)), (1, 1, 1))
    >>> b = block_partial(lab[..., 2:], None, (slice(0, 1), slice(0, 1), slice(0, 2)), (0, 0, 2),
    ...                   ((1, 1), (1, 1), (0, 1)), (1, 1, 1))
    >>> m = merge_partials([a, b])
    >>> m["count"].tolist(), m["mean"].tolist(), float(m["m2"][0, 2]), m["hi"].tolist()
    ([4], [[0.0, 0.0, 1.5]], 5.0, [[0, 0, 3]])
    >>> bool(np.isclose(m["area"][0], whole["area"][0]))
    True
    """
    parts = [p for p in parts if len(p["ids"])]
    if not parts:
        return {f: np.zeros((0,) + ((3,) if f in ("mean", "lo", "hi") else (6,) if f == "m2" else ()),
                            np.uint64 if f == "ids" else np.int64 if f in ("count", "lo", "hi") else np.float64)
                for f in FIELDS}
    cat = {f: np.concatenate([p[f] for p in parts]) for f in FIELDS}
    ids, inv = np.unique(cat["ids"], return_inverse=True)
    k = len(ids)
    count = np.bincount(inv, cat["count"], k).astype(np.int64)
    n = np.maximum(count, 1).astype(np.float64)
    w = cat["count"].astype(np.float64)
    mean = np.stack([np.bincount(inv, w * cat["mean"][:, a], k) / n for a in range(3)], axis=1)
    d = cat["mean"] - mean[inv]
    d[cat["count"] == 0] = 0.0  # a part that only meets the object's cells (its halo) has no voxels of it
    m2 = np.stack([np.bincount(inv, cat["m2"][:, c] + w * d[:, a] * d[:, b], k) for c, (a, b) in enumerate(PAIRS)],
                  axis=1)
    out = {"ids": ids, "count": count, "mean": mean, "m2": m2, "isum": np.bincount(inv, cat["isum"], k),
           "area": np.bincount(inv, cat["area"], k)}
    for f, init, op in (("lo", np.iinfo(np.int64).max, np.minimum), ("hi", -1, np.maximum),
                        ("imin", np.inf, np.minimum), ("imax", -np.inf, np.maximum)):
        acc = np.full((k,) + cat[f].shape[1:], init, cat[f].dtype)
        op.at(acc, inv, cat[f])
        out[f] = acc
    return out
