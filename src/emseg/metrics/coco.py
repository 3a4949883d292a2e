"""COCO average precision of an instance segmentation, in 2D or 3D (MitoEM's mAP_3Dvolume)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .matching import COCO_IOU_THRESHOLDS, Overlaps, overlaps, check_iou_thresholds

__all__ = ["AveragePrecision", "average_precision"]

_RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's 101 recall points, built as COCO_IOU_THRESHOLDS


@dataclass(frozen=True)
class AveragePrecision:
    """COCO-style AP: ``ap[τ]`` per threshold (keys rounded to 12 decimals), ``map`` their mean."""

    ap: dict
    map: float
    ap50: float
    ap75: float


def _scores(scores, ov: Overlaps) -> np.ndarray:
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
    taus = check_iou_thresholds(iou_thresholds, "iou_thresholds")
    ov = overlaps(gt, pred, table)
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
