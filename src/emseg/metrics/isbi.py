"""The ISBI 2012 challenge metrics: V_rand, V_info and pixel error (the warping error: :mod:`.warping`).

Conventions, as in the code that scored the challenge (Fiji's Trainable_Segmentation,
``trainableSegmentation/metrics/{RandError,VariationOfInformation,PixelError,WarpingError}.java``):

- Images are 2D; a stack ``(z, y, x)`` is evaluated slice by slice, never in 3D.
- Cell interior is foreground (label > 0; True, 1 or 255 in binary maps); membrane is 0.
- A probability map is binarised as ``p > threshold`` (p = cell-interior probability) for each
  threshold 0.0, 0.1, ... (:data:`ISBI_THRESHOLDS`), and its cells are labelled as 4-connected
  components (membranes are thereby 8-connected).
- V_rand / V_info drop the gt membrane pixels (gt label 0); a gt-foreground pixel that the
  prediction calls membrane (pred label 0) is its own singleton segment. Over a stack, V_rand
  pools its pair counts; V_info averages the per-slice scores.
- The warping error relaxes the binary gt towards the prediction by flipping simple points
  only (cells 4-connected, membranes 8-connected, outside the image = membrane).

The leaderboard's final "V_rand (thinned)" / "V_info (thinned)" additionally thin the
prediction's borders before scoring; that step is not implemented here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contingency import Contingency, check_labels, contingency_table

__all__ = ["ISBI_THRESHOLDS", "ForegroundScore", "BestScores", "v_rand", "v_info", "best_scores_from_probability",
           "label_cells", "pixel_error"]


def _fiji_thresholds(start=0.0, stop=1.0, step=0.1) -> tuple[float, ...]:
    out, th = [], start
    while th <= stop:  # Fiji's ``for (th = min; th <= max; th += step)``: 11 values, last 0.9999999999999999
        out.append(th)
        th += step
    return tuple(out)


#: Thresholds of the ISBI evaluation script (0.0 to 1.0 by 0.1, accumulated as Fiji does).
ISBI_THRESHOLDS = _fiji_thresholds()


@dataclass(frozen=True)
class ForegroundScore:
    """A foreground-restricted score: ``score`` is the F-score (α = 0.5) of ``split`` (Fiji's
    recall; lowered only by splits) and ``merge`` (Fiji's precision; lowered only by merges)."""

    score: float
    split: float
    merge: float


@dataclass(frozen=True)
class BestScores:
    """The best V_rand and V_info over the thresholds of a probability map, and where each was found."""

    v_rand: ForegroundScore
    v_rand_threshold: float
    v_info: ForegroundScore
    v_info_threshold: float


# ---------------------------------------------------------------------------------------- checks
def check_pair(gt, pred, names=("gt", "pred")) -> None:
    """ValueError unless ``gt`` and ``pred`` are non-empty 2D images or stacks of the same shape."""
    if gt.shape != pred.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape; got {gt.shape} and {pred.shape}")
    if gt.ndim not in (2, 3) or gt.size == 0:
        raise ValueError(f"{names[0]} must be a non-empty 2D image (y, x) or a stack of 2D slices (z, y, x); "
                         f"got shape {gt.shape}")


def planes(a: np.ndarray) -> np.ndarray:
    """``a`` as a stack of 2D slices."""
    return a if a.ndim == 3 else a[None]


def as_binary(a, name: str) -> np.ndarray:
    """``a != 0`` for a binary map (bool, 0/1 or 0/255); a clear error otherwise."""
    a = np.asarray(a)
    if a.dtype == bool:
        return a
    if a.dtype.kind not in "uif":
        raise TypeError(f"{name} must be a binary image (bool, 0/1 or 0/255); got dtype {a.dtype}")
    on = a != 0
    vals = a[on]
    if vals.size and not (vals.min() == vals.max() and vals.max() in (1, 255)):
        raise ValueError(f"{name} must be a binary image (bool, or 0/1 or 0/255 with nonzero = cell interior); "
                         f"got nonzero values {np.unique(vals)[:4].tolist()} (dtype {a.dtype}); threshold "
                         "probability maps or binarise labels (labels > 0) first")
    return on


def as_fiji_probability(a, name: str) -> np.ndarray:
    """float64 copy of a probability map in [0, 1], rounded to float32 as ImageJ reads images."""
    a = np.asarray(a)
    if a.dtype.kind not in "buif":
        raise TypeError(f"{name} must be a numeric probability map; got dtype {a.dtype}")
    a = a.astype(np.float32).astype(np.float64)
    lo, hi = (a.min(), a.max()) if a.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} holds NaN or infinite values; probabilities must be finite, in [0, 1]")
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} must hold probabilities in [0, 1]; got values in [{lo:g}, {hi:g}] "
                         "(divide 8-bit maps by 255)")
    return a


def label2d(mask: np.ndarray) -> np.ndarray:
    """4-connected components of a 2D mask."""
    from scipy import ndimage

    return ndimage.label(mask, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])[0]


def label_cells(cells, *, connectivity: int = 4) -> np.ndarray:
    """Label the cells of a binary cell-interior map per 2D slice, as the challenge did.

    Parameters
    ----------
    cells : array-like, 2D or 3D (z, y, x)
        Binary map: True / 1 / 255 = cell interior, 0 = membrane (the ISBI label format).
    connectivity : {4, 8}
        Pixel connectivity of a cell; the challenge used 4.

    Returns
    -------
    numpy.ndarray of uint32
        Cell ids, unique over the whole stack (slices never connect); 0 on membranes.

    Raises
    ------
    ValueError
        If ``cells`` is not binary or not 2D/3D, or ``connectivity`` is not 4 or 8.

    Examples
    --------
    >>> label_cells(np.array([[255, 0, 255], [0, 255, 255]])).tolist()
    [[1, 0, 2], [0, 2, 2]]
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8; got {connectivity!r}")
    mask = as_binary(cells, "cells")
    if mask.ndim not in (2, 3):
        raise ValueError(f"cells must be a 2D image or a stack of 2D slices (z, y, x); got shape {mask.shape}")
    from scipy import ndimage

    out = np.zeros(mask.shape, np.uint32)
    offset = 0
    for m, o in zip(planes(mask), planes(out)):
        n = ndimage.label(m, structure=ndimage.generate_binary_structure(2, connectivity // 4), output=o)
        o[o > 0] += np.uint32(offset)
        offset += n
    return out


# ------------------------------------------------------------------------------- V_rand, V_info
def _group_sum(ids, weights):
    _, inv = np.unique(ids, return_inverse=True)
    return np.bincount(inv.reshape(-1), weights=weights)


def _fg_counts(table: Contingency):
    """(joint counts with pred > 0, gt segment sizes, pred segment sizes, n pred-0 singletons) on gt > 0."""
    fg = table.without_gt((0,))
    c = fg.counts.astype(np.float64)
    on = fg.pred_ids != 0
    return c[on], _group_sum(fg.gt_ids, c), _group_sum(fg.pred_ids[on], c[on]), float(c[~on].sum())


def _f_score(split: float, merge: float) -> float:
    return 2.0 * split * merge / (split + merge) if split + merge > 0 else 0.0


def _v_rand_tables(tables) -> ForegroundScore:
    tp = sum_a = sum_b = 0.0
    for t in tables:
        c, a, b, n0 = _fg_counts(t)
        tp += (c ** 2).sum() + n0  # singletons pair only with themselves
        sum_a += (a ** 2).sum()
        sum_b += (b ** 2).sum() + n0
    if sum_a == 0:
        raise ValueError("gt has no foreground pixels (label > 0); V_rand is undefined")
    merge = 1.0 if sum_b == tp else float(tp / sum_b)
    split = 1.0 if sum_a == tp else float(tp / sum_a)
    return ForegroundScore(_f_score(split, merge), split, merge)


def _v_info_slice(table: Contingency) -> ForegroundScore | None:
    c, a, b, n0 = _fg_counts(table)
    n = a.sum()
    if n == 0:
        return None
    one_gt, one_pred = len(a) == 1, len(b) + n0 == 1
    if one_gt or one_pred:  # an entropy is 0: Fiji scores 0
        return ForegroundScore(0.0, 0.0 if one_gt else 1.0, 0.0 if one_pred else 1.0)
    log_n = np.log(n)
    h_gt = log_n - (a * np.log(a)).sum() / n
    h_pred = log_n - (b * np.log(b)).sum() / n  # singletons add 1 * log(1) = 0
    h_joint = log_n - (c * np.log(c)).sum() / n
    info = h_gt + h_pred - h_joint
    split, merge = (float(np.clip(info / h, 0.0, 1.0)) for h in (h_pred, h_gt))
    return ForegroundScore(_f_score(split, merge), split, merge)


def _v_info_tables(tables) -> ForegroundScore:
    per_slice = [s for s in map(_v_info_slice, tables) if s is not None]
    if not per_slice:
        raise ValueError("gt has no foreground pixels (label > 0); V_info is undefined")
    return ForegroundScore(*(float(np.mean(v)) for v in zip(*((s.score, s.split, s.merge) for s in per_slice))))


def _tables(gt, pred) -> list[Contingency]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    check_pair(gt, pred)
    return [contingency_table(g, p) for g, p in zip(planes(gt), planes(pred))]


def v_rand(gt, pred, *, table: Contingency | None = None) -> ForegroundScore:
    """Foreground-restricted Rand score V_rand of the ISBI 2012 challenge (higher is better).

    Parameters
    ----------
    gt, pred : array-like of int, 2D or 3D (z, y, x)
        Label images: cells have positive ids, membranes 0. A stack is scored per 2D slice.
    table : Contingency, optional
        Precomputed ``contingency_table(gt, pred)`` of one 2D image; gt and pred are then unused.

    Returns
    -------
    ForegroundScore
        ``score`` (F-score), ``split`` and ``merge``.

    Raises
    ------
    ValueError
        If the shapes differ, the images are not 2D/3D, or gt has no foreground.
    TypeError
        If the labels are not integers.

    Notes
    -----
    With n_ij the pixels in gt segment i and predicted segment j, over gt pixels with i > 0,
    where every pixel predicted 0 is a singleton segment::

        merge = Σ n_ij² / Σ_j b_j²,   split = Σ n_ij² / Σ_i a_i²,   V_rand = 2 / (1/split + 1/merge)

    (a_i, b_j: segment sizes), i.e. ``Σ p_ij² / (α Σ s_j² + (1 - α) Σ t_i²)`` with α = 0.5. Over a
    stack the sums are pooled across slices, as Fiji's ``getForegroundRestrictedRandIndexStats``.
    Reference: Arganda-Carreras et al. (2015), Crowdsourcing the creation of image segmentation
    algorithms for connectomics, Front. Neuroanat. 9:142.

    Examples
    --------
    >>> s = v_rand(np.array([[1, 1, 0, 2, 2]]), np.array([[1, 1, 0, 1, 1]]))  # one merge
    >>> round(s.score, 4), s.split, s.merge
    (0.6667, 1.0, 0.5)
    """
    return _v_rand_tables([table] if table is not None else _tables(gt, pred))


def v_info(gt, pred, *, table: Contingency | None = None) -> ForegroundScore:
    """Foreground-restricted information-theoretic score V_info of the ISBI 2012 challenge.

    Parameters and conventions as :func:`v_rand`.

    Returns
    -------
    ForegroundScore

    Notes
    -----
    With H the entropies of the gt and predicted segmentations restricted to gt > 0 (predicted
    0 = singletons) and I their mutual information::

        split = I / H(pred),   merge = I / H(gt),   V_info = 2 I / (H(pred) + H(gt))

    Over a stack the per-slice scores (and terms) are averaged, as Fiji's
    ``getForegroundRestrictedFscore``; slices without gt foreground are skipped. A slice with a
    single gt segment or a single predicted segment scores 0, as in Fiji. Reference as :func:`v_rand`.

    Examples
    --------
    >>> s = v_info(np.array([[1, 1, 2, 2, 3, 3]]), np.array([[1, 1, 1, 1, 2, 2]]))  # 1 and 2 merged
    >>> round(s.score, 4), s.split, round(s.merge, 4)
    (0.7337, 1.0, 0.5794)
    """
    return _v_info_tables([table] if table is not None else _tables(gt, pred))


def best_scores_from_probability(gt, prob, *, membrane_is_high: bool = True,
                                 thresholds=ISBI_THRESHOLDS) -> BestScores:
    """Best V_rand and V_info of a probability map over thresholds, as the ISBI evaluation script.

    Parameters
    ----------
    gt : array-like of int, 2D or 3D (z, y, x)
        Cell labels, membranes 0 (for the ISBI binary labels use ``label_cells(labels)``).
    prob : array-like of float in [0, 1], same shape
        Membrane probability (``membrane_is_high=True``) or cell-interior probability
        (``membrane_is_high=False``, the challenge's submission format: 1 = cell, 0 = membrane).
    thresholds : sequence of float in [0, 1]
        For each, cells are ``cell_probability > threshold``, labelled 4-connected per slice.

    Returns
    -------
    BestScores
        For each metric the highest score and its (first) threshold.

    Raises
    ------
    ValueError
        If the shapes differ, ``prob`` is outside [0, 1] or not finite, or a threshold is outside [0, 1].
    TypeError
        If ``gt`` does not hold integer labels.

    Notes
    -----
    As Fiji's ``RandError.getForegroundRestrictedRandIndexMaximalFScore`` and
    ``VariationOfInformation.getForegroundRestrictedMaximalFScore`` (the ISBI evaluation script
    ran them over 0.0 to 1.0 by 0.1); ``prob`` is read as float32, as ImageJ does.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> best = best_scores_from_probability(gt, np.array([[0.0, 0.1, 1.0, 0.2, 0.0]]))
    >>> best.v_rand.score, best.v_rand_threshold
    (1.0, 0.0)
    """
    gt = np.asarray(gt)
    prob = as_fiji_probability(prob, "prob")
    check_pair(gt, prob, ("gt", "prob"))
    check_labels(gt, gt, names=("gt", "gt"))
    ths = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if ths.size == 0 or ths.min() < 0 or ths.max() > 1:
        raise ValueError(f"thresholds must be a non-empty sequence of values in [0, 1]; got {thresholds!r}")
    cell = 1.0 - prob if membrane_is_high else prob
    best = {}
    for th in ths:
        tables = [contingency_table(g, label2d(c > th)) for g, c in zip(planes(gt), planes(cell))]
        for name, fn in (("rand", _v_rand_tables), ("info", _v_info_tables)):
            s = fn(tables)
            if name not in best or s.score > best[name][0].score:
                best[name] = (s, float(th))
    return BestScores(best["rand"][0], best["rand"][1], best["info"][0], best["info"][1])


def pixel_error(gt, pred) -> float:
    """Fraction of pixels whose binary value differs (the ISBI pixel error at one threshold).

    Parameters
    ----------
    gt, pred : array-like, 2D or 3D (z, y, x)
        Binary maps (bool, 0/1 or 0/255); nonzero = cell interior.

    Returns
    -------
    float
        ``mean(gt != pred)``; over a stack the mean of the per-slice errors (Fiji's
        ``PixelError.getMetricValue``). The leaderboard's "pixel error" is instead 1 - the best
        F-score of pixel classification over thresholds.

    Raises
    ------
    ValueError
        If the shapes differ or an input is not binary.

    Examples
    --------
    >>> pixel_error(np.array([[1, 0, 1, 1]]), np.array([[1, 1, 0, 1]]))
    0.5
    """
    g, p = as_binary(gt, "gt"), as_binary(pred, "pred")
    check_pair(g, p)
    return float(np.count_nonzero(g != p) / g.size)
