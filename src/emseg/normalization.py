"""Intensity normalisation: fitted on the training data, stored in every checkpoint, applied by
prediction exactly as training did (or refitted to another volume with ``--normalize data``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Normalization", "fit_normalization"]


@dataclass(frozen=True)
class Normalization:
    """Maps raw intensities linearly so that ``low`` → 0 and ``high`` → 1 (float32).

    Stored in checkpoints, so prediction normalises exactly as training did.
    """

    mode: str = "percentile"
    low: float = 0.0
    high: float = 255.0

    def __call__(self, raw) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float32)
        return (raw - np.float32(self.low)) / np.float32(max(self.high - self.low, 1e-6))

    def as_dict(self) -> dict:
        return asdict(self)


def fit_normalization(raw, mode="percentile", percentiles=(1.0, 99.0), low=None, high=None,
                      sample_voxels=2**22, seed=0) -> Normalization:
    """Fit a :class:`Normalization`: ``"percentile"`` (robust, from a random sample of voxels),
    ``"fixed"`` (``low``/``high`` given, or the dtype's range) or ``"none"`` (identity)."""
    if mode == "none":
        return Normalization("none", 0.0, 1.0)
    if mode == "fixed":
        if low is None or high is None:
            info = np.iinfo(raw.dtype) if np.dtype(raw.dtype).kind in "ui" else None
            low, high = (info.min, info.max) if info else (0.0, 1.0)
        return Normalization("fixed", float(low), float(high))
    if mode != "percentile":
        raise ValueError(f"normalization mode must be 'percentile', 'fixed' or 'none'; got {mode!r}")
    data = np.asarray(raw[...]) if np.prod(raw.shape) <= sample_voxels else _random_voxels(raw, sample_voxels, seed)
    lo, hi = np.percentile(data, percentiles)
    return Normalization("percentile", float(lo), float(hi))


def _random_voxels(raw, n, seed):
    rng = np.random.default_rng(seed)
    z = rng.integers(0, raw.shape[0], 16)
    return np.concatenate([np.asarray(raw[int(i)]).ravel() for i in z])[:n]
