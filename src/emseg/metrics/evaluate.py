"""Evaluate a prediction against ground truth with any set of metrics, computing the shared
contingency table once; the engine behind ``emseg evaluate``."""

from __future__ import annotations

import math

import numpy as np

from .contingency import check_labels, contingency_table
from .semantic import binarize

__all__ = ["evaluate", "METRICS", "TASKS"]

# metric name -> task it belongs to; "all" within a task means every metric of that task
METRICS = {
    "accuracy": "semantic", "precision": "semantic", "recall": "semantic", "specificity": "semantic",
    "dice": "semantic", "f1": "semantic", "iou": "semantic", "jaccard": "semantic", "conformity": "semantic",
    "pixel_error": "semantic",
    "ap": "instance", "pq": "instance", "aji": "instance", "matching": "instance",
    "rand": "neurons", "adapted_rand": "neurons", "voi": "neurons", "cremi": "neurons",
    "v_rand": "membranes", "v_info": "membranes", "warping_error": "membranes",
}
TASKS = ("semantic", "instance", "neurons", "membranes")
DEFAULTS = {
    "semantic": ("iou", "dice", "precision", "recall", "accuracy", "specificity", "conformity"),
    "instance": ("ap", "pq", "aji", "matching"),
    "neurons": ("adapted_rand", "voi", "cremi", "rand"),
    "membranes": ("v_rand", "v_info", "pixel_error", "warping_error"),
}


def _parse_metrics(metrics, task):
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}")
    if metrics is None or metrics == "all" or metrics == ["all"]:
        return list(DEFAULTS[task])
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; valid metrics: {', '.join(sorted(METRICS))}, all")
    return names


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else None


def evaluate(gt, pred, *, task="semantic", metrics=None, ignore_label=None, threshold=0.5, voxel_size=None,
             boundary_tolerance_nm=None, iou_threshold=0.5) -> dict:
    """Compute metrics of ``pred`` against ``gt``; returns a flat dict with snake_case keys.

    Parameters
    ----------
    gt, pred : array-like
        numpy arrays or lazy volumes. ``semantic``: masks/probabilities (nonzero / ``> threshold``
        is foreground). ``instance`` and ``neurons``: integer label ids. ``membranes``: gt cell
        labels (0 = membrane) and a predicted label image or membrane probability map.
    task : {"semantic", "instance", "neurons", "membranes"}
    metrics : str or list of str, optional
        Names from :data:`METRICS` (comma-separated string allowed) or ``"all"``; default: the
        task's usual set.
    ignore_label : int, optional
        gt label excluded (default: none for semantic, 0 for neurons as SNEMI3D/CREMI do).

    Examples
    --------
    >>> r = evaluate(np.array([0, 1, 1, 1]), np.array([0, 1, 1, 0]), metrics="iou,dice")
    >>> r["iou"], r["dice"]
    (0.6666666666666666, 0.8)
    """
    names = _parse_metrics(metrics, task)
    if tuple(gt.shape) != tuple(pred.shape):
        raise ValueError(f"gt and pred must have the same shape; got {tuple(gt.shape)} and {tuple(pred.shape)}")
    out: dict = {}
    semantic = [m for m in names if METRICS[m] == "semantic" and m != "pixel_error"]
    if semantic or ("pixel_error" in names and task != "membranes"):
        from .semantic import semantic_scores

        s = semantic_scores(gt, pred, threshold=threshold).as_dict()
        alias = {"f1": "dice", "jaccard": "iou"}
        for m in semantic:
            out[m] = _finite(s[alias.get(m, m)])
        if "pixel_error" in names and task != "membranes":
            out["pixel_error"] = 1.0 - s["accuracy"]
    label_metrics = [m for m in names if METRICS[m] in ("instance", "neurons")]
    if label_metrics:
        check_labels(gt, pred)
        table = contingency_table(gt, pred)
        ignore = (0,) if ignore_label is None else (ignore_label,)
        for m in label_metrics:
            out.update(_label_metric(m, gt, pred, table, ignore, iou_threshold, voxel_size, boundary_tolerance_nm))
    membrane = [m for m in names if METRICS[m] == "membranes" or (m == "pixel_error" and task == "membranes")]
    if membrane:
        out.update(_membrane_metrics(membrane, gt, pred, threshold))
    return out


def _label_metric(m, gt, pred, table, ignore, iou_threshold, voxel_size, tolerance):
    from . import clustering

    if m == "adapted_rand":
        r = clustering.adapted_rand_error(table=table, ignore_gt=ignore)
        return {"adapted_rand_error": r.error, "adapted_rand_precision": r.precision, "adapted_rand_recall": r.recall}
    if m == "voi":
        r = clustering.variation_of_information(table=table, ignore_gt=ignore)
        return {"voi_split": r.split, "voi_merge": r.merge, "voi": r.total}
    if m == "cremi":
        if tolerance:
            r = clustering.cremi_score(np.asarray(gt), np.asarray(pred), ignore_gt=ignore,
                                       boundary_tolerance_nm=tolerance, voxel_size=voxel_size)
        else:
            r = clustering.cremi_score(None, None, table=table, ignore_gt=ignore)
        return {"cremi_score": r.score}
    if m == "rand":
        r = clustering.rand_index(table=table, ignore_gt=ignore)
        return {"rand_index": r.rand_index, "rand_error": r.rand_error}
    from . import instance

    if m == "ap":
        r = instance.average_precision(gt, pred, table=table)
        return {"ap50": r.ap50, "ap75": r.ap75, "map": r.map}
    if m == "pq":
        r = instance.panoptic_quality(gt, pred, table=table)
        return {"pq": _finite(r.pq), "sq": _finite(r.sq), "rq": _finite(r.rq)}
    if m == "aji":
        return {"aji": _finite(instance.aggregated_jaccard_index(gt, pred, table=table))}
    r = instance.match_instances(gt, pred, iou_threshold=iou_threshold, table=table)
    tag = f"{int(round(iou_threshold * 100))}"
    return {f"tp{tag}": int(r.tp), f"fp{tag}": int(r.fp), f"fn{tag}": int(r.fn), f"precision{tag}": _finite(r.precision),
            f"recall{tag}": _finite(r.recall), f"f1_{tag}": _finite(r.f1), f"accuracy{tag}": _finite(r.accuracy)}


def _membrane_metrics(names, gt, pred, threshold):
    """ISBI 2012 scores. gt: cell labels or a cell mask (0 = membrane); pred: a label image, a cell
    mask, or a membrane probability map (float, 1 = membrane), for which V_rand/V_info are the
    challenge's best over thresholds 0.0–0.9."""
    from . import isbi

    gt, pred = np.asarray(gt), np.asarray(pred)
    gt_labels = isbi.label_cells(gt > 0) if np.unique(gt).size <= 2 else gt
    out = {}
    if pred.dtype.kind == "f":
        cells = 1.0 - pred  # cell-interior probability, the challenge's convention
        if "v_rand" in names or "v_info" in names:
            best = isbi.best_scores_from_probability(gt_labels, pred, membrane_is_high=True)
            out.update({k: getattr(best, k).score for k in ("v_rand", "v_info") if k in names})
        cell_mask = cells > threshold
    else:
        cell_mask = pred > 0
        labels = pred if np.unique(pred).size > 2 else isbi.label_cells(cell_mask)
        if "v_rand" in names:
            out["v_rand"] = isbi.v_rand(gt_labels, labels).score
        if "v_info" in names:
            out["v_info"] = isbi.v_info(gt_labels, labels).score
        cells = cell_mask
    if "pixel_error" in names:
        out["pixel_error"] = isbi.pixel_error(gt > 0, cell_mask)
    if "warping_error" in names:
        out["warping_error"] = isbi.warping_error(gt > 0, cells, threshold=threshold).error
    return out
