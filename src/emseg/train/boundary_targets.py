"""Targets of what lies between voxels: affinities (nearest and long range, for agglomeration and
the mutex watershed) and membrane maps. Conventions: :mod:`emseg.train.targets`."""

from __future__ import annotations

import numpy as np

from .instance_targets import contour_target
from .target_base import Target, _check_labels, _options, _stack

__all__ = ["affinities", "boundary_target"]


def _check_offsets(offsets, ndim):
    try:
        rows = [np.asarray(o).ravel() for o in offsets]
    except TypeError:
        rows = []
    if not rows:
        raise ValueError(f"offsets must be a non-empty list of offsets, e.g. {[[-1] + [0] * (ndim - 1)]}; "
                         f"got {offsets!r}")
    for o in rows:
        if len(o) != ndim:
            raise ValueError(f"each offset needs {ndim} entries (one per axis of the {ndim}D labels, "
                             f"{'zyx'[-ndim:]}); got {o.tolist()} of length {len(o)}")
        if o.dtype.kind not in "iuf" or not np.array_equal(o, np.round(o)):
            raise TypeError(f"offsets must be integers; got {o.tolist()}")
    return np.array(rows, dtype=np.int64)


def affinities(labels, offsets, *, ignore_label=None):
    """Affinities for offsets ``o``: ``target[c, x] = 1`` if ``labels[x] == labels[x + o_c] > 0``.

    Parameters
    ----------
    labels : ndarray of int, 2D or 3D
        Instance labels, 0 = background (background has affinity 0, also to itself).
    offsets : sequence of sequences of int
        One offset per channel, ``labels.ndim`` entries each (zyx), e.g. the nearest neighbours
        ``[[-1, 0, 0], [0, -1, 0], [0, 0, -1]]`` plus long range ``[-3, 0, 0], [0, -9, 0], [0, 0, -9]``.
    ignore_label : int, optional
        Channels where either voxel has this label get ``mask`` 0.

    Returns
    -------
    Target
        float32 arrays of shape ``(len(offsets), *labels.shape)``. ``mask[c, x]`` is 0 where
        ``x + offsets[c]`` lies outside the volume (the first ``|o|`` voxels along an axis for a
        negative ``o``).

    Raises
    ------
    ValueError
        If an offset does not have ``labels.ndim`` entries.

    Notes
    -----
    Channel ``c`` at voxel ``x = (z, y, x)`` relates ``x`` and ``x + offsets[c]`` -- the convention of
    Lee et al. 2017, affogato/elf ``compute_affinities`` and the mutex watershed (Wolf et al. 2018),
    which read ``aff[c, z, y, x]`` as the edge between those two voxels. 1 means "same object"; use
    ``1 - target`` for boundary-style (repulsive) channels.

    Examples
    --------
    >>> t = affinities(np.array([[1, 1, 2, 2, 0]]), [[0, -1]])
    >>> t.target, t.mask
    (array([[[0., 1., 0., 1., 0.]]], dtype=float32), array([[[0., 1., 1., 1., 1.]]], dtype=float32))
    """
    labels, ignored = _check_labels(labels, ignore_label)
    offsets = _check_offsets(offsets, labels.ndim)
    target = np.zeros((len(offsets), *labels.shape), np.float32)
    mask = np.zeros_like(target)
    for c, off in enumerate(offsets):
        here = tuple(slice(max(0, -d), max(0, min(n, n - d))) for d, n in zip(off, labels.shape))
        there = tuple(slice(max(0, d), max(0, min(n, n + d))) for d, n in zip(off, labels.shape))
        a = labels[here]
        valid = True if ignored is None else ~(ignored[here] | ignored[there])
        target[c][here] = (a == labels[there]) & (a > 0) & valid
        mask[c][here] = valid
    return Target(target, mask)


def boundary_target(labels, *, convention="isbi", width=1, per_section=None, voxel_size=None, ignore_label=None):
    """Membrane (boundary) map, 1 = membrane, for boundary-prediction networks.

    Parameters
    ----------
    labels : ndarray of int, 2D or 3D
        Membrane labels ('isbi') or instance labels ('instances').
    convention : {'isbi', 'instances'}
        'isbi': ISBI 2012 convention, 0 = membrane and anything else (255) = cell interior.
        'instances': the boundaries between instances, ``contour_target(mode='thick')`` -- voxels
        with another label (another instance or background) within ``width``.
    width, per_section, voxel_size :
        As in :func:`contour_target`; used by 'instances' only.
    ignore_label : int, optional
        Voxels of this label get ``mask`` 0 (for 'instances', also voxels within ``width`` of them).

    Returns
    -------
    Target
        float32 arrays of shape ``(1, *labels.shape)``.

    Examples
    --------
    >>> boundary_target(np.array([[255, 0, 255]], np.uint8)).target[0]
    array([[0., 1., 0.]], dtype=float32)
    >>> boundary_target(np.array([[1, 1, 2, 2]]), convention="instances").target[0]
    array([[0., 1., 1., 0.]], dtype=float32)
    """
    _options(convention, "convention", ("isbi", "instances"))
    if convention == "instances":
        return contour_target(labels, width=width, mode="thick", per_section=per_section,
                              voxel_size=voxel_size, ignore_label=ignore_label)
    labels, ignored = _check_labels(labels, ignore_label)
    valid = True if ignored is None else ~ignored
    return _stack(labels.shape, [(labels == 0) & valid], [valid])
