"""z-filtering of section-by-section predictions (Casser et al. 2020; Oztel et al. 2017)."""

from __future__ import annotations

import numpy as np

__all__ = ["z_filter"]


def z_filter(pred, size=3, *, method="median") -> np.ndarray:
    """Smooth a 3D probability map along z only, so a detection must persist across sections.

    A 2D network sees each section alone; an object that appears in one section and not in its
    neighbours is almost always a false positive in serial-section or FIB-SEM data, where
    organelles span many sections. The median of ``size`` consecutive sections removes such
    one-section detections (and one-section misses) without blurring in-plane boundaries.

    Parameters
    ----------
    pred : ndarray (z, y, x), or (c, z, y, x) filtered per channel
    size : int
        Odd number of sections in the window (3 removes one-section blips, 5 two-section ones).
    method : "median" or "mean"
        The volume's first and last sections repeat at the ends.

    Examples
    --------
    >>> p = np.zeros((5, 1, 2)); p[2, 0, 0] = 1.0; p[1:4, 0, 1] = 1.0
    >>> z_filter(p)[:, 0, :]
    array([[0., 0.],
           [0., 1.],
           [0., 1.],
           [0., 1.],
           [0., 0.]])
    """
    from scipy import ndimage as ndi

    pred = np.asarray(pred)
    if pred.ndim not in (3, 4):
        raise ValueError(f"z_filter takes a (z, y, x) or (c, z, y, x) array; got shape {pred.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"z_filter size={size!r} must be a positive odd number of sections (1, 3, 5, ...)")
    size = int(size)
    if method not in ("median", "mean"):
        raise ValueError(f"method must be 'median' or 'mean'; got {method!r}")
    window = (1,) * (pred.ndim - 3) + (size, 1, 1)
    if size == 1:
        return pred.copy()
    if method == "median":
        return ndi.median_filter(pred, size=window, mode="nearest")
    mean = ndi.uniform_filter(pred.astype(np.float32, copy=False), size=window, mode="nearest")
    return (np.rint(mean) if pred.dtype.kind in "ui" else mean).astype(pred.dtype)
