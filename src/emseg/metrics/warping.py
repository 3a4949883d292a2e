"""The topology-preserving warping error of Jain et al. 2010, as computed for ISBI 2012.

Conventions as :mod:`.isbi` (Fiji's ``trainableSegmentation/metrics/WarpingError.java``): 2D
images, a stack scored slice by slice; cell interior is foreground; the binary gt is relaxed
towards the prediction by flipping simple points only (cells 4-connected, membranes 8-connected,
outside the image = membrane). The flip and classify loops are compiled with numba when it is
installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .isbi import as_binary, as_fiji_probability, check_pair, label2d, planes

__all__ = ["WarpingResult", "warping_error"]


@dataclass(frozen=True, eq=False)
class WarpingResult:
    """Outcome of :func:`warping_error`.

    ``error`` = ``n_errors`` / number of pixels; ``n_splits`` and ``n_mergers`` count the
    remaining mismatched pixels that Fiji classifies as splits and mergers (``split_merge_error``
    is the ISBI "splits and mergers" warping error); ``warped`` is the warped gt (True = cell).
    """

    error: float
    n_errors: int
    n_splits: int
    n_mergers: int
    warped: np.ndarray

    @property
    def split_merge_error(self) -> float:
        return (self.n_splits + self.n_mergers) / self.warped.size


# ring of the 3x3 neighbourhood, clockwise from top-left; bit k of a code = ring pixel k is a cell
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
_OBJECT_ADDITION, _OBJECT_DELETION, _HOLE_ADDITION, _HOLE_DELETION, _MERGE, _SPLIT = range(1, 7)


def _simple_lut() -> np.ndarray:
    """Simple-point table for 4-connected cells / 8-connected membranes (Bertrand & Malandain 1994:
    T4(cells) == 1 and T8(membrane) == 1 in the 8-ring)."""
    lut = np.zeros(256, np.uint8)
    for code in range(256):
        fg = [(code >> k) & 1 for k in range(8)]
        if all(fg):
            continue  # no membrane around: flipping opens or fills a hole
        start, t4, touches = fg.index(0), 0, False  # T4: cyclic runs of cells holding a 4-neighbour
        for k in range(start + 1, start + 9):
            if fg[k % 8]:
                touches |= k % 2 == 1
            else:
                t4, touches = t4 + touches, False
        parent = list(range(8))  # T8: membrane ring pixels, 8-adjacent if consecutive or edge-edge

        def find(i):
            while parent[i] != i:
                i = parent[i]
            return i
        for k in range(8):
            for j in ((k + 1) % 8, (k + 2) % 8 if k % 2 else k):
                if not fg[k] and not fg[j]:
                    parent[find(k)] = find(j)
        t8 = len({find(k) for k in range(8) if not fg[k]})
        lut[code] = t4 == 1 and t8 == 1
    return lut


_SIMPLE_LUT = _simple_lut()


def _warp_loop(src, tgt, order, w, lut):  # pragma: no cover - compiled by numba
    """Flip mismatched simple pixels of ``src`` (flat, padded, in place) in ``order`` until none flips."""
    prev = -1
    while True:
        diff = 0
        for k in range(order.size):
            if src[order[k]] != tgt[order[k]]:
                diff += 1
        if diff == 0 or diff == prev:
            return diff
        prev = diff
        for k in range(order.size):
            i = order[k]
            if src[i] != tgt[i]:
                code = (src[i - w - 1] | (src[i - w] << 1) | (src[i - w + 1] << 2) | (src[i + 1] << 3)
                        | (src[i + w + 1] << 4) | (src[i + w] << 5) | (src[i + w - 1] << 6) | (src[i - 1] << 7))
                if lut[code]:
                    src[i] = 1 - src[i]


def _classify_loop(cells, comps, ys, xs):  # pragma: no cover - compiled by numba
    """Fiji's ``classifyMismatches2d`` (radius -1) for the remaining mismatches at (ys, xs)."""
    h, w = cells.shape
    codes = np.zeros(ys.size, np.int8)
    stamp = np.zeros(h * w, np.int64)
    stack = np.empty(h * w, np.int64)
    vals = np.empty(8, np.int64)
    for m in range(ys.size):
        y, x = ys[m], xs[m]
        nv, n_fg, has_bg = 0, 0, False
        for yy in range(max(y - 1, 0), min(y + 2, h)):
            for xx in range(max(x - 1, 0), min(x + 2, w)):
                if yy == y and xx == x:
                    continue
                v = comps[yy, xx]
                if v == 0:
                    has_bg = True
                else:
                    n_fg += 1
                seen = False
                for k in range(nv):
                    seen |= vals[k] == v
                if not seen:
                    vals[nv] = v
                    nv += 1
        centre = comps[y, x] != 0
        if nv == 1:
            if vals[0] == 0:
                codes[m] = _OBJECT_DELETION if centre else _OBJECT_ADDITION
            else:
                codes[m] = _HOLE_ADDITION if centre else _HOLE_DELETION
        elif nv >= 3:
            codes[m] = _SPLIT if centre else _MERGE
        elif not centre:
            codes[m] = _HOLE_ADDITION
        else:  # remove the pixel: do its cell neighbours fall into several 4-connected pieces?
            cells[y, x] = 0
            tid, pieces, reached = m + 1, 0, 0
            for yy in range(max(y - 1, 0), min(y + 2, h)):
                for xx in range(max(x - 1, 0), min(x + 2, w)):
                    s = yy * w + xx
                    if cells[yy, xx] == 0 or stamp[s] == tid:
                        continue
                    pieces += 1
                    stamp[s], stack[0], top = tid, s, 1
                    reached += 1
                    while top > 0 and reached < n_fg:
                        top -= 1
                        p = stack[top]
                        py, px = p // w, p % w
                        for qy, qx in ((py - 1, px), (py + 1, px), (py, px - 1), (py, px + 1)):
                            if 0 <= qy < h and 0 <= qx < w and cells[qy, qx] and stamp[qy * w + qx] != tid:
                                stamp[qy * w + qx] = tid
                                stack[top] = qy * w + qx
                                top += 1
                                if abs(qy - y) <= 1 and abs(qx - x) <= 1:
                                    reached += 1
            cells[y, x] = 1
            codes[m] = _SPLIT if pieces + has_bg > 2 else _HOLE_DELETION
    return codes


_KERNELS: dict = {}


def _kernels():
    if not _KERNELS:
        try:
            from numba import njit
            jit = njit(nogil=True)
        except ImportError:  # pragma: no cover - plain Python: correct, but slow on large images
            def jit(f):
                return f
        _KERNELS.update(warp=jit(_warp_loop), classify=jit(_classify_loop))
    return _KERNELS["warp"], _KERNELS["classify"]


def warping_error(gt, pred, *, threshold: float = 0.5) -> WarpingResult:
    """Topology-preserving warping error (Jain et al. 2010) as computed for ISBI 2012.

    Parameters
    ----------
    gt : array-like, 2D or 3D (z, y, x)
        Binary gt: True / 1 / 255 = cell interior, 0 = membrane (the ISBI label format).
    pred : array-like, same shape
        Binary prediction (same convention) or cell-interior probability in [0, 1].
    threshold : float
        Cells are ``pred > threshold``.

    Returns
    -------
    WarpingResult

    Raises
    ------
    ValueError
        If the shapes differ, gt is not binary, pred is neither binary nor in [0, 1], or
        ``threshold`` is outside [0, 1].

    Notes
    -----
    Per 2D slice (Fiji ``WarpingError.simplePointWarp2d``): the gt is relaxed towards the
    binarised prediction by flipping mismatched *simple* pixels (flipping them changes neither
    the 4-connected cells nor the 8-connected membranes; outside the image is membrane). Each
    sweep visits the mismatches in decreasing ``|pred - threshold|`` (ties column by column;
    0/255 maps keep their raw values, as in Fiji) and flips each that is simple at that moment;
    sweeps repeat until one flips nothing. The error is the number of remaining mismatches over
    the number of pixels. Remaining mismatches are
    classified as Fiji's ``classifyMismatches2d`` (whole image): a gt-membrane pixel touching
    ≥ 2 cells is a merger, a gt-cell pixel whose removal disconnects its cell is a split. Fiji
    sorts with a comparator quantised at 1e-4; here the order is exact (stable).
    Reference: Jain et al. (2010), Boundary learning by optimization with topological
    constraints, CVPR.

    Examples
    --------
    >>> gt = np.ones((5, 5), bool); gt[:, 2] = False     # two cells split by a membrane
    >>> pred = gt.copy(); pred[2, 2] = True               # a gap in the membrane: a merger
    >>> r = warping_error(gt, pred)
    >>> r.n_errors, r.n_mergers, r.error
    (1, 1, 0.04)
    """
    g = as_binary(gt, "gt")
    p = np.asarray(pred)
    if p.dtype.kind in "bui":
        as_binary(p, "pred")
        p = p.astype(np.float64)  # raw 0/1 or 0/255 values, which also set Fiji's flip order
    else:
        p = as_fiji_probability(p, "pred")
    check_pair(g, p)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1]; got {threshold!r}")
    warp, classify = _kernels()
    warped = np.empty(g.shape, bool)
    n_errors = n_splits = n_mergers = 0
    for gz, pz, wz in zip(planes(g), planes(p), planes(warped)):
        h, w = gz.shape
        src = np.zeros((h + 2, w + 2), np.uint8)
        tgt = np.zeros((h + 2, w + 2), np.uint8)
        src[1:-1, 1:-1] = gz
        tgt[1:-1, 1:-1] = pz > threshold
        scan = ((np.arange(1, h + 1)[:, None] * (w + 2)) + np.arange(1, w + 1)).T.ravel()  # column by column
        dist = np.abs(pz - threshold).astype(np.float32).T.ravel()
        order = scan if dist.min() == dist.max() else scan[np.argsort(-dist, kind="stable")]
        n_errors += int(warp(src.reshape(-1), tgt.reshape(-1), order, w + 2, _SIMPLE_LUT))
        wz[...] = src[1:-1, 1:-1]
        ys, xs = np.nonzero(src[1:-1, 1:-1] != tgt[1:-1, 1:-1])
        if ys.size:
            comps = label2d(wz)
            codes = classify(src[1:-1, 1:-1].copy(), comps, ys.astype(np.int64), xs.astype(np.int64))
            n_splits += int(np.count_nonzero(codes == _SPLIT))
            n_mergers += int(np.count_nonzero(codes == _MERGE))
    return WarpingResult(n_errors / g.size, n_errors, n_splits, n_mergers, warped)
