"""Post-processing tuned on a labelled part training never saw: the method's thresholds, seeds and
minimum object size, the z-filter width and, for affinities, mutex watershed against agglomeration,
each chosen by the task's own metric.

The objective by metric set (:func:`emseg.tasks.metric_set`):

=========  ===================================================================================
semantic   foreground IoU of the segmentation
instance   the mean of the instance mask's foreground IoU and panoptic quality PQ (one rewards
           voxels, the other objects: thresholds that merge or drop objects lose on PQ)
neurons    -VOI (split + merge, label 0 of the ground truth ignored)
membranes  V_rand of the cells against the ground truth's cells (per section, the ISBI score)
=========  ===================================================================================

The search is coordinate-wise from the task's defaults (every candidate of one parameter with the
others fixed, the best kept; two rounds), on a prediction in memory; segmentations are cached, and
``min_size`` only removes objects from one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

__all__ = ["Tuning", "tune_postprocess", "score_segmentation", "OBJECTIVES"]

OBJECTIVES = {"semantic": "foreground IoU", "instance": "(foreground IoU + PQ) / 2", "neurons": "-VOI",
              "membranes": "V_rand of the cells"}

_P = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_CANDIDATES = {  # method -> parameter -> candidates
    "cc": {"threshold": (0.3, 0.4, 0.5, 0.6, 0.7)},
    "bc": {"seed_threshold": (0.6, 0.7, 0.8, 0.9, 0.95), "contour_threshold": (0.1, 0.2, 0.3, 0.4, 0.5),
           "mask_threshold": (0.3, 0.4, 0.5, 0.6, 0.7)},
    "bcd": {"seed_threshold": (0.6, 0.7, 0.8, 0.9), "contour_threshold": (0.1, 0.2, 0.3, 0.5),
            "distance_threshold": (0.2, 0.35, 0.5, 0.65), "mask_threshold": (0.3, 0.4, 0.5, 0.6)},
    "watershed": {"threshold": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7), "sigma": (0.0, 1.0, 2.0),
                  "seeds": ("threshold", "distance"), "per_section": (False, True)},
    "agglomerate": {"threshold": _P},
    "sdt": {},
    "mws": {},
}
_MIN_SIZES = (0, 20, 50, 100, 200, 500, 1000, 2000)


@dataclass(frozen=True)
class Tuning:
    """The tuned post-processing and what it scored, next to the defaults'."""

    method: str
    params: dict
    min_size: int
    z_filter: int
    objective: str
    score: float
    default_score: float
    scores: dict
    """Every metric of the tuned setting (foreground IoU, PQ, AP50, VOI, ... as the task has them)."""
    default_scores: dict
    tried: int
    seconds: float

    def postprocess(self, tta=None) -> dict:
        """The ``postprocess`` entry of a model card."""
        return {"method": self.method, "params": self.params, "min_size": self.min_size,
                "z_filter": self.z_filter, "tta": tta}


def score_segmentation(metric_set, gt, seg) -> dict:
    """The metrics of ``seg`` against ``gt`` for ``metric_set``; ``"objective"`` is the one tuning maximises."""
    from ..metrics import contingency_table, panoptic_quality, semantic_scores, variation_of_information

    if metric_set == "membranes":
        from ..metrics import label_cells, v_rand

        s = v_rand(label_cells(gt), seg)
        return {"v_rand": s.score, "objective": s.score}
    if metric_set == "neurons":
        voi = variation_of_information(gt, seg, ignore_label=(0,))
        return {"voi": voi.total, "voi_split": voi.split, "voi_merge": voi.merge, "objective": -voi.total}
    iou = semantic_scores(gt > 0, seg > 0).iou
    if metric_set == "semantic":
        return {"foreground_iou": iou, "objective": iou}
    from ..metrics import average_precision

    table = contingency_table(gt, seg)
    pq, ap = panoptic_quality(table=table), average_precision(table=table)
    pq_v = 0.0 if np.isnan(pq.pq) else float(pq.pq)
    return {"foreground_iou": iou, "pq": pq_v, "ap50": float(ap.ap50), "objective": (iou + pq_v) / 2}


def tune_postprocess(pred, gt, task, task_params=None, *, z_filters=(0,), budget_seconds=600.0,
                     progress=False) -> Tuning:
    """Tune the post-processing of ``task``'s prediction ``pred`` (channels first, float in [0, 1], in
    memory) against labels ``gt`` (its spatial shape).

    Parameters
    ----------
    pred : ndarray
        ``(C, z, y, x)`` or ``(C, y, x)``.
    gt : ndarray of int
        Masks are split into their connected components (26-connected) for the instance scores.
    task : str
        The model's task (:data:`emseg.tasks.TASKS`); its metric set chooses the objective.
    z_filters : sequence of int
        z-filter widths to try (0 = none; only on 3D predictions).
    budget_seconds : float
        The search stops trying new candidates once this is spent (the best so far is kept).
    progress : bool
        Show a progress bar of the settings scored.

    Raises
    ------
    ValueError
        ``gt`` has no foreground, or its shape is not ``pred``'s spatial shape.
    """
    from tqdm.auto import tqdm

    from ..instances.components import remove_small_objects
    from ..instances.methods import segment
    from ..models.reader import postprocess_defaults
    from ..tasks import metric_set as task_metrics

    t0 = time.perf_counter()
    if tuple(gt.shape) != tuple(pred.shape[1:]):
        raise ValueError(f"validation labels have shape {tuple(gt.shape)}, the prediction {tuple(pred.shape[1:])}")
    if not np.any(gt):
        raise ValueError("the validation part holds no labels (every voxel is 0): nothing to tune against; "
                         "choose a labelled z range with --val Z0:Z1")
    params_ = task_params or {}
    metric_set = task_metrics(task, params_)
    gt = _instances(gt, metric_set)
    d = postprocess_defaults(task, params_)
    offsets = d.offsets
    segs, cache = {}, {}
    bar = tqdm(unit="setting", desc="tune", disable=not progress)

    def run(method, params, zf, min_size):
        """The scores of one setting (segmentations are cached; ``min_size`` only removes objects)."""
        key = (method, tuple(sorted(params.items())), zf)
        if key + (min_size,) not in cache:
            if key not in segs:
                segs[key] = segment(pred, method, params, offsets=offsets, z_filter=zf if pred.ndim == 4 else 0)
                while len(segs) > 2:  # the best setting's and the newest: min_size varies only the best's
                    segs.pop(next(iter(segs)))
            seg = segs[key]
            cache[key + (min_size,)] = score_segmentation(
                metric_set, gt, remove_small_objects(seg, min_size) if min_size else seg)
            bar.update()
        return cache[key + (min_size,)]

    default = run(d.method, dict(d.params), d.z_filter, d.min_size)
    best = (default["objective"], d.method, dict(d.params), d.z_filter, d.min_size)
    for round_ in range(2):
        for method in [d.method] + (["agglomerate"] if d.method == "mws" else []):
            if method != best[1]:  # the other method from its defaults
                best = _better(best, run(method, {}, best[3], best[4]), method, {}, best[3], best[4])
            if method != best[1] and round_:
                continue
            space = [("z_filter", z_filters), ("min_size", _MIN_SIZES)] + list(_CANDIDATES.get(method, {}).items())
            for name, values in space:
                for v in values:
                    if time.perf_counter() - t0 > budget_seconds:
                        break
                    params = dict(best[2]) if method == best[1] else {}
                    zf, ms = best[3], best[4]
                    if name == "z_filter":
                        zf = v
                    elif name == "min_size":
                        ms = v
                    else:
                        params[name] = v
                    best = _better(best, run(method, params, zf, ms), method, params, zf, ms)
    bar.close()
    score, method, params, zf, min_size = best
    return Tuning(method, params, int(min_size), int(zf), OBJECTIVES[metric_set], float(score),
                  float(default["objective"]), _clean(run(method, params, zf, min_size)), _clean(default),
                  len(cache), time.perf_counter() - t0)


def _better(best, scores, method, params, zf, min_size):
    if scores["objective"] > best[0] + 1e-9:
        return (scores["objective"], method, dict(params), zf, min_size)
    return best


def _instances(gt, metric_set):
    gt = np.asarray(gt)
    if metric_set == "instance" and len(np.unique(gt)) <= 2:
        import cc3d

        return cc3d.connected_components(gt > 0, connectivity=26 if gt.ndim == 3 else 8)
    return gt


def _clean(scores):
    return {k: round(float(v), 4) for k, v in scores.items() if k != "objective"}
