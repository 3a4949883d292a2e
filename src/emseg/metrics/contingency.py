"""The contingency table of two label volumes, built in one pass, in memory or blockwise.

Every count-based metric (Rand, adapted Rand, VOI, CREMI, V_rand/V_info, IoU matching, AJI, PQ)
is a function of this table, so it is computed once and passed around (``table=``).

Blockwise: each block is renumbered to small dense ids with fastremap (a hash map, far faster
than sorting), its pair counts taken with ``np.bincount``, and the pairs mapped back to the
original ids; the per-block triplets are merged at the end. Memory grows with the number of
distinct (gt, pred) pairs, never with the number of voxels, so the same code path evaluates an
in-memory array and a multi-gigavoxel Zarr volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import fastremap
import numpy as np

from ..blockwise.geometry import aligned_block_shape, block_slices

__all__ = ["Contingency", "contingency_table", "check_labels"]


@dataclass(frozen=True, eq=False)
class Contingency:
    """Sparse contingency table: ``counts[k]`` voxels have label ``gt_ids[k]`` in gt and
    ``pred_ids[k]`` in pred. Pairs are unique and sorted by (gt, pred); zero counts are absent.

    Examples
    --------
    >>> t = contingency_table(np.array([1, 1, 2, 2]), np.array([5, 5, 5, 7]))
    >>> t.gt_ids.tolist(), t.pred_ids.tolist(), t.counts.tolist(), t.n
    ([1, 2, 2], [5, 5, 7], [2, 1, 1], 4)
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    counts: np.ndarray

    @property
    def n(self) -> int:
        """Total number of voxels counted."""
        return int(self.counts.sum())

    def without_gt(self, labels) -> "Contingency":
        """The table with the voxels whose gt label is in ``labels`` (an id, ids, or None) removed."""
        labels = np.asarray([] if labels is None else [labels] if np.isscalar(labels) else list(labels))
        if labels.size == 0:
            return self
        keep = ~np.isin(self.gt_ids, labels.astype(self.gt_ids.dtype, copy=False))
        return Contingency(self.gt_ids[keep], self.pred_ids[keep], self.counts[keep])

    def dense_indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(gt_unique, gt_index, pred_unique, pred_index)``: each pair's row and column in a dense table."""
        gu, gi = np.unique(self.gt_ids, return_inverse=True)
        pu, pi = np.unique(self.pred_ids, return_inverse=True)
        return gu, gi, pu, pi

    def sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """Voxel counts of each gt segment and each pred segment (in ``dense_indices`` order)."""
        gu, gi, pu, pi = self.dense_indices()
        return (np.bincount(gi, weights=self.counts, minlength=len(gu)).astype(np.int64),
                np.bincount(pi, weights=self.counts, minlength=len(pu)).astype(np.int64))


def check_labels(gt, pred, *, names=("gt", "pred")) -> None:
    """Raise a clear error unless ``gt`` and ``pred`` are same-shaped, non-empty integer label arrays."""
    if tuple(gt.shape) != tuple(pred.shape):
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape; got {tuple(gt.shape)} and "
                         f"{tuple(pred.shape)}")
    if int(np.prod(gt.shape)) == 0:
        raise ValueError(f"{names[0]} and {names[1]} are empty (shape {tuple(gt.shape)}); nothing to evaluate")
    for name, a in zip(names, (gt, pred)):
        kind = np.dtype(a.dtype).kind
        if kind not in "uib":
            raise TypeError(f"{name} must hold integer label ids; got dtype {np.dtype(a.dtype)} "
                            "(threshold or label probability maps first)")


def _pairs(gt_block: np.ndarray, pred_block: np.ndarray):
    """Unique (gt, pred, count) triplets of one in-memory block."""
    g = np.ascontiguousarray(gt_block).reshape(-1)
    p = np.ascontiguousarray(pred_block).reshape(-1)
    for name, a in (("gt", g), ("pred", p)):
        if a.dtype.kind == "i" and a.size and a.min() < 0:
            raise ValueError(f"{name} holds negative labels (min {a.min()}); label ids must be >= 0")
    if g.dtype == bool:
        g = g.view(np.uint8)
    if p.dtype == bool:
        p = p.view(np.uint8)
    g_local, g_map = fastremap.renumber(g, start=0, preserve_zero=False, in_place=False)
    p_local, p_map = fastremap.renumber(p, start=0, preserve_zero=False, in_place=False)
    g_ids = np.empty(len(g_map), np.uint64)
    g_ids[np.fromiter(g_map.values(), np.int64, len(g_map))] = np.fromiter(g_map.keys(), np.uint64, len(g_map))
    p_ids = np.empty(len(p_map), np.uint64)
    p_ids[np.fromiter(p_map.values(), np.int64, len(p_map))] = np.fromiter(p_map.keys(), np.uint64, len(p_map))
    n_p = len(p_map)
    if len(g_map) * n_p <= max(4 * g.size, 2**24):
        key = g_local.astype(np.int64) * n_p + p_local.astype(np.int64)
        counts = np.bincount(key, minlength=len(g_map) * n_p)
        nz = np.flatnonzero(counts)
        return g_ids[nz // n_p], p_ids[nz % n_p], counts[nz]
    key = g_local.astype(np.int64) * n_p + p_local.astype(np.int64)  # many ids: sort the (fewer) pairs
    uniq, counts = np.unique(key, return_counts=True)
    return g_ids[uniq // n_p], p_ids[uniq % n_p], counts


def _merge(parts) -> Contingency:
    if not parts:
        return Contingency(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int64))
    g = np.concatenate([p[0] for p in parts])
    p = np.concatenate([p[1] for p in parts])
    c = np.concatenate([p[2] for p in parts]).astype(np.int64)
    order = np.lexsort((p, g))
    g, p, c = g[order], p[order], c[order]
    if len(parts) > 1:
        start = np.ones(len(g), bool)
        start[1:] = (g[1:] != g[:-1]) | (p[1:] != p[:-1])
        idx = np.flatnonzero(start)
        g, p, c = g[idx], p[idx], np.add.reduceat(c, idx)
    return Contingency(g, p, c)


def contingency_table(gt, pred, *, mask=None, block_shape=None, max_block_voxels=2**22, workers=None) -> Contingency:
    """Count the voxels of every (gt label, pred label) pair in one pass.

    Parameters
    ----------
    gt, pred : array-like of int
        Label volumes of the same shape: numpy arrays, or lazy volumes (``emseg.io.Volume``,
        h5py/zarr arrays) which are then read block by block with bounded memory.
    mask : array-like of bool, optional
        Count only voxels where ``mask`` is True.
    block_shape : tuple of int, optional
        Blocks to read; by default aligned to ``gt``'s storage chunks, at most ``max_block_voxels``.
    workers : int, optional
        Threads counting blocks in parallel (default: the number of CPUs, at most 8). Memory is
        about ``workers`` blocks plus the table.

    Returns
    -------
    Contingency

    Notes
    -----
    Equal to ``skimage.metrics.contingency_table(gt, pred)`` (which returns the same counts as a
    dense-indexed sparse matrix) for every input; labels are kept as their original ids.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    check_labels(gt, pred)
    if mask is not None and tuple(mask.shape) != tuple(gt.shape):
        raise ValueError(f"mask must have the shape of gt {tuple(gt.shape)}; got {tuple(mask.shape)}")
    shape = tuple(gt.shape)
    if block_shape is None:
        chunks = getattr(gt, "chunks", None) or (1,) * len(shape)
        chunks = tuple(int(c) if c else 1 for c in chunks)
        block_shape = aligned_block_shape(shape, chunks, 1, max_block_voxels)

    def count(roi):
        g, p = np.asarray(gt[roi]), np.asarray(pred[roi])
        if mask is not None:
            m = np.asarray(mask[roi]).astype(bool)
            g, p = g[m], p[m]
            if not g.size:
                return None
        return _pairs(g, p)

    rois = block_slices(shape, block_shape)
    workers = max(1, min(workers or os.cpu_count() or 1, 8, len(rois)))
    parts = []
    with ThreadPoolExecutor(workers) as pool:  # fastremap and numpy release the GIL for most of the work
        for start in range(0, len(rois), 8 * workers):  # a window of blocks: memory stays bounded
            parts.extend(r for r in pool.map(count, rois[start:start + 8 * workers]) if r is not None)
            if len(parts) > 64:  # objects span blocks: merging often keeps the triplets few
                t = _merge(parts)
                parts = [(t.gt_ids, t.pred_ids, t.counts)]
    return _merge(parts)
