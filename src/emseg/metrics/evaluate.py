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
             boundary_tolerance_nm=None, iou_threshold=0.5, trusted=False) -> dict:
    """Compute metrics of ``pred`` against ``gt``; returns a flat dict with snake_case keys.

    Parameters
    ----------
    gt, pred : array-like
        numpy arrays or lazy volumes of the same shape (a one-channel prediction ``(1, *shape)``
        is read as its channel). ``semantic``: gt a mask or labels (nonzero is foreground); pred a
        mask/labels (nonzero) or probabilities (``> threshold``): float in [0, 1], or uint8
        ``round(255 p)`` when it is emseg's prediction (its marker) or when its content is a smooth
        many-valued map rather than flat labels. ``instance`` and ``neurons``: integer label ids.
        ``membranes``: gt cell labels (0 = membrane) and a predicted label image or membrane
        probability map.
    task : {"semantic", "instance", "neurons", "membranes"}
    metrics : str or list of str, optional
        Names from :data:`METRICS` (comma-separated string allowed) or ``"all"``; default: the
        task's usual set.
    ignore_label : int, optional
        gt label excluded (default: none for semantic, 0 for neurons as SNEMI3D/CREMI do).
    threshold : float in (0, 1)
        Foreground of a probability map is ``p > threshold``.
    iou_threshold : float in (0, 1]
        Instance matching.
    trusted : bool
        Skip the check that a float pred is not raw EM (a few sampled chunks).

    Raises
    ------
    ValueError
        Options out of range; shapes that differ; raw EM (or a probability map) where labels, a
        mask or probabilities are expected. Each message names the volume.

    Examples
    --------
    >>> r = evaluate(np.array([0, 1, 1, 1]), np.array([0, 1, 1, 0]), metrics="iou,dice")
    >>> r["iou"], r["dice"]
    (0.6666666666666666, 0.8)
    """
    names = _parse_metrics(metrics, task)
    _check_options(threshold, iou_threshold, boundary_tolerance_nm)
    gname, pname = _name(gt, "gt"), _name(pred, "pred")
    gshape, pshape = tuple(gt.shape), tuple(pred.shape)
    if len(pshape) == len(gshape) + 1 and pshape[1:] == gshape and pshape[0] == 1:
        pred, pshape = _Channel(pred), gshape
    if gshape != pshape:
        hint = (f"; {pname} has {pshape[0]} channels of gt's shape: evaluate one channel"
                if len(pshape) == len(gshape) + 1 and pshape[1:] == gshape else "")
        raise ValueError(f"gt and pred must have the same shape; got {gname} {gshape} and {pname} {pshape}{hint}")
    pred_probabilities = _check_inputs(gt, pred, task, gname, pname, trusted)
    out: dict = {}
    semantic = [m for m in names if METRICS[m] == "semantic" and m != "pixel_error"]
    if semantic or ("pixel_error" in names and task != "membranes"):
        from .semantic import semantic_scores

        s = semantic_scores(binarize(gt, name=gname), binarize(pred, threshold, pname, pred_probabilities),
                            threshold=threshold).as_dict()
        alias = {"f1": "dice", "jaccard": "iou"}
        for m in semantic:
            out[m] = _finite(s[alias.get(m, m)])
        if "pixel_error" in names and task != "membranes":
            out["pixel_error"] = 1.0 - s["accuracy"]
    label_metrics = [m for m in names if METRICS[m] in ("instance", "neurons")]
    if label_metrics:
        check_labels(gt, pred, names=(gname, pname))
        table = contingency_table(gt, pred)
        ignore = (0,) if ignore_label is None else (ignore_label,)
        for m in label_metrics:
            out.update(_label_metric(m, gt, pred, table, ignore, iou_threshold, voxel_size, boundary_tolerance_nm))
    membrane = [m for m in names if METRICS[m] == "membranes" or (m == "pixel_error" and task == "membranes")]
    if membrane:
        out.update(_membrane_metrics(membrane, gt, pred, threshold, pred_probabilities, pname))
    return out


def _number(v):
    return isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


def _check_options(threshold, iou_threshold, tolerance):
    if not _number(threshold) or not 0 < threshold < 1:
        raise ValueError(f"threshold={threshold!r} must lie in (0, 1): it applies to probability maps (foreground is "
                         "p > threshold); integer masks and labels are compared as nonzero")
    if not _number(iou_threshold) or not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold={iou_threshold!r} must lie in (0, 1] (a pred matches a gt object when their "
                         "IoU is at least this)")
    if tolerance is not None and (not _number(tolerance) or tolerance < 0):
        raise ValueError(f"boundary_tolerance_nm={tolerance!r} must be a distance >= 0 in nm")


def _name(vol, role):
    path, key = getattr(vol, "path", None), getattr(vol, "key", None)
    return f"{role} {path}:{key}" if path and key else f"{role} {path}" if path else role


class _Channel:
    """Lazy view of channel 0 of a (1, *shape) volume."""

    def __init__(self, vol):
        self.vol, self.shape, self.dtype = vol, tuple(vol.shape[1:]), np.dtype(vol.dtype)
        self.chunks = tuple(vol.chunks[1:]) if getattr(vol, "chunks", None) else None
        self._array = getattr(vol, "_array", None)
        self.attrs = getattr(vol, "attrs", None)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        return np.asarray(self.vol[(0,) + key])

    def __array__(self, dtype=None, copy=None):
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)


def _raw_like_labels(s) -> bool:
    """An integer volume that is textured like an image, not flat like a mask or labels."""
    if s.dtype == np.uint8:
        return s.distinct > 50 and s.looks_like_raw_em
    return s.distinct > 50 and s.equal < 0.5


def _check_inputs(gt, pred, task, gname, pname, trusted) -> bool:
    """Refuse raw EM where labels, masks or probabilities belong; True when pred is read as probabilities."""
    from ..probabilities import check_probability_source, is_prediction, sample_stats

    reads_probabilities = task in ("semantic", "membranes")
    gdt, pdt = np.dtype(gt.dtype), np.dtype(pred.dtype)
    what = "a mask or labels" if task == "semantic" else "labels"
    if gdt.kind in "ui":
        s = sample_stats(gt, gname)
        if _raw_like_labels(s):
            raise ValueError(f"{gname} looks like raw EM, not {what} ({s.distinct} distinct values in sampled chunks, "
                             f"{1 - s.equal:.0%} of neighbouring voxels differ); pass the ground truth")
    elif gdt.kind == "f" and reads_probabilities:
        check_probability_source(gt, gname, fix="pass the ground truth (a mask or labels)")
    if pdt.kind == "f":
        if reads_probabilities:
            check_probability_source(pred, pname, trusted=trusted, fix="pass a prediction (emseg predict) or a "
                                     "segmentation")
        return True
    if pdt.kind not in "ui":
        return False
    if is_prediction(pred):
        if not reads_probabilities:
            raise ValueError(f"{pname} is a probability map (emseg predict's output); the {task} task compares "
                             "instance labels: run emseg postprocess on it first")
        return True
    s = sample_stats(pred, pname)
    if not trusted and _raw_like_labels(s):
        raise ValueError(f"{pname} looks like raw EM, not a segmentation or a prediction ({s.raw_em_reason()}); pass "
                         "emseg's output (emseg predict, segment or postprocess)")
    smooth_map = pdt == np.uint8 and s.flat is not None and s.flat < 0.8 and s.distinct > 50
    if smooth_map and not reads_probabilities:
        raise ValueError(f"{pname} looks like a uint8 probability map (round(255 p)), not labels ({s.distinct} "
                         f"distinct values, {1 - s.flat:.0%} of mid-range voxels differ from their neighbour); the "
                         f"{task} task compares instance labels: run emseg postprocess on it first")
    return smooth_map


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


def _membrane_metrics(names, gt, pred, threshold, probabilities, pname="pred"):
    """ISBI 2012 scores. gt: cell labels or a cell mask (0 = membrane); pred: a label image, a cell
    mask, or a membrane probability map (float, 1 = membrane), for which V_rand/V_info are the
    challenge's best over thresholds 0.0–0.9."""
    from ..probabilities import as_probabilities
    from . import isbi

    gt, pred = np.asarray(gt), np.asarray(pred)
    gt_labels = isbi.label_cells(gt > 0) if np.unique(gt).size <= 2 else gt
    out = {}
    if probabilities:
        pred = as_probabilities(pred, pname)
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
