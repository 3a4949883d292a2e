"""Evaluate a prediction against ground truth with any set of metrics, computing the shared
contingency table once; the engine behind ``emseg evaluate``."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, check_bool, check_choice, check_number, split_options
from .contingency import check_labels, contingency_table
from .semantic import binarize, check_threshold
from .task import describe, infer_task, raw_like_labels, smooth_map

__all__ = ["evaluate", "EvaluateConfig", "METRICS", "METRIC_SETS"]

logger = logging.getLogger(__name__)

#: task -> its usual metrics, the set ``evaluate`` computes when no metrics are named
METRIC_SETS = {
    "semantic": ("iou", "dice", "precision", "recall", "accuracy", "specificity", "conformity"),
    "instance": ("ap", "pq", "aji", "matching"),
    "neurons": ("adapted_rand", "voi", "cremi", "rand"),
    "membranes": ("v_rand", "v_info", "pixel_error", "warping_error"),
}
#: metric name -> the set it belongs to; ``"all"`` in ``metrics`` means the task's set
METRICS = {
    "accuracy": "semantic", "precision": "semantic", "recall": "semantic", "specificity": "semantic",
    "dice": "semantic", "f1": "semantic", "iou": "semantic", "jaccard": "semantic", "conformity": "semantic",
    "pixel_error": "semantic",
    "ap": "instance", "pq": "instance", "aji": "instance", "matching": "instance",
    "rand": "neurons", "adapted_rand": "neurons", "voi": "neurons", "cremi": "neurons",
    "v_rand": "membranes", "v_info": "membranes", "warping_error": "membranes",
}


@dataclass(frozen=True)
class EvaluateConfig:
    """The options of :func:`evaluate`, checked when built (``ConfigError`` names the field).

    ``task``: one of :data:`METRIC_SETS`, or None to infer it from the volumes (:func:`infer_task`);
    ``metrics``: names from :data:`METRICS` (a comma-separated string or a sequence; ``"all"`` is
    the task's set), stored as a tuple; None: the task's set; ``ignore_label``: gt label left out
    of the neuron scores (default 0, as SNEMI3D and CREMI); ``threshold``: foreground of a
    probability map is ``p > threshold``; ``voxel_size``: nm, zyx (for ``boundary_tolerance_nm``,
    the CREMI boundary tolerance); ``iou_threshold``: instance matching; ``trusted``: skip the
    check that a float pred is not raw EM.

    Examples
    --------
    >>> EvaluateConfig(metrics="IoU, dice").metrics
    ('iou', 'dice')
    >>> EvaluateConfig(task="cells")
    Traceback (most recent call last):
    ...
    emseg.config.ConfigError: task must be one of semantic, instance, neurons, membranes; got 'cells'
    """

    task: str | None = None
    metrics: tuple[str, ...] | None = None
    ignore_label: int | None = None
    threshold: float = 0.5
    voxel_size: tuple[float, ...] | None = None
    boundary_tolerance_nm: float | None = None
    iou_threshold: float = 0.5
    trusted: bool = False

    def __post_init__(self):
        set_ = object.__setattr__
        if self.task is not None:
            check_choice("task", self.task, tuple(METRIC_SETS))
        set_(self, "metrics", _metric_names(self.metrics))
        set_(self, "ignore_label", check_number("ignore_label", _plain(self.ignore_label), int, (0, True),
                                                text="a label id >= 0", optional=True))
        set_(self, "threshold", check_threshold(self.threshold))
        set_(self, "voxel_size", _voxel_size(self.voxel_size))
        if self.boundary_tolerance_nm is not None:
            set_(self, "boundary_tolerance_nm", _in_range("boundary_tolerance_nm", self.boundary_tolerance_nm,
                                                          (0, True), None, "must be a distance >= 0 in nm"))
        set_(self, "iou_threshold", _in_range("iou_threshold", self.iou_threshold, (0, False), (1, True),
                                              "must lie in (0, 1] (a pred matches a gt object when their IoU is at "
                                              "least this)"))
        set_(self, "trusted", check_bool("trusted", _plain(self.trusted)))

    @property
    def named_metrics(self) -> bool:
        """True when the caller named the metrics (not None, not just ``"all"``)."""
        return self.metrics is not None and self.metrics != ("all",)


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _in_range(name, value, low, high, allowed):
    try:
        return check_number(name, _plain(value), float, low, high)
    except ConfigError:
        raise ConfigError(name, f"{name}={value!r} {allowed}") from None


def _metric_names(metrics):
    if metrics is None:
        return None
    if not isinstance(metrics, (str, list, tuple)) or not all(isinstance(m, str) for m in metrics):
        raise ConfigError("metrics", f"metrics must be names (a comma-separated string or a list); got {metrics!r}")
    items = metrics.split(",") if isinstance(metrics, str) else metrics
    names = tuple(dict.fromkeys(m.strip().lower() for m in items if m.strip()))
    unknown = [m for m in names if m not in METRICS and m != "all"]
    if unknown or not names:
        found = f"unknown metric(s) {', '.join(unknown)}" if unknown else f"metrics={metrics!r} names no metric"
        raise ConfigError("metrics", f"{found}; valid metrics: {', '.join(sorted(METRICS))}, all")
    return names


def _voxel_size(v):
    if v is None:
        return None
    try:
        return tuple(check_number("voxel_size", _plain(x), float, (0, False)) for x in v)
    except (ConfigError, TypeError):
        raise ConfigError("voxel_size", f"voxel_size must be positive sizes in nm (zyx); got {v!r}") from None


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else None


def evaluate(gt, pred, config: EvaluateConfig | None = None, **options) -> dict:
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
    config : EvaluateConfig, optional
        The options; keyword ``options`` (its field names: ``task``, ``metrics``,
        ``ignore_label``, ``threshold``, ``voxel_size``, ``boundary_tolerance_nm``,
        ``iou_threshold``, ``trusted``) replace its fields.

    Returns
    -------
    dict
        Metric name -> value (None where undefined, e.g. no object on either side).

    Raises
    ------
    ValueError
        Options out of range (``ConfigError``); shapes that differ; raw EM (or a probability map)
        where labels, a mask or probabilities are expected; ``task="semantic"`` on two label
        volumes with several ids each and no ``metrics`` named (it would score their foreground
        only). Each message names the volume.
    TypeError
        An option that is not a field of :class:`EvaluateConfig`.

    Notes
    -----
    Without ``task`` it is inferred from a few sampled chunks (:func:`infer_task`; logged at
    INFO): a mask or probabilities -> ``semantic``, separate objects -> ``instance``, dense
    touching ids -> ``neurons``.

    Examples
    --------
    >>> r = evaluate(np.array([0, 1, 1, 1]), np.array([0, 1, 1, 0]), metrics="iou,dice")
    >>> r["iou"], r["dice"]
    (0.6666666666666666, 0.8)
    >>> gt = np.array([[1, 1, 2, 2], [1, 1, 2, 2]], np.uint32)  # two touching neurons
    >>> sorted(evaluate(gt, np.ones_like(gt)))[:4]  # inferred: neurons
    ['adapted_rand_error', 'adapted_rand_precision', 'adapted_rand_recall', 'cremi_score']
    """
    cfg = _config(config, options)
    gname, pname = _name(gt, "gt"), _name(pred, "pred")
    pred = _same_shape(gt, pred, gname, pname)
    task = _task(gt, pred, cfg, gname, pname)
    names = _expand(cfg.metrics, task)
    pred_probabilities = _check_inputs(gt, pred, task, gname, pname, cfg.trusted)
    out: dict = {}
    semantic = [m for m in names if METRICS[m] == "semantic" and m != "pixel_error"]
    if semantic or ("pixel_error" in names and task != "membranes"):
        from .semantic import semantic_scores

        s = semantic_scores(binarize(gt, name=gname), binarize(pred, cfg.threshold, pname, pred_probabilities),
                            threshold=cfg.threshold).as_dict()
        alias = {"f1": "dice", "jaccard": "iou"}
        for m in semantic:
            out[m] = _finite(s[alias.get(m, m)])
        if "pixel_error" in names and task != "membranes":
            out["pixel_error"] = 1.0 - s["accuracy"]
    label_metrics = [m for m in names if METRICS[m] in ("instance", "neurons")]
    if label_metrics:
        check_labels(gt, pred, names=(gname, pname))
        table = contingency_table(gt, pred)
        for m in label_metrics:
            out.update(_label_metric(m, gt, pred, table, cfg))
    membrane = [m for m in names if METRICS[m] == "membranes" or (m == "pixel_error" and task == "membranes")]
    if membrane:
        out.update(_membrane_metrics(membrane, gt, pred, cfg.threshold, pred_probabilities, pname))
    return out


def _config(config, options) -> EvaluateConfig:
    if config is not None and not isinstance(config, EvaluateConfig):
        raise TypeError(f"config must be an EvaluateConfig; got {type(config).__name__}")
    (fields,) = split_options(options, EvaluateConfig)
    if config is None:
        return EvaluateConfig(**fields)
    return dataclasses.replace(config, **fields) if fields else config


def _expand(metrics, task) -> list[str]:
    names = []
    for m in metrics or ("all",):
        names.extend(METRIC_SETS[task] if m == "all" else (m,))
    return list(dict.fromkeys(names))


def _same_shape(gt, pred, gname, pname):
    """``pred``, or the channel of a one-channel ``pred``; ValueError when the shapes differ."""
    gshape, pshape = tuple(gt.shape), tuple(pred.shape)
    if len(pshape) == len(gshape) + 1 and pshape[1:] == gshape and pshape[0] == 1:
        return _Channel(pred)
    if gshape != pshape:
        hint = (f"; {pname} has {pshape[0]} channels of gt's shape: evaluate one channel"
                if len(pshape) == len(gshape) + 1 and pshape[1:] == gshape else "")
        raise ValueError(f"gt and pred must have the same shape; got {gname} {gshape} and {pname} {pshape}{hint}")
    return pred


def _task(gt, pred, cfg, gname, pname) -> str:
    """The task given, or the one inferred; refuses "semantic" for two multi-id label volumes."""
    if cfg.task is None:
        choice = infer_task(gt, pred)
        logger.info("task %s: %s", choice.task, choice.reason)
        return choice.task
    if cfg.task == "semantic" and not cfg.named_metrics and all(np.dtype(v.dtype).kind in "ui" for v in (gt, pred)):
        g, p = describe(gt, gname), describe(pred, pname)
        if g.ids > 1 and p.ids > 1 and {g.kind, p.kind} <= {"instance", "neurons"}:
            other = infer_task(gt, pred).task
            raise ValueError(f"task 'semantic' would score only the foreground of two label volumes ({g.phrase}; "
                             f"{p.phrase}); pass task='{other}' (or "
                             f"'{'neurons' if other == 'instance' else 'instance'}'), or name the metrics "
                             "(e.g. metrics='iou') to score the foreground anyway")
    return cfg.task


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


def _check_inputs(gt, pred, task, gname, pname, trusted) -> bool:
    """Refuse raw EM where labels, masks or probabilities belong; True when pred is read as probabilities."""
    from ..probabilities import check_probability_source, is_prediction, sample_stats

    reads_probabilities = task in ("semantic", "membranes")
    gdt, pdt = np.dtype(gt.dtype), np.dtype(pred.dtype)
    what = "a mask or labels" if task == "semantic" else "labels"
    if gdt.kind in "ui":
        s = sample_stats(gt, gname)
        if raw_like_labels(s):
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
    if not trusted and raw_like_labels(s):
        raise ValueError(f"{pname} looks like raw EM, not a segmentation or a prediction ({s.raw_em_reason()}); pass "
                         "emseg's output (emseg predict, segment or postprocess)")
    if smooth_map(s) and not reads_probabilities:
        raise ValueError(f"{pname} looks like a uint8 probability map (round(255 p)), not labels ({s.distinct} "
                         f"distinct values, {1 - s.flat:.0%} of mid-range voxels differ from their neighbour); the "
                         f"{task} task compares instance labels: run emseg postprocess on it first")
    return smooth_map(s)


def _label_metric(m, gt, pred, table, cfg):
    from . import clustering

    ignore = 0 if cfg.ignore_label is None else cfg.ignore_label
    if m == "adapted_rand":
        r = clustering.adapted_rand_error(table=table, ignore_label=ignore)
        return {"adapted_rand_error": r.error, "adapted_rand_precision": r.precision, "adapted_rand_recall": r.recall}
    if m == "voi":
        r = clustering.variation_of_information(table=table, ignore_label=ignore)
        return {"voi_split": r.split, "voi_merge": r.merge, "voi": r.total}
    if m == "cremi":
        if cfg.boundary_tolerance_nm:
            r = clustering.cremi_score(np.asarray(gt), np.asarray(pred), ignore_label=ignore,
                                       boundary_tolerance_nm=cfg.boundary_tolerance_nm, voxel_size=cfg.voxel_size)
        else:
            r = clustering.cremi_score(None, None, table=table, ignore_label=ignore)
        return {"cremi_score": r.score}
    if m == "rand":
        r = clustering.rand_index(table=table, ignore_label=ignore)
        return {"rand_index": r.rand_index, "rand_error": r.rand_error}
    from .coco import average_precision
    from .instance import aggregated_jaccard_index, panoptic_quality
    from .matching import match_instances

    if m == "ap":
        r = average_precision(gt, pred, table=table)
        return {"ap50": r.ap50, "ap75": r.ap75, "map": r.map}
    if m == "pq":
        r = panoptic_quality(gt, pred, table=table)
        return {"pq": _finite(r.pq), "sq": _finite(r.sq), "rq": _finite(r.rq)}
    if m == "aji":
        return {"aji": _finite(aggregated_jaccard_index(gt, pred, table=table))}
    r = match_instances(gt, pred, iou_threshold=cfg.iou_threshold, table=table)
    tag = f"{int(round(cfg.iou_threshold * 100))}"
    return {f"tp{tag}": int(r.tp), f"fp{tag}": int(r.fp), f"fn{tag}": int(r.fn),
            f"precision{tag}": _finite(r.precision), f"recall{tag}": _finite(r.recall), f"f1_{tag}": _finite(r.f1),
            f"accuracy{tag}": _finite(r.accuracy)}


def _membrane_metrics(names, gt, pred, threshold, probabilities, pname="pred"):
    """ISBI 2012 scores. gt: cell labels or a cell mask (0 = membrane); pred: a label image, a cell
    mask, or a membrane probability map (float, 1 = membrane), for which V_rand/V_info are the
    challenge's best over thresholds 0.0–0.9."""
    from ..probabilities import as_probabilities
    from . import isbi, warping

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
        out["warping_error"] = warping.warping_error(gt > 0, cells, threshold=threshold).error
    return out
