"""Clustering scores for neuron reconstruction: Rand, adapted Rand (SNEMI3D), VOI, CREMI.

All are functions of the contingency table (:func:`contingency_table`), which is built once in a
single pass and can be passed in as ``table=`` to compute several scores without re-reading.
``ignore_label`` (a gt id, several ids, or None) leaves the voxels of those gt labels out; the
SNEMI3D/CREMI scores ignore gt 0 (unlabelled) by default, Rand and VOI ignore nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contingency import Contingency, contingency_table

__all__ = ["RandResult", "AdaptedRand", "VOI", "CremiScore", "rand_index", "adapted_rand_error",
           "variation_of_information", "cremi_score", "border_mask"]


@dataclass(frozen=True)
class RandResult:
    rand_index: float
    rand_error: float


@dataclass(frozen=True)
class AdaptedRand:
    """``error = 1 - F``; ``precision`` = Σp²/Σ(gt sizes)² and ``recall`` = Σp²/Σ(pred sizes)² as in skimage
    (precision drops on splits, recall on merges: they are the Rand split and merge scores)."""

    error: float
    precision: float
    recall: float


@dataclass(frozen=True)
class VOI:
    """Variation of information: ``split`` = H(pred | gt), ``merge`` = H(gt | pred)."""

    split: float
    merge: float

    @property
    def total(self) -> float:
        return self.split + self.merge


@dataclass(frozen=True)
class CremiScore:
    score: float
    voi_split: float
    voi_merge: float
    adapted_rand_error: float


def _table(gt, pred, table) -> Contingency:
    return table if table is not None else contingency_table(gt, pred)


def _pair_sums(table: Contingency):
    """Σ n_ij², Σ a_i², Σ b_j², n over the table (a = gt sizes, b = pred sizes), as floats."""
    a, b = table.sizes()
    c = table.counts.astype(np.float64)
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(c @ c), float(a @ a), float(b @ b), float(c.sum())


def rand_index(gt=None, pred=None, *, table=None, ignore_label=None) -> RandResult:
    """Rand index: the fraction of voxel pairs on which gt and pred agree (same/different segment).

    Notes
    -----
    With n_ij the contingency table, a_i and b_j its row and column sums and n voxels,
    ``RI = 1 - (Σa_i² + Σb_j² - 2Σn_ij²) / (n(n-1))`` (Rand 1971; pairs of distinct voxels).

    Examples
    --------
    >>> round(rand_index(np.array([1, 1, 2, 2]), np.array([1, 1, 1, 1])).rand_index, 4)  # 2 of 6 pairs agree
    0.3333
    """
    t = _table(gt, pred, table).without_gt(ignore_label)
    sum_ij, sum_a, sum_b, n = _pair_sums(t)
    if n < 2:
        raise ValueError("the Rand index needs at least two (non-ignored) voxels")
    ri = 1.0 - (sum_a + sum_b - 2.0 * sum_ij) / (n * (n - 1.0))
    return RandResult(ri, 1.0 - ri)


def adapted_rand_error(gt=None, pred=None, *, table=None, ignore_label=0, alpha=0.5) -> AdaptedRand:
    """Adapted Rand error of the SNEMI3D challenge; gt label 0 is ignored by default.

    Notes
    -----
    With n_ij counted over voxels whose gt label is not ignored, a_i (gt) and b_j (pred) sizes:
    ``P = (Σn_ij² - n) / (Σa_i² - n)``, ``R = (Σn_ij² - n) / (Σb_j² - n)``,
    ``error = 1 - (Σn_ij² - n) / (α(Σa_i² - n) + (1-α)(Σb_j² - n))``.
    Equal to ``skimage.metrics.adapted_rand_error`` (to rounding). Reference: Arganda-Carreras
    et al. 2015, Front. Neuroanat. 9:142.

    Examples
    --------
    >>> r = adapted_rand_error(np.array([1, 1, 1, 1]), np.array([1, 1, 2, 2]))  # a pure split
    >>> round(r.error, 4), round(r.precision, 4), r.recall
    (0.5, 0.3333, 1.0)
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1; got {alpha}")
    t = _table(gt, pred, table).without_gt(ignore_label)
    sum_ij, sum_a, sum_b, n = _pair_sums(t)
    pairs, gt_pairs, pred_pairs = sum_ij - n, sum_a - n, sum_b - n
    if gt_pairs <= 0 and pred_pairs <= 0:
        raise ValueError("adapted Rand error is undefined: no two (non-ignored) voxels share a segment")
    precision = pairs / gt_pairs if gt_pairs else float("nan")
    recall = pairs / pred_pairs if pred_pairs else float("nan")
    f = pairs / (alpha * gt_pairs + (1.0 - alpha) * pred_pairs)
    return AdaptedRand(1.0 - f, precision, recall)


def variation_of_information(gt=None, pred=None, *, table=None, ignore_label=None, base=2.0) -> VOI:
    """Variation of information, split and merge parts (bits by default).

    Notes
    -----
    With p_ij = n_ij / n and marginals p_i (gt), q_j (pred):
    ``split = H(pred | gt) = -Σ p_ij log(p_ij / p_i)`` and ``merge = H(gt | pred) = -Σ p_ij log(p_ij / q_j)``
    (Meila 2007). Equal to ``skimage.metrics.variation_of_information(gt, pred)`` = (split, merge).

    Examples
    --------
    >>> variation_of_information(np.array([1, 1, 1, 1]), np.array([1, 1, 2, 2]))  # one bit of split
    VOI(split=1.0, merge=0.0)
    """
    t = _table(gt, pred, table).without_gt(ignore_label)
    n = float(t.n)
    if n == 0:
        raise ValueError("VOI is undefined on an empty (or fully ignored) volume")
    gu, gi, pu, pi = t.dense_indices()
    c = t.counts.astype(np.float64)
    a = np.bincount(gi, weights=c, minlength=len(gu))
    b = np.bincount(pi, weights=c, minlength=len(pu))
    # Summed term by term (not as H(joint) - H(marginal)) to keep full precision on big volumes.
    split = float(-(c / n) @ np.log(c / a[gi]) / np.log(base))
    merge = float(-(c / n) @ np.log(c / b[pi]) / np.log(base))
    split, merge = max(0.0, split), max(0.0, merge)
    return VOI(float(split), float(merge))


def border_mask(gt: np.ndarray, tolerance_nm: float, voxel_size=None) -> np.ndarray:
    """True where a gt voxel lies within ``tolerance_nm`` of another gt label, per z-section.

    CREMI's boundary tolerance: such voxels are excluded from the evaluation, so boundary
    placement within the tolerance is not penalised. Distances are in-plane (2D per section,
    as CREMI does for its anisotropic data), in nm using ``voxel_size`` (default 1 nm).
    """
    from scipy import ndimage

    gt = np.asarray(gt)
    vs = (1.0, 1.0) if voxel_size is None else tuple(float(v) for v in voxel_size[-2:])
    planes = gt.reshape((-1,) + gt.shape[-2:])
    out = np.zeros(planes.shape, bool)
    for z, plane in enumerate(planes):
        edge = np.zeros(plane.shape, bool)
        edge[:-1] |= plane[:-1] != plane[1:]
        edge[1:] |= plane[:-1] != plane[1:]
        edge[:, :-1] |= plane[:, :-1] != plane[:, 1:]
        edge[:, 1:] |= plane[:, :-1] != plane[:, 1:]
        if edge.any():
            out[z] = ndimage.distance_transform_edt(~edge, sampling=vs) < tolerance_nm
    return out.reshape(gt.shape)


def cremi_score(gt, pred, *, table=None, ignore_label=0, boundary_tolerance_nm=None, voxel_size=None) -> CremiScore:
    """CREMI neuron score: ``sqrt((VOI split + VOI merge) × adapted Rand error)``, lower is better.

    Notes
    -----
    As the CREMI challenge (cremi.org) computes it: VOI in bits and adapted Rand error on the
    voxels whose gt label is not ignored (0 by default). With ``boundary_tolerance_nm`` (CREMI
    used 1 voxel-scale tolerance), gt voxels within that in-plane distance of a gt boundary are
    ignored as well (see :func:`border_mask`); this needs in-memory arrays.

    Examples
    --------
    >>> gt = np.array([[1, 1, 2, 2]] * 4)
    >>> round(cremi_score(gt, np.ones_like(gt)).score, 4)  # one merge: VOI merge 1 bit, ARE 4/11
    0.603
    """
    if boundary_tolerance_nm:
        if table is not None:
            raise ValueError("boundary_tolerance_nm masks voxels: pass gt and pred, not a precomputed table")
        keep = ~border_mask(gt, boundary_tolerance_nm, voxel_size)
        table = contingency_table(np.asarray(gt), np.asarray(pred), mask=keep)
    t = _table(gt, pred, table).without_gt(ignore_label)
    voi = variation_of_information(table=t)
    are = adapted_rand_error(table=t, ignore_label=None)
    return CremiScore(float(np.sqrt(voi.total * are.error)), voi.split, voi.merge, are.error)
