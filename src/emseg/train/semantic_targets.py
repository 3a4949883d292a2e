"""Semantic targets: the foreground mask and one channel per class. Conventions: :mod:`emseg.train.targets`."""

from __future__ import annotations

import numpy as np

from .target_base import _check_labels, _stack

__all__ = ["binary_target", "one_hot_target"]


def binary_target(labels, *, ignore_label=None):
    """Foreground target ``labels > 0``.

    Parameters
    ----------
    labels : ndarray of int, 2D (y, x) or 3D (z, y, x)
        Instance or semantic labels, 0 = background.
    ignore_label : int, optional
        Label whose voxels get ``mask`` 0 (and target 0).

    Returns
    -------
    Target
        ``target`` and ``mask``, float32 of shape ``(1, *labels.shape)``.

    Raises
    ------
    TypeError
        If ``labels`` is not an integer array.

    Examples
    --------
    >>> t = binary_target(np.array([[0, 3, 3, 9]]), ignore_label=9)
    >>> t.target, t.mask
    (array([[[0., 1., 1., 0.]]], dtype=float32), array([[[1., 1., 1., 0.]]], dtype=float32))
    """
    labels, ignored = _check_labels(labels, ignore_label)
    fg = labels > 0
    valid = True if ignored is None else ~ignored
    return _stack(labels.shape, [fg & valid], [valid])


def one_hot_target(labels, n_classes, *, ignore_label=None):
    """One channel per class: ``target[c] = labels == c`` for ``c`` in ``0 .. n_classes - 1``.

    Parameters
    ----------
    labels : ndarray of int, 2D or 3D
        Class ids (semantic labels), 0 = background class.
    n_classes : int
        Number of classes; ids must lie in ``0 .. n_classes - 1`` except ``ignore_label``.
    ignore_label : int, optional
        Id (may be ``>= n_classes``, e.g. 255) whose voxels get ``mask`` 0 in every channel.

    Returns
    -------
    Target
        float32 arrays of shape ``(n_classes, *labels.shape)``.

    Raises
    ------
    ValueError
        If an id is ``>= n_classes`` or ``n_classes < 1``.

    Examples
    --------
    >>> one_hot_target(np.array([[0, 2], [1, 255]]), 3, ignore_label=255).target[:, 0]
    array([[1., 0.],
           [0., 0.],
           [0., 1.]], dtype=float32)
    """
    labels, ignored = _check_labels(labels, ignore_label)
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be an integer >= 1; got {n_classes!r}")
    counted = labels if ignored is None else labels[~ignored]
    if counted.size and counted.max() >= n_classes:
        raise ValueError(f"labels hold class id {counted.max()} but n_classes={n_classes} allows ids "
                         f"0..{n_classes - 1}; raise n_classes or pass that id as ignore_label")
    valid = True if ignored is None else ~ignored
    return _stack(labels.shape, [(labels == c) & valid for c in range(n_classes)], [valid] * n_classes)
