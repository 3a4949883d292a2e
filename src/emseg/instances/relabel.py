"""Sequential relabelling into the smallest unsigned dtype that holds the ids."""

from __future__ import annotations

import numpy as np

__all__ = ["smallest_uint", "relabel_sequential"]


def smallest_uint(max_id) -> np.dtype:
    """The smallest unsigned integer dtype that holds ``max_id``.

    Examples
    --------
    >>> smallest_uint(255), smallest_uint(256), smallest_uint(2**32)
    (dtype('uint8'), dtype('uint16'), dtype('uint64'))
    """
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if int(max_id) <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"id {max_id} does not fit in uint64")


def relabel_sequential(labels, *, keep=None) -> np.ndarray:
    """Renumber the nonzero ids of ``labels`` to 1..n in order of first appearance, 0 stays 0.

    ``keep``: optional boolean mask over the old ids' voxels; voxels where it is False become 0.
    Returns the smallest unsigned dtype that holds n.

    Examples
    --------
    >>> relabel_sequential(np.array([[0, 7, 7], [9, 0, 3]]))
    array([[0, 1, 1],
           [2, 0, 3]], dtype=uint8)
    """
    import fastremap

    labels = np.asarray(labels)
    if labels.dtype.kind not in "ui":
        raise TypeError(f"labels must be an integer array; got {labels.dtype}")
    if labels.dtype.kind == "i":
        if labels.size and labels.min() < 0:
            raise ValueError("labels must be non-negative")
        labels = labels.astype(np.uint64)
    if keep is not None:
        labels = np.where(keep, labels, 0)
    out, mapping = fastremap.renumber(np.ascontiguousarray(labels), preserve_zero=True, in_place=False)
    n = max(mapping.values()) if mapping else 0
    return out.astype(smallest_uint(n), copy=False)
