"""Instance scores: IoU matching (F1, accuracy), COCO average precision, AJI and panoptic quality.

Every score here is a function of the contingency table (:func:`contingency_table`): instance
sizes are its row and column sums and the IoU of every overlapping (gt, pred) pair is
``n_ij / (a_i + b_j - n_ij)`` on its triplets, so nothing reads the voxels again and the table
can be passed in as ``table=``. Label 0 is background in gt and pred alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .contingency import Contingency, check_labels, contingency_table

__all__ = ["COCO_IOU_THRESHOLDS", "MatchedPairs", "Matching", "AveragePrecision", "PanopticQuality",
           "match_instances", "match_instances_thresholds", "average_precision",
           "aggregated_jaccard_index", "panoptic_quality"]

#: 0.50, 0.55, ..., 0.95 as COCO builds them (``np.arange`` drifts: its 0.7 is 0.7000000000000002).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's 101 recall points, built the same way


class _Overlaps(NamedTuple):
    gt_ids: np.ndarray      # non-zero gt labels and their sizes
    gt_sizes: np.ndarray
    pred_ids: np.ndarray    # non-zero pred labels and their sizes
    pred_sizes: np.ndarray
    g: np.ndarray           # per overlapping pair: index into gt_ids, pred_ids, intersection, IoU
    p: np.ndarray
    inter: np.ndarray
    iou: np.ndarray


def _overlaps(gt, pred, table) -> _Overlaps:
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
    return _Overlaps(gu[gfg], gsz, pu[pfg], psz, g, p, inter, inter / (gsz[g] + psz[p] - inter))


def _thresholds(values, name: str) -> np.ndarray:
    try:
        t = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError):
        t = np.array([np.nan])
    if t.ndim != 1 or t.size == 0 or not np.all((t > 0) & (t <= 1)):
        raise ValueError(f"{name} must be IoU thresholds in (0, 1]; got {values!r}")
    return t


def _ratio(num, den) -> float:
    return float(num) / float(den) if den else float("nan")


def _max_weight_matching(g, p, w, *, count_first: bool) -> np.ndarray:
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


def _match(ov: _Overlaps, tau: float) -> Matching:
    cand = np.flatnonzero(ov.iou >= tau)
    k = cand[_max_weight_matching(ov.g[cand], ov.p[cand], ov.iou[cand], count_first=True)]
    tp = len(k)
    fp, fn = len(ov.pred_ids) - tp, len(ov.gt_ids) - tp
    pairs = MatchedPairs(ov.gt_ids[ov.g[k]], ov.pred_ids[ov.p[k]], ov.iou[k])
    return Matching(tp, fp, fn, _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn),
                    _ratio(tp, tp + fp + fn), _ratio(pairs.iou.sum(), tp), pairs, float(tau))


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
    tau = _thresholds(iou_threshold, "iou_threshold")
    if tau.size != 1:
        raise ValueError(f"iou_threshold must be one number; got {iou_threshold!r} "
                         "(use match_instances_thresholds for several)")
    return _match(_overlaps(gt, pred, table), float(tau[0]))


def match_instances_thresholds(gt=None, pred=None, thresholds=COCO_IOU_THRESHOLDS, *, table=None) -> list[Matching]:
    """:func:`match_instances` at each of ``thresholds`` (each in (0, 1]), from one table.

    Examples
    --------
    >>> gt = np.array([[1, 1, 1, 1, 0, 2, 2]])
    >>> pred = np.array([[5, 5, 5, 0, 0, 0, 7]])
    >>> [m.tp for m in match_instances_thresholds(gt, pred, [0.5, 0.7, 0.9])]
    [2, 1, 0]
    """
    ov = _overlaps(gt, pred, table)
    return [_match(ov, float(t)) for t in _thresholds(thresholds, "thresholds")]


@dataclass(frozen=True)
class AveragePrecision:
    """COCO-style AP: ``ap[τ]`` per threshold (keys rounded to 12 decimals), ``map`` their mean."""

    ap: dict
    map: float
    ap50: float
    ap75: float


def _scores(scores, ov: _Overlaps) -> np.ndarray:
    ids = ov.pred_ids
    if scores is None:
        return np.zeros(len(ids))
    if isinstance(scores, str):
        if scores != "size":
            raise ValueError(f"scores must be None, 'size', a dict or an array; got {scores!r}")
        return ov.pred_sizes.astype(np.float64)
    if isinstance(scores, dict):
        missing = [int(i) for i in ids if int(i) not in scores]
        if missing:
            raise ValueError(f"scores has no entry for pred ids {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        s = np.array([scores[int(i)] for i in ids], dtype=np.float64)
    else:
        arr = np.asarray(scores, dtype=np.float64)
        if arr.ndim != 1 or (len(ids) and arr.size <= int(ids.max())):
            raise ValueError(f"scores as an array must be 1D and indexed by pred id (length > {int(ids.max())}); "
                             f"got shape {arr.shape}")
        s = arr[ids.astype(np.int64)]
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite numbers")
    return s


def _ap_at(ov, tau, s, order, g_ignored, p_outside, n_gt) -> float:
    """AP at one threshold; ``order`` lists the preds by decreasing score (ties by id)."""
    cand = np.flatnonzero(ov.iou >= tau)
    g, p = ov.g[cand], ov.p[cand]
    matched_g = np.full(len(ov.pred_ids), -1)
    if len(cand) and (np.bincount(g).max() > 1 or np.bincount(p).max() > 1):
        # conflicts (possible only for τ <= 0.5): each pred in rank order takes the free gt of
        # highest IoU, non-ignored gt first, equal IoU -> the later gt, as cocoeval's loop does
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        taken = np.zeros(len(ov.gt_ids), bool)
        for k in cand[np.lexsort((-g, -ov.iou[cand], g_ignored[g], rank[p]))]:
            gk, pk = ov.g[k], ov.p[k]
            if matched_g[pk] < 0 and not taken[gk]:
                matched_g[pk], taken[gk] = gk, True
    else:
        matched_g[p] = g
    matched = matched_g >= 0
    ignored = np.where(matched, g_ignored[np.maximum(matched_g, 0)], p_outside)
    kept = order[~ignored[order]]
    tp = np.cumsum(matched[kept])
    fp = np.arange(1, len(kept) + 1) - tp
    ends = np.append(s[kept][1:] != s[kept][:-1], True)[: len(kept)]  # last of each run of equal scores
    tp, fp = tp[ends], fp[ends]
    recall, precision = tp / n_gt, tp / np.maximum(tp + fp, 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # interpolated: best at any higher recall
    idx = np.searchsorted(recall, _RECALL_POINTS, side="left")
    found = idx < len(recall)  # recall points never reached keep precision 0
    return float(precision[idx[found]].sum() / len(_RECALL_POINTS))


def average_precision(gt=None, pred=None, *, scores=None, iou_thresholds=COCO_IOU_THRESHOLDS,
                      area_range=None, table=None) -> AveragePrecision:
    """COCO average precision of an instance segmentation, in 2D or 3D.

    Parameters
    ----------
    gt, pred : array-like of int
        Label arrays of the same shape, 0 = background; ignored when ``table`` is given.
    scores : None, 'size', dict or array
        Confidence of each pred instance: ``{pred_id: score}``, or an array indexed by pred id;
        ``'size'`` ranks by voxel count (mAP_3Dvolume's default). None gives all the same score.
    iou_thresholds : sequence of float
        IoU thresholds in (0, 1]; COCO's 0.50:0.05:0.95 by default. AP at 0.5 and 0.75 is always
        computed for ``ap50`` and ``ap75``.
    area_range : (float, float), optional
        COCO's ``areaRng`` in voxels: gt outside [min, max] are ignored (not needed for recall),
        preds matched to them or unmatched and outside the range are not counted.
    table : Contingency, optional
        ``contingency_table(gt, pred)``, computed once and reused.

    Returns
    -------
    AveragePrecision
        nan everywhere when gt has no (in-range) instance, as COCO's -1 "absent" marker.

    Notes
    -----
    Predictions are ranked by decreasing score. At threshold τ each, in turn, is matched to the
    unmatched gt of highest IoU >= τ (greedy; one-to-one). With TP(k) the matches among the top
    k and N the number of gt, P(k) = TP(k)/k, R(k) = TP(k)/N; the interpolated precision
    p̂(r) = max{P(k) : R(k) >= r} is averaged over the 101 recall points r = 0, 0.01, ..., 1:
    ``AP_τ = Σ_r p̂(r) / 101``, ``mAP = mean_τ AP_τ`` (Lin et al. 2014, ECCV; pycocotools'
    ``COCOeval`` with iouType 'segm', equal to it to 1e-9 in the tests). Equal scores form one
    operating point, so AP does not depend on the ids' order; COCO breaks such ties by list
    order. With ``scores=None`` AP is thus the single point (P, R): P × (number of recall points
    <= R) / 101. Unlike COCO's default maxDets=100, all predictions are kept.

    MitoEM (Wei et al. 2020, MICCAI) is scored by mAP_3Dvolume (github.com/ygCoconut/mAP_3Dvolume,
    ``vol3d_util.seg_iou3d`` + ``vol3d_eval.VOL3Deval``): this COCO computation on 3D instances,
    without a maxDets cap; its "AP-75" is ``ap75`` here. NucMM (Lin et al. 2021, MICCAI), from
    the same group, reports the same AP; we did not find its scoring script. mAP_3Dvolume differs
    in details: each pred takes its highest-IoU gt with no one-to-one bookkeeping (the same for
    τ > 0.5, where partners are unique); without a score file it ranks by instance size
    (``scores='size'``); equal scores fall in an arbitrary (unstable sort) order; its
    small/medium/large ranges (voxel counts split at 5e3 and 3e4 by default) are half-open
    (lo, hi] and match each pred to its best gt inside the range, unlike COCO's rule that
    ``area_range`` follows; and its ``--threshold-crumb`` option (2000 voxels) discards small
    incomplete gt objects, which is left to the caller here.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2, 0, 0]])
    >>> pred = np.array([[1, 1, 0, 2, 2, 0, 3]])  # two exact matches and one extra
    >>> average_precision(gt, pred, scores={1: 0.9, 2: 0.8, 3: 0.1}).map  # extra ranked last
    1.0
    >>> round(average_precision(gt, pred, scores={1: 0.9, 2: 0.8, 3: 0.95}).ap50, 4)  # first
    0.6667
    """
    taus = _thresholds(iou_thresholds, "iou_thresholds")
    ov = _overlaps(gt, pred, table)
    s = _scores(scores, ov)
    if area_range is None:
        g_ignored, p_outside = np.zeros(len(ov.gt_ids), bool), np.zeros(len(ov.pred_ids), bool)
    else:
        lo, hi = (float(v) for v in area_range)
        if not lo <= hi:
            raise ValueError(f"area_range must be (min, max) voxel counts with min <= max; got {area_range!r}")
        g_ignored = (ov.gt_sizes < lo) | (ov.gt_sizes > hi)
        p_outside = (ov.pred_sizes < lo) | (ov.pred_sizes > hi)
    n_gt = int((~g_ignored).sum())
    order = np.lexsort((ov.pred_ids, -s))
    ap = {}
    for tau in np.concatenate([taus, [0.5, 0.75]]):
        key = round(float(tau), 12)
        if key not in ap:
            ap[key] = _ap_at(ov, tau, s, order, g_ignored, p_outside, n_gt) if n_gt else float("nan")
    per = {round(float(t), 12): ap[round(float(t), 12)] for t in taus}
    return AveragePrecision(per, float(np.mean(list(per.values()))), ap[0.5], ap[0.75])


def aggregated_jaccard_index(gt=None, pred=None, *, aji_plus=False, table=None) -> float:
    """Aggregated Jaccard Index (AJI) of Kumar et al. 2017, or AJI+ of Graham et al. 2019.

    Parameters
    ----------
    gt, pred : array-like of int
        Label arrays of the same shape, 0 = background; ignored when ``table`` is given.
    aji_plus : bool
        Pair gt and pred one-to-one (AJI+) instead of letting several gt pick the same pred.
    table : Contingency, optional
        ``contingency_table(gt, pred)``, computed once and reused.

    Returns
    -------
    float
        In [0, 1], higher is better; nan when gt and pred both have no instance.

    Notes
    -----
    Each gt object G_i picks the overlapping pred P_j of highest IoU (lowest id on ties):
    ``AJI = Σ_i |G_i ∩ P_j(i)| / (Σ_i |G_i ∪ P_j(i)| + Σ_{P unused} |P|)``, where a gt without
    overlap adds |G_i| to the union and every pred picked by no gt adds its size (Kumar et al.
    2017, IEEE TMI 36(7):1550). A pred can be picked by several gt (a merge), and then enters
    each of their unions. AJI+ (Graham et al. 2019, Med. Image Anal. 58:101563) instead pairs
    gt and pred one-to-one by maximal total IoU (an optimal assignment, as HoVer-Net's
    ``get_fast_aji_plus`` does with ``linear_sum_assignment``); the unpaired on both sides add
    their sizes to the union.

    Examples
    --------
    >>> gt = np.array([[1, 1, 1, 2]])
    >>> pred = np.array([[1, 1, 1, 1]])  # a merge: both gt pick pred 1
    >>> aggregated_jaccard_index(gt, pred), aggregated_jaccard_index(gt, pred, aji_plus=True)
    (0.5, 0.6)
    """
    ov = _overlaps(gt, pred, table)
    if aji_plus:
        k = _max_weight_matching(ov.g, ov.p, ov.iou, count_first=False)
    else:
        order = np.lexsort((ov.p, -ov.iou, ov.g))  # per gt: highest IoU first, then lowest pred
        first = np.append(True, ov.g[order][1:] != ov.g[order][:-1]) if len(order) else np.zeros(0, bool)
        k = order[first]
    inter = ov.inter[k]
    union = ov.gt_sizes[ov.g[k]] + ov.pred_sizes[ov.p[k]] - inter
    g_free = np.ones(len(ov.gt_ids), bool)
    g_free[ov.g[k]] = False
    p_free = np.ones(len(ov.pred_ids), bool)
    p_free[ov.p[k]] = False
    total = union.sum() + ov.gt_sizes[g_free].sum() + ov.pred_sizes[p_free].sum()
    return _ratio(inter.sum(), total)


@dataclass(frozen=True)
class PanopticQuality:
    """Panoptic quality PQ = SQ × RQ for one "thing" class, with its match counts."""

    pq: float
    sq: float
    rq: float
    tp: int
    fp: int
    fn: int


def panoptic_quality(gt=None, pred=None, *, table=None) -> PanopticQuality:
    """Panoptic quality of Kirillov et al. 2019 for instances of one class.

    Parameters
    ----------
    gt, pred : array-like of int
        Label arrays of the same shape, 0 = background; ignored when ``table`` is given.
    table : Contingency, optional
        ``contingency_table(gt, pred)``, computed once and reused.

    Returns
    -------
    PanopticQuality
        pq, sq and rq are nan when gt and pred both have no instance (panopticapi skips such a
        class); sq is 0 when there is no match but some FP or FN, as in panopticapi.

    Notes
    -----
    Matches are the pairs with IoU > 0.5 (strictly; unique without any assignment step).
    ``SQ = Σ_TP IoU / TP``, ``RQ = TP / (TP + FP/2 + FN/2)``, ``PQ = SQ × RQ`` (Kirillov et al.
    2019, CVPR, "Panoptic Segmentation"; panopticapi's ``pq_compute``). Label 0 is background
    and counts in unions; COCO's void label, removed from unions by panopticapi, does not exist
    here.

    Examples
    --------
    >>> gt = np.array([[1, 1, 1, 1, 0, 2, 2]])
    >>> pred = np.array([[5, 5, 5, 0, 0, 0, 7]])  # IoUs 3/4 (a match) and 1/2 (not > 1/2)
    >>> r = panoptic_quality(gt, pred)
    >>> r.tp, r.fp, r.fn, r.sq, r.rq, r.pq
    (1, 1, 1, 0.75, 0.5, 0.375)
    """
    ov = _overlaps(gt, pred, table)
    m = ov.iou > 0.5
    tp = int(m.sum())
    fp, fn = len(ov.pred_ids) - tp, len(ov.gt_ids) - tp
    if tp + fp + fn == 0:
        nan = float("nan")
        return PanopticQuality(nan, nan, nan, 0, 0, 0)
    sq = float(ov.iou[m].sum() / tp) if tp else 0.0
    rq = tp / (tp + 0.5 * fp + 0.5 * fn)
    return PanopticQuality(sq * rq, sq, rq, tp, fp, fn)
