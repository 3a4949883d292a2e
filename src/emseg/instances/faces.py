"""Stitching blockwise labels across block faces (pass 2 of :func:`~emseg.instances.segment_blockwise`).

Pass 1 keeps, per block, its ids, their voxel counts and the labels at its faces
(:func:`face_slabs`, in ``scratch/blocks/i.npz``); pass 2 (:func:`stitch_ids`, on the driver)
matches ids at every face, joins them in one graph over all ids, and numbers its components
1..n (objects under ``min_size`` -> 0) in ``scratch/table.npz``.

Matching at a face between blocks A and B:

* ``cc`` (halo 0) is exact: two ids are joined when a voxel of one and a voxel of the other are
  neighbours across the face under the connectivity (diagonal blocks included), as in dask-image's
  ``ndmeasure.label``; the result equals connected components of the whole volume up to a
  permutation of ids.
* the watershed methods: A segmented the slab ``halo`` voxels either side of the face (its own side
  and, with its halo, B's), and so did B. Ids ``a`` and ``b`` are joined when on both sides of the
  face one of them lies mostly (``stitch_overlap``) inside the other: a block that split an object
  for lack of context is corrected by its neighbour, and one block's merge in its halo, not
  confirmed on its own side, is not propagated.

Memory: the ids and their face pairs; a face's planes are dropped once no later face needs them.
"""

from __future__ import annotations

import itertools
import os

import numpy as np

__all__ = ["face_slabs", "stitch_ids", "block_file", "save_npz"]


def face_slabs(labels, regions, halo, shape) -> dict:
    """The arrays block ``regions`` keeps for matching at its inner faces, by name ``lo{axis}``/``hi{axis}``.

    ``labels`` are the block's global ids over its read region. Along an axis with halo 0
    (exact matching, ``cc``): the write region's first and last planes; otherwise the slab of
    ``halo`` voxels either side of each face, over the write region's extent along the other axes.
    Faces on the volume's border are skipped.
    """
    write, ext = regions
    inner = labels[tuple(slice(w.start - e.start, w.stop - e.start) for w, e in zip(write, ext))]
    arrays = {}
    for a, h in enumerate(halo):
        if not h:  # exact face matching (cc): the block's first and last planes
            if write[a].start > 0:
                arrays[f"lo{a}"] = np.take(inner, 0, axis=a)
            if write[a].stop < shape[a]:
                arrays[f"hi{a}"] = np.take(inner, -1, axis=a)
            continue
        for side, face in (("lo", write[a].start), ("hi", write[a].stop)):
            if face in (0, shape[a]):
                continue
            sl = [slice(w.start - e.start, w.stop - e.start) for w, e in zip(write, ext)]
            sl[a] = slice(face - h - ext[a].start, face + h - ext[a].start)
            arrays[f"{side}{a}"] = labels[tuple(sl)]
    return arrays


def save_npz(path, arrays):
    """Write ``arrays`` to ``path`` (.npz) whole or not at all: a partial file, fsync'ed, renamed into place."""
    tmp = f"{path}.partial-{os.getpid()}.npz"
    np.savez_compressed(tmp, **arrays)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def stitch_ids(spec, blocks) -> int:
    """Pass 2: join ids across faces, drop small objects, write the table global id -> final id.

    ``spec`` is the plan of :func:`~emseg.instances.segment_blockwise` (shape, block_shape, halo,
    method, params, stitch_overlap, min_size, scratch, table); ``blocks`` its write regions in C
    order. A table already written for the same plan is reused. Returns the number of objects.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from ..runs import signature_hash

    signature = signature_hash({k: v for k, v in spec.items() if k not in ("out",)})
    if os.path.exists(spec["table"]):
        with np.load(spec["table"]) as t:
            if str(t["signature"]) == signature:
                return int(t["n_objects"])
    ids, counts, pairs = [], [], []
    grid = tuple(len(range(0, n, b)) for n, b in zip(spec["shape"], spec["block_shape"]))
    planes = _FirstPlanes(spec["scratch"])
    for index, write in enumerate(blocks):
        with np.load(block_file(spec["scratch"], index)) as z:
            ids.append(z["ids"])
            counts.append(z["counts"])
            pos = np.unravel_index(index, grid)
            for a in range(len(write)):
                if write[a].stop >= spec["shape"][a]:
                    continue
                if spec["method"] == "cc":
                    upper = _upper_plane(planes, blocks, grid, pos, a, spec["shape"])
                    pairs.append(_face_pairs_cc(z[f"hi{a}"], upper, write, a, spec["shape"],
                                                spec["params"]["connectivity"]))
                else:
                    nb = list(pos)
                    nb[a] += 1
                    with np.load(block_file(spec["scratch"], int(np.ravel_multi_index(nb, grid)))) as zb:
                        pairs.append(_face_pairs_overlap(z[f"hi{a}"], zb[f"lo{a}"], a, spec["halo"][a],
                                                         spec["stitch_overlap"]))
        planes.release(index, grid)
    ids, counts = np.concatenate(ids), np.concatenate(counts)
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.uint64)
    nodes = np.unique(np.concatenate([ids, pairs.ravel()]))
    size = np.zeros(len(nodes), np.int64)
    size[np.searchsorted(nodes, ids)] = counts
    u, v = np.searchsorted(nodes, pairs[:, 0]), np.searchsorted(nodes, pairs[:, 1])
    graph = coo_matrix((np.ones(len(u), np.int8), (u, v)), shape=(len(nodes), len(nodes)))
    n_comp, comp = connected_components(graph, directed=False)
    comp_size = np.bincount(comp, weights=size, minlength=n_comp)
    keep = (comp_size >= max(1, spec["min_size"]))
    final = np.zeros(n_comp, np.uint64)
    final[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint64)
    n_objects = int(keep.sum())
    save_npz(spec["table"], {"nodes": nodes, "final": final[comp], "n_objects": np.int64(n_objects),
                              "signature": np.array(signature)})
    return n_objects


def block_file(scratch, index):
    """Where pass 1 keeps block ``index``'s ids, counts and face slabs."""
    return os.path.join(scratch, "blocks", f"{index}.npz")


class _FirstPlanes:
    """The blocks' first planes (``lo{axis}``, for exact face matching), loaded on demand and dropped once
    no later face can need them: memory stays at about one row-plane of block faces."""

    def __init__(self, scratch):
        self.scratch, self.data = scratch, {}

    def __getitem__(self, index):
        if index not in self.data:
            with np.load(block_file(self.scratch, index)) as z:
                self.data[index] = {k: z[k] for k in z.files if k.startswith("lo")}
        return self.data[index]

    def release(self, index, grid):
        # blocks go in C order; faces of block j read blocks j + e_axis ± 1 laterally, never below this
        lowest = index - int(np.prod(grid[1:])) - grid[-1]
        for k in [k for k in self.data if k < lowest]:
            del self.data[k]


def _upper_plane(planes, blocks, grid, pos, axis, shape):
    """The first plane of the blocks after block ``pos`` along ``axis``, over its extent plus one voxel each side."""
    write = blocks[int(np.ravel_multi_index(pos, grid))]
    others = [a for a in range(len(grid)) if a != axis]
    region = [slice(max(0, write[a].start - 1), min(shape[a], write[a].stop + 1)) for a in others]
    plane = np.zeros([r.stop - r.start for r in region], np.uint64)
    for d in itertools.product((-1, 0, 1), repeat=len(others)):
        q = list(pos)
        q[axis] += 1
        for a, step in zip(others, d):
            q[a] += step
        if any(v < 0 or v >= g for v, g in zip(q, grid)):
            continue
        qw = blocks[int(np.ravel_multi_index(q, grid))]
        src = planes[int(np.ravel_multi_index(q, grid))][f"lo{axis}"]
        lo = [max(r.start, qw[a].start) for r, a in zip(region, others)]
        hi = [min(r.stop, qw[a].stop) for r, a in zip(region, others)]
        if any(h <= lo_ for lo_, h in zip(lo, hi)):
            continue
        dst = tuple(slice(l_ - r.start, h - r.start) for l_, h, r in zip(lo, hi, region))
        srcsl = tuple(slice(l_ - qw[a].start, h - qw[a].start) for l_, h, a in zip(lo, hi, others))
        plane[dst] = src[srcsl]
    return plane


def _neighbour_offsets(nd, connectivity, axis):
    """Offsets ``d`` with ``d[axis] == 1`` within the connectivity (L1 radius 1, 2 or 3)."""
    default = {2: 4, 3: 6}[nd]
    radius = {4: 1, 8: 2, 6: 1, 18: 2, 26: 3}[int(connectivity or default)]
    return [d for d in itertools.product((-1, 0, 1), repeat=nd) if d[axis] == 1 and sum(map(abs, d)) <= radius]


def _face_pairs_cc(lower, upper, write, axis, shape, connectivity):
    """Pairs of ids touching across the face after ``write`` along ``axis``: ``lower`` is the block's last
    plane, ``upper`` the next plane over the block's extent plus a one-voxel margin (diagonal blocks)."""
    others = [a for a in range(len(shape)) if a != axis]
    start = [write[a].start - max(0, write[a].start - 1) for a in others]  # lower's origin inside upper
    found = []
    for d in _neighbour_offsets(len(shape), connectivity, axis):
        rest = [d[a] for a in others]
        src, dst = [], []
        for n_low, n_up, s0, r in zip(lower.shape, upper.shape, start, rest):
            lo = max(0, -(s0 + r))  # keep s0 + r + i inside [0, n_up)
            hi = min(n_low, n_up - s0 - r)
            src.append(slice(lo, hi))
            dst.append(slice(lo + s0 + r, hi + s0 + r))
        a, b = lower[tuple(src)].ravel(), upper[tuple(dst)].ravel()
        m = (a != 0) & (b != 0) & (a != b)
        if m.any():
            found.append(np.unique(np.stack([a[m], b[m]], 1), axis=0))
    return np.concatenate(found) if found else np.zeros((0, 2), np.uint64)


def _contained_pairs(x, y, min_fraction):
    """Pairs ``(x_id, y_id)`` (both nonzero) whose overlap covers ``min_fraction`` of the smaller of the two there."""
    both = (x != 0) & (y != 0)
    if not both.any():
        return np.zeros((0, 2), np.uint64)
    pairs, n = np.unique(np.stack([x[both], y[both]], 1), axis=0, return_counts=True)
    ix, sx = np.unique(x[x != 0], return_counts=True)
    iy, sy = np.unique(y[y != 0], return_counts=True)
    smaller = np.minimum(sx[np.searchsorted(ix, pairs[:, 0])], sy[np.searchsorted(iy, pairs[:, 1])])
    return pairs[n >= min_fraction * smaller]


def _face_pairs_overlap(a_slab, b_slab, axis, halo, min_fraction):
    """Ids of A and B joined across a face: both sides of it must see them as (mostly) one object.

    ``a_slab``/``b_slab``: A's and B's labels of the slab ``halo`` voxels either side of the face.
    On each side, one block's labels are its own (with full context) and the other's are its halo.
    ``a`` and ``b`` are joined when, on A's side and on B's side, one of them lies mostly
    (``min_fraction``) inside the other. A block that lacked context and split an object is
    corrected by the other (several ids may join one); a block that merged two objects in its halo
    is not confirmed on its own side, so it cannot chain-merge them.
    """
    if a_slab.shape != b_slab.shape:
        raise RuntimeError(f"face slabs differ in shape: {a_slab.shape} vs {b_slab.shape}")
    a_side = (slice(None),) * axis + (slice(0, halo),)
    b_side = (slice(None),) * axis + (slice(halo, None),)
    on_a = _contained_pairs(a_slab[a_side].ravel(), b_slab[a_side].ravel(), min_fraction)
    on_b = _contained_pairs(a_slab[b_side].ravel(), b_slab[b_side].ravel(), min_fraction)
    if not len(on_a) or not len(on_b):
        return np.zeros((0, 2), np.uint64)
    rows, n = np.unique(np.concatenate([on_a, on_b]), axis=0, return_counts=True)
    return rows[n == 2]
