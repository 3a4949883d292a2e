"""Instance scores that pair objects their own way: AJI (AJI+) and panoptic quality.

Both are functions of the contingency table, through the overlaps of :mod:`.matching`; pass
``table=`` to compute them without reading the voxels again. Label 0 is background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .matching import max_weight_matching, overlaps, ratio

__all__ = ["PanopticQuality", "aggregated_jaccard_index", "panoptic_quality"]


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
    ov = overlaps(gt, pred, table)
    if aji_plus:
        k = max_weight_matching(ov.g, ov.p, ov.iou, count_first=False)
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
    return ratio(inter.sum(), total)


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
    ov = overlaps(gt, pred, table)
    m = ov.iou > 0.5
    tp = int(m.sum())
    fp, fn = len(ov.pred_ids) - tp, len(ov.gt_ids) - tp
    if tp + fp + fn == 0:
        nan = float("nan")
        return PanopticQuality(nan, nan, nan, 0, 0, 0)
    sq = float(ov.iou[m].sum() / tp) if tp else 0.0
    rq = tp / (tp + 0.5 * fp + 0.5 * fn)
    return PanopticQuality(sq * rq, sq, rq, tp, fp, fn)
