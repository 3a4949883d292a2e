"""Foreground → instances by connected components, and the clean-ups that go with it."""

from __future__ import annotations

import numpy as np

from .relabel import relabel_sequential, smallest_uint

__all__ = ["check_unit_range", "check_probability", "connected_components", "remove_small_objects", "fill_holes"]

_CONNECTIVITY = {2: (4, 8), 3: (6, 18, 26)}


def check_unit_range(array, name, what="values"):
    """Raise ValueError unless every value of ``array`` is in [0, 1] (NaN is not)."""
    lo, hi = (float(np.min(array)), float(np.max(array))) if np.size(array) else (0.0, 0.0)
    if not (0.0 <= lo and hi <= 1.0):  # NaN fails both comparisons
        raise ValueError(f"{name} must hold {what} in [0, 1]; found values in [{lo:g}, {hi:g}]"
                         + (" (pass probabilities, not logits or 0/255 masks of another type)" if what == "values" else ""))


def check_probability(prob, name="probability"):
    """Raise ValueError unless ``prob`` is a float map inside [0, 1] (or a boolean/0-1 integer mask)."""
    prob = np.asarray(prob)
    if prob.dtype == bool:
        return prob
    if prob.dtype == np.uint8 and prob.max(initial=0) > 1:  # emseg's quantised predictions: round(255 p)
        return prob.astype(np.float32) / 255
    check_unit_range(prob, name)
    return prob


def connected_components(prob, threshold=0.5, *, connectivity=None, min_size=0) -> np.ndarray:
    """Label the connected regions of ``prob > threshold`` (or of a boolean mask).

    Parameters
    ----------
    prob : ndarray (2D or 3D)
        Foreground probability in [0, 1], or a boolean mask.
    threshold : float
        Foreground is ``prob > threshold``.
    connectivity : int, optional
        4 or 8 in 2D; 6, 18 or 26 in 3D (default: the face neighbours, 4 / 6).
    min_size : int
        Objects with fewer voxels are removed.

    Returns
    -------
    labels : ndarray, ids 1..n in the smallest unsigned dtype, 0 = background

    Examples
    --------
    >>> connected_components(np.array([[0.9, 0.1, 0.8], [0.7, 0.0, 0.9]]))
    array([[1, 0, 2],
           [1, 0, 2]], dtype=uint8)
    """
    import cc3d

    prob = np.asarray(prob)
    if prob.ndim not in (2, 3):
        raise ValueError(f"connected_components takes a 2D or 3D array; got shape {prob.shape}")
    allowed = _CONNECTIVITY[prob.ndim]
    connectivity = allowed[0] if connectivity is None else int(connectivity)
    if connectivity not in allowed:
        raise ValueError(f"connectivity {connectivity} is not valid in {prob.ndim}D; use one of {allowed}")
    fg = prob if prob.dtype == bool else check_probability(prob) > threshold
    labels = cc3d.connected_components(np.ascontiguousarray(fg, dtype=np.uint8), connectivity=connectivity)
    if min_size > 0:
        return remove_small_objects(labels, min_size)
    return labels.astype(smallest_uint(labels.max(initial=0)), copy=False)


def remove_small_objects(labels, min_size) -> np.ndarray:
    """Set objects of fewer than ``min_size`` voxels to 0 and relabel 1..n.

    Examples
    --------
    >>> remove_small_objects(np.array([1, 1, 0, 2, 3, 3, 3]), 2)
    array([1, 1, 0, 0, 2, 2, 2], dtype=uint8)
    """
    import fastremap

    labels = np.asarray(labels)
    ids, counts = fastremap.unique(labels, return_counts=True)
    small = ids[(counts < int(min_size)) & (ids != 0)]
    if len(small):
        labels = fastremap.mask(labels, small.tolist(), in_place=False)
    return relabel_sequential(labels)


def fill_holes(labels, *, per_section=False) -> np.ndarray:
    """Fill the background cavities enclosed by a single object (in 3D, or per z-section).

    A background region that does not touch the volume's border and borders exactly one object
    is given that object's id.

    Examples
    --------
    >>> fill_holes(np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0]]))
    array([[1, 1, 1, 0],
           [1, 1, 1, 0],
           [1, 1, 1, 0]], dtype=uint8)
    """
    import cc3d
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    if per_section and labels.ndim == 3:
        out = np.stack([fill_holes(s) for s in labels])
        return out.astype(smallest_uint(out.max(initial=0)), copy=False)
    bg = cc3d.connected_components((labels == 0).astype(np.uint8), connectivity=4 if labels.ndim == 2 else 6)
    border = np.zeros(labels.shape, bool)
    for axis in range(labels.ndim):
        for end in (0, -1):
            border[(slice(None),) * axis + (end,)] = True
    outside = set(np.unique(bg[border]).tolist())
    out = labels.copy()
    structure = ndi.generate_binary_structure(labels.ndim, 1)
    for region, sl in enumerate(ndi.find_objects(bg), start=1):
        if sl is None or region in outside:
            continue
        grown = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        inside = bg[grown] == region
        ring = ndi.binary_dilation(inside, structure) & ~inside
        neighbours = np.unique(labels[grown][ring])
        neighbours = neighbours[neighbours != 0]
        if len(neighbours) == 1:
            out[grown][inside] = neighbours[0]
    return out.astype(smallest_uint(out.max(initial=0)), copy=False)
