"""One-to-one matching of gt and pred instances by IoU, the core of every instance score.

Every instance score is a function of the contingency table (:func:`contingency_table`):
instance sizes are its row and column sums and the IoU of every overlapping (gt, pred) pair is
``n_ij / (a_i + b_j - n_ij)`` on its triplets, so nothing reads the voxels again and the table
can be passed in as ``table=``. Label 0 is background in gt and pred alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .contingency import Contingency, check_labels, contingency_table

__all__ = ["COCO_IOU_THRESHOLDS", "MatchedPairs", "Matching", "match_instances", "match_instances_thresholds"]

#: 0.50, 0.55, ..., 0.95 as COCO builds them (``np.arange`` drifts: its 0.7 is 0.7000000000000002).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


class Overlaps(NamedTuple):
    """The nonzero instances of gt and pred and every overlapping pair, from one contingency table."""

    gt_ids: np.ndarray      # non-zero gt labels and their sizes
    gt_sizes: np.ndarray
    pred_ids: np.ndarray    # non-zero pred labels and their sizes
    pred_sizes: np.ndarray
    g: np.ndarray           # per overlapping pair: index into gt_ids, pred_ids, intersection, IoU
    p: np.ndarray
    inter: np.ndarray
    iou: np.ndarray


def overlaps(gt, pred, table) -> Overlaps:
    """:class:`Overlaps` of ``table``, or of ``contingency_table(gt, pred)`` when it is None."""
    if table is None:
        if gt is None or pred is None:
            raise TypeError("pass gt and pred label arrays, or a precomputed table=contingency_table(gt, pred)")
        gt, pred = (a if hasattr(a, "shape") else np.asarray(a) for a in (gt, pred))
        check_labels(gt, pred)
        table = contingency_table(gt, pred)
    elif not isinstance(table, Contingency):
        raise TypeError(f"table must be a Contingency from contingency_table(gt, pred); got {type(table).__name__}")
    gu, gi, pu, pi = table.dense_indices()
    gs, ps = table.sizes()
    gfg, pfg = gu != 0, pu != 0
    both = (table.gt_ids != 0) & (table.pred_ids != 0)
    g, p = (np.cumsum(gfg) - 1)[gi[both]], (np.cumsum(pfg) - 1)[pi[both]]
    inter = table.counts[both].astype(np.int64)
    gsz, psz = gs[gfg], ps[pfg]
    return Overlaps(gu[gfg], gsz, pu[pfg], psz, g, p, inter, inter / (gsz[g] + psz[p] - inter))


def check_iou_thresholds(values, name: str) -> np.ndarray:
    """``values`` as a 1D float array of IoU thresholds in (0, 1]; ValueError naming ``name``."""
    try:
        t = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError):
        t = np.array([np.nan])
    if t.ndim != 1 or t.size == 0 or not np.all((t > 0) & (t <= 1)):
        raise ValueError(f"{name} must be IoU thresholds in (0, 1]; got {values!r}")
    return t


def ratio(num, den) -> float:
    """``num / den``, nan when ``den`` is 0."""
    return float(num) / float(den) if den else float("nan")


def max_weight_matching(g, p, w, *, count_first: bool) -> np.ndarray:
    """Indices of the pairs ``(g[k], p[k])`` in a one-to-one matching of maximum total weight ``w > 0``.

    With ``count_first`` the matching has the most pairs, ties broken by total weight (StarDist).
    Pairs that conflict with no other are kept as they are; the rest go to scipy's sparse
    assignment solver (LAPJVsp), never to a dense n_gt x n_pred matrix.
    """
    free = (np.bincount(g)[g] == 1) & (np.bincount(p)[p] == 1)
    if free.all():
        return np.arange(len(g))
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    rest = np.flatnonzero(~free)
    ug, gi = np.unique(g[rest], return_inverse=True)
    up, pi = np.unique(p[rest], return_inverse=True)
    n_g, n_p, n = len(ug), len(up), len(rest)
    weight = 1.0 + w[rest] / (2.0 * min(n_g, n_p)) if count_first else w[rest]
    # Rows: gt, then one stand-in per pred; columns: pred, then one stand-in per gt. A gt may stay
    # unmatched (its own stand-in), so may a pred, and the stand-ins of a matched pair pair up
    # along a copy of that pair; every full matching is a matching plus a constant cost.
    cost = float(weight.max()) + 1.0
    rows = np.concatenate([gi, np.arange(n_g), n_g + np.arange(n_p), n_g + pi])
    cols = np.concatenate([pi, n_p + np.arange(n_g), np.arange(n_p), n_p + gi])
    vals = np.concatenate([cost - weight, np.full(n_g + n_p + n, cost)])
    graph = csr_array((vals, (rows, cols)), shape=(n_g + n_p, n_g + n_p))
    r, c = min_weight_full_bipartite_matching(graph)
    real = (r < n_g) & (c < n_p)
    key = gi.astype(np.int64) * n_p + pi
    order = np.argsort(key)
    chosen = rest[order[np.searchsorted(key[order], r[real].astype(np.int64) * n_p + c[real])]]
    return np.sort(np.concatenate([np.flatnonzero(free), chosen]))


class MatchedPairs(NamedTuple):
    """Matched instances: ``gt[k]`` is matched to ``pred[k]`` with IoU ``iou[k]``."""

    gt: np.ndarray
    pred: np.ndarray
    iou: np.ndarray


@dataclass(frozen=True, eq=False)
class Matching:
    """One-to-one instance matching at one IoU threshold.

    Ratios with a zero denominator are nan (StarDist reports 0 there).
    """

    tp: int
    fp: int
    fn: int
    precision: float         # TP / (TP + FP)
    recall: float            # TP / (TP + FN)
    f1: float                # 2TP / (2TP + FP + FN)
    accuracy: float          # TP / (TP + FP + FN), StarDist's "accuracy"; not COCO AP
    mean_matched_iou: float  # mean IoU of the TP pairs
    pairs: MatchedPairs
    iou_threshold: float


def _match(ov: Overlaps, tau: float) -> Matching:
    cand = np.flatnonzero(ov.iou >= tau)
    k = cand[max_weight_matching(ov.g[cand], ov.p[cand], ov.iou[cand], count_first=True)]
    tp = len(k)
    fp, fn = len(ov.pred_ids) - tp, len(ov.gt_ids) - tp
    pairs = MatchedPairs(ov.gt_ids[ov.g[k]], ov.pred_ids[ov.p[k]], ov.iou[k])
    return Matching(tp, fp, fn, ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(2 * tp, 2 * tp + fp + fn),
                    ratio(tp, tp + fp + fn), ratio(pairs.iou.sum(), tp), pairs, float(tau))


def match_instances(gt=None, pred=None, *, iou_threshold=0.5, table=None) -> Matching:
    """Match gt and pred instances one-to-one at an IoU threshold and count TP, FP and FN.

    Parameters
    ----------
    gt, pred : array-like of int
        Label arrays (2D or 3D) of the same shape, 0 = background; ignored when ``table`` is given.
    iou_threshold : float
        A pair can match when its IoU >= ``iou_threshold``, in (0, 1].
    table : Contingency, optional
        ``contingency_table(gt, pred)``, computed once and reused.

    Returns
    -------
    Matching

    Raises
    ------
    ValueError
        If the shapes differ, a label is negative or the threshold is outside (0, 1].
    TypeError
        If a label array is not of integer dtype.

    Notes
    -----
    With IoU(G, P) = |G ∩ P| / |G ∪ P|: precision = TP/(TP+FP), recall = TP/(TP+FN),
    F1 = 2TP/(2TP+FP+FN) and accuracy = TP/(TP+FP+FN), the score-free "average precision" of
    the DSB 2018 / StarDist (Schmidt et al. 2018, MICCAI) papers; it is *not* COCO AP, which
    ranks predictions by score (see :func:`average_precision`).
    For τ > 0.5 a gt overlaps at most one pred with IoU >= τ and vice versa, so every candidate
    pair is a match. Otherwise conflicting candidates are resolved as StarDist's ``matching``
    does: the most matches, ties broken by the largest total IoU (an optimal assignment, here
    over the sparse candidate pairs with IoU >= τ instead of StarDist's dense matrix).

    Examples
    --------
    >>> gt = np.array([[1, 1, 1, 1, 0, 2, 2]])
    >>> pred = np.array([[5, 5, 5, 0, 0, 0, 7]])  # IoUs 3/4 and 1/2
    >>> m = match_instances(gt, pred, iou_threshold=0.7)
    >>> m.tp, m.fp, m.fn, m.f1, m.pairs.pred.tolist()
    (1, 1, 1, 0.5, [5])
    """
    tau = check_iou_thresholds(iou_threshold, "iou_threshold")
    if tau.size != 1:
        raise ValueError(f"iou_threshold must be one number; got {iou_threshold!r} "
                         "(use match_instances_thresholds for several)")
    return _match(overlaps(gt, pred, table), float(tau[0]))


def match_instances_thresholds(gt=None, pred=None, thresholds=COCO_IOU_THRESHOLDS, *, table=None) -> list[Matching]:
    """:func:`match_instances` at each of ``thresholds`` (each in (0, 1]), from one table.

    Examples
    --------
    >>> gt = np.array([[1, 1, 1, 1, 0, 2, 2]])
    >>> pred = np.array([[5, 5, 5, 0, 0, 0, 7]])
    >>> [m.tp for m in match_instances_thresholds(gt, pred, [0.5, 0.7, 0.9])]
    [2, 1, 0]
    """
    ov = overlaps(gt, pred, table)
    return [_match(ov, float(t)) for t in check_iou_thresholds(thresholds, "thresholds")]
