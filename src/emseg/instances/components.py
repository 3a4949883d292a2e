"""Foreground → instances by connected components, and the clean-ups that go with it."""

from __future__ import annotations

import numpy as np

from ..probabilities import as_probabilities, check_probability_source
from .relabel import relabel_sequential, smallest_uint

__all__ = ["check_probability", "connected_components", "remove_small_objects", "fill_holes"]

_CONNECTIVITY = {2: (4, 8), 3: (6, 18, 26)}


def check_probability(pred, name="probability") -> np.ndarray:
    """``pred`` read by the one rule of :mod:`emseg.probabilities` as float32 probabilities.

    float in [0, 1] as it is, uint8 as ``round(255 p)`` (a uint8 array holding only 0 and 1 is
    refused: that is a mask, which would read as p <= 1/255), bool as 0/1; other integer dtypes
    (labels) are refused. Errors name ``name``.

    Examples
    --------
    >>> check_probability(np.array([0, 255], np.uint8))
    array([0., 1.], dtype=float32)
    >>> check_probability(np.array([0, 1], np.uint8), "fg")
    Traceback (most recent call last):
    ...
    ValueError: fg is a uint8 volume holding only 0 and 1: uint8 is read as round(255 p), so this 0/1 mask would read as probabilities of at most 1/255 (no foreground); store the mask as bool or as 0/255
    """
    pred = np.asarray(pred)
    if pred.dtype == np.uint8:
        check_probability_source(pred, name, trusted=True)
    return as_probabilities(pred, name)


def connected_components(pred, threshold=None, *, connectivity=None, min_size=0) -> np.ndarray:
    """Label the connected foreground regions of a probability map, a mask or a label image.

    Parameters
    ----------
    pred : ndarray (2D or 3D)
        Float: foreground probabilities in [0, 1], foreground is ``pred > threshold``. Bool or any
        integer dtype (uint8 included): a mask or labels, foreground is nonzero (so a 0/1 or 0/255
        uint8 mask works; labels touching each other become one component). A uint8 probability
        map ``round(255 p)`` goes through :func:`emseg.instances.segment` (method ``"cc"``) or
        :func:`emseg.probabilities.as_probabilities` first.
    threshold : float in [0, 1), optional
        For probabilities only (default 0.5); given with a mask or labels it is an error.
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
    >>> connected_components(np.array([[1, 0, 1], [1, 0, 1]], np.uint8))  # a 0/1 mask: nonzero
    array([[1, 0, 2],
           [1, 0, 2]], dtype=uint8)
    """
    import cc3d

    pred = np.asarray(pred)
    if pred.ndim not in (2, 3):
        raise ValueError(f"connected_components takes a 2D or 3D array; got shape {pred.shape}")
    allowed = _CONNECTIVITY[pred.ndim]
    connectivity = allowed[0] if connectivity is None else connectivity
    if isinstance(connectivity, bool) or connectivity not in allowed:
        raise ValueError(f"connectivity {connectivity} is not valid in {pred.ndim}D; use one of {allowed}")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size={min_size!r} must be an integer >= 0")
    if pred.dtype == bool or pred.dtype.kind in "ui":
        if threshold is not None:
            raise ValueError(f"threshold={threshold!r} applies to probability maps, but pred is a {pred.dtype} "
                             "mask or label array (foreground = nonzero); drop threshold, or pass probabilities "
                             "(a uint8 map round(255 p) through emseg.probabilities.as_probabilities)")
        fg = pred != 0
    else:
        threshold = 0.5 if threshold is None else threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or \
                not 0 <= threshold < 1:
            raise ValueError(f"threshold={threshold!r} must be a probability in [0, 1) (foreground is p > threshold)")
        fg = as_probabilities(pred, "pred") > threshold
    labels = cc3d.connected_components(np.ascontiguousarray(fg, dtype=np.uint8), connectivity=int(connectivity))
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
