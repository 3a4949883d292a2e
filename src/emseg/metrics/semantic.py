"""Semantic (per-class) scores from the confusion counts: accuracy, precision, recall,
specificity, F1 = Dice, Jaccard = IoU, conformity — per class and averaged, with an ignore mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, check_number
from ..probabilities import as_probabilities
from .contingency import Contingency, contingency_table

__all__ = ["SemanticScores", "semantic_scores", "binarize"]


class binarize:
    """Lazy view of a mask or probability map as 0/1 labels, block by block.

    ``probabilities=None`` decides by dtype: float data are probabilities (the one rule of
    :mod:`emseg.probabilities`, checked on every block read) and become ``p > threshold``;
    integer/bool data are a mask or labels, nonzero is foreground (so 0/1, 0/255 masks work).
    ``probabilities=True`` reads uint8 as ``round(255 p)`` too (emseg's quantised predictions);
    ``False`` takes any data as a mask.
    """

    def __init__(self, data, threshold=0.5, name="pred", probabilities=None):
        self.data, self.threshold, self.name = data, float(threshold), name
        self.probabilities = np.dtype(data.dtype).kind == "f" if probabilities is None else bool(probabilities)
        self.shape, self.dtype = tuple(data.shape), np.dtype(np.uint8)
        self.chunks = getattr(data, "chunks", None)

    def __getitem__(self, key):
        block = np.asarray(self.data[key])
        if self.probabilities:
            return (as_probabilities(block, self.name) > self.threshold).astype(np.uint8)
        return (block != 0).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class SemanticScores:
    """Per-class counts and scores (arrays aligned with ``classes``) and their macro means.

    ``accuracy`` is over all counted voxels. In binary mode ``classes`` is ``[1]`` (foreground).
    ``iou``/``dice`` etc. on the object give the macro mean over ``classes``.
    """

    classes: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    accuracy: float

    def _ratio(self, num, den):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / np.maximum(den, 1), np.nan)

    @property
    def precision_per_class(self):
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def recall_per_class(self):
        return self._ratio(self.tp, self.tp + self.fn)

    @property
    def specificity_per_class(self):
        return self._ratio(self.tn, self.tn + self.fp)

    @property
    def dice_per_class(self):
        return self._ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def iou_per_class(self):
        return self._ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def conformity_per_class(self):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.tp > 0, 1.0 - (self.fp + self.fn) / np.maximum(self.tp, 1), -np.inf)

    def _mean(self, values):
        values = np.asarray(values, float)
        finite = values[~np.isnan(values)]
        return float(finite.mean()) if finite.size else float("nan")

    precision = property(lambda self: self._mean(self.precision_per_class))
    recall = property(lambda self: self._mean(self.recall_per_class))
    specificity = property(lambda self: self._mean(self.specificity_per_class))
    dice = property(lambda self: self._mean(self.dice_per_class))
    f1 = dice
    iou = property(lambda self: self._mean(self.iou_per_class))
    jaccard = iou
    conformity = property(lambda self: self._mean(self.conformity_per_class))

    def as_dict(self) -> dict:
        """Macro scores with snake_case keys, plus per-class lists when there are several classes."""
        out = {k: getattr(self, k) for k in ("accuracy", "precision", "recall", "specificity", "dice", "iou",
                                              "conformity")}
        if len(self.classes) > 1:
            out["per_class"] = {int(c): {"iou": float(i), "dice": float(d)} for c, i, d in
                                zip(self.classes, self.iou_per_class, self.dice_per_class)}
        return out


def semantic_scores(gt, pred, *, binary=True, threshold=0.5, classes=None, ignore_label=None, mask=None,
                    table=None) -> SemanticScores:
    """Confusion-based scores of a segmentation against ground truth.

    Parameters
    ----------
    gt, pred : array-like
        Same shape; any lazy volume works (read block by block). With ``binary=True`` (default)
        nonzero gt is foreground and pred is a mask (nonzero) or a probability map (``> threshold``).
        With ``binary=False`` both hold class ids.
    classes : sequence of int, optional
        Classes to report (default: foreground class 1 when binary, else every class seen except 0).
    ignore_label : int, optional
        gt class excluded from the counts (multi-class mode).
    mask : array-like of bool, optional
        Count only voxels where True.

    Notes
    -----
    Per class c: TP, FP, FN, TN from the confusion table; precision TP/(TP+FP), recall
    TP/(TP+FN), specificity TN/(TN+FP), Dice = F1 = 2TP/(2TP+FP+FN), Jaccard = IoU = TP/(TP+FP+FN),
    conformity 1 − (FP+FN)/TP (Chang et al. 2009, NeuroImage 47:122; −inf when TP = 0),
    accuracy = Σ_c TP_c / N. Means are macro averages over ``classes``, skipping undefined values.

    Examples
    --------
    >>> s = semantic_scores(np.array([0, 1, 1, 1]), np.array([0.1, 0.9, 0.7, 0.2]))
    >>> s.iou, s.dice, s.accuracy
    (0.6666666666666666, 0.8, 0.75)
    """
    if table is None:
        if binary:
            check_threshold(threshold)
            gt, pred = binarize(gt, name="gt"), binarize(pred, threshold)
        table = contingency_table(gt, pred, mask=mask)
    if ignore_label is not None:
        table = table.without_gt([ignore_label])
    return _scores(table, binary, classes)


def check_threshold(threshold) -> float:
    """``threshold`` as a float in (0, 1); ``ConfigError`` (a ValueError) saying what it applies to."""
    value = threshold.item() if isinstance(threshold, np.generic) else threshold
    try:
        return check_number("threshold", value, float, (0, False), (1, False))
    except ConfigError:
        raise ConfigError("threshold", f"threshold={threshold!r} must lie in (0, 1): it applies to probability maps "
                          "(foreground is p > threshold); integer masks and labels are compared as nonzero") from None


def _scores(table: Contingency, binary: bool, classes) -> SemanticScores:
    n = table.n
    if n == 0:
        raise ValueError("no voxels to evaluate (empty volume, or everything masked/ignored)")
    if classes is None:
        seen = np.union1d(table.gt_ids, table.pred_ids)
        classes = np.array([1]) if binary else seen[seen != 0] if (seen != 0).any() else seen
    classes = np.asarray(classes, dtype=np.uint64)
    diag = table.gt_ids == table.pred_ids
    tp = np.array([table.counts[diag & (table.gt_ids == c)].sum() for c in classes], np.int64)
    gt_tot = np.array([table.counts[table.gt_ids == c].sum() for c in classes], np.int64)
    pred_tot = np.array([table.counts[table.pred_ids == c].sum() for c in classes], np.int64)
    fp, fn = pred_tot - tp, gt_tot - tp
    accuracy = float(table.counts[diag].sum()) / n
    return SemanticScores(classes, tp, fp, fn, n - tp - fp - fn, accuracy)
