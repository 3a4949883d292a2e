"""Training targets from label arrays: foreground, one-hot classes, instance contours, the BC and
BCD targets of U3D-BC/NucMM, affinities (nearest and long range) and membrane maps.

Every function takes 2D ``(y, x)`` or 3D ``(z, y, x)`` integer labels (0 = background) and returns
a :class:`Target`: ``target`` and ``mask``, both float32 and channels first with the same shape,
ready for ``(loss(pred, target) * mask)``. ``mask`` is 0 wherever the target is undefined (voxels
of ``ignore_label``, voxels whose contour depends on them, affinities leaving the volume), and the
target is 0 wherever ``mask`` is 0.
"""

from __future__ import annotations

from typing import NamedTuple

import fastremap
import numpy as np
from scipy import ndimage

__all__ = ["Target", "binary_target", "one_hot_target", "contour_target", "bc_target", "bcd_target",
           "affinities", "boundary_target"]


class Target(NamedTuple):
    """A training target and where it is valid: two float32 arrays of shape ``(C, *labels.shape)``."""

    target: np.ndarray
    mask: np.ndarray


def _check_labels(labels, ignore_label, name="labels"):
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.view(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must be an integer (or bool) array with 0 = background; got dtype "
                        f"{labels.dtype}. Convert whole-valued data with {name}.astype(np.uint32)")
    if labels.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2D (y, x) or 3D (z, y, x); got shape {labels.shape}")
    if ignore_label is not None and (isinstance(ignore_label, bool)
                                     or not np.issubdtype(type(ignore_label), np.integer)):
        raise TypeError(f"ignore_label must be an integer or None; got {ignore_label!r}")
    ignored = None if ignore_label is None else labels == ignore_label
    if labels.dtype.kind == "i" and labels.size:
        low = labels.min() if ignored is None else np.where(ignored, 0, labels).min()
        if low < 0:
            raise ValueError(f"{name} must be >= 0 (0 = background); got {low}. "
                             "Negative values are allowed only as ignore_label")
    return labels, ignored


def _options(value, name, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _sampling(voxel_size, ndim):
    if voxel_size is None:
        return (1.0,) * ndim
    vs = tuple(float(v) for v in np.ravel(voxel_size))
    if len(vs) != ndim or not all(np.isfinite(v) and v > 0 for v in vs):
        raise ValueError(f"voxel_size must hold {ndim} positive numbers (one per axis, zyx); got {voxel_size!r}")
    return vs


def _section_axes(ndim, per_section, voxel_size):
    """Axes along which contours are looked for: all, or y and x only for per-section 3D contours."""
    vs = None if voxel_size is None else _sampling(voxel_size, ndim)
    if per_section is None:
        per_section = ndim == 3 and vs is not None and vs[0] >= 2 * max(vs[1:])
    return tuple(range(1, ndim)) if per_section and ndim == 3 else tuple(range(ndim))


def _cross(ndim, axes):
    """Face-neighbour structuring element restricted to ``axes``."""
    cross = np.zeros((3,) * ndim, bool)
    for ax in axes:
        cross[tuple(slice(None) if a == ax else 1 for a in range(ndim))] = True
    return cross


def _contour(labels, ignored, width, mode, axes):
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be an integer >= 1 (contour thickness in voxels); got {width!r}")
    _options(mode, "mode", ("inner", "thick"))
    edge = np.zeros(labels.shape, bool)  # voxels with a face neighbour of another label
    for ax in axes:
        lo, hi = [slice(None)] * labels.ndim, [slice(None)] * labels.ndim
        lo[ax], hi[ax] = slice(None, -1), slice(1, None)
        change = labels[tuple(lo)] != labels[tuple(hi)]
        edge[tuple(lo)] |= change
        edge[tuple(hi)] |= change
    cross = _cross(labels.ndim, axes)
    if width > 1:  # within city-block distance `width` of another label
        edge = ndimage.binary_dilation(edge, cross, iterations=width - 1)
    if mode == "inner":
        edge &= labels > 0
    valid = np.ones(labels.shape, bool)
    if ignored is not None:
        valid = ~ndimage.binary_dilation(ignored, cross, iterations=width)
        edge &= valid
    return edge, valid


def _stack(shape, targets, masks):
    """Channels-first float32 target and mask from per-channel arrays (or scalars)."""
    out = Target(np.empty((len(targets), *shape), np.float32), np.empty((len(masks), *shape), np.float32))
    for c, (t, m) in enumerate(zip(targets, masks)):
        out.target[c], out.mask[c] = t, m
    return out


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


def contour_target(labels, *, width=1, mode="inner", per_section=None, voxel_size=None, ignore_label=None):
    """Instance contours: voxels whose face neighbourhood holds another label (another instance or
    background), the "C" of the BC target (U3D-BC, pytorch_connectomics ``seg_to_instance_bd``).

    Parameters
    ----------
    labels : ndarray of int, 2D or 3D
        Instance labels, 0 = background.
    width : int
        Contour thickness: a voxel is contour if a voxel of another label lies within city-block
        distance ``width`` (1 = a face neighbour).
    mode : {'inner', 'thick'}
        'inner': only foreground voxels (where two instances touch, both sides are contour);
        'thick': also background voxels next to an instance.
    per_section : bool, optional
        3D only: look for other labels within each z-section (2D contours), not across sections.
        Default: True when ``voxel_size`` says z is at least 2x coarser than y and x.
    voxel_size : sequence of float, optional
        Voxel size (zyx), used only for the ``per_section`` default.
    ignore_label : int, optional
        ``mask`` is 0 on these voxels and on voxels within ``width`` of them.

    Returns
    -------
    Target
        float32 arrays of shape ``(1, *labels.shape)``.

    Notes
    -----
    The volume border is not a contour. Voxels of ``ignore_label`` count as another label.

    Examples
    --------
    >>> contour_target(np.array([[1, 1, 1, 2, 2, 0]])).target[0]
    array([[0., 0., 1., 1., 1., 0.]], dtype=float32)
    >>> contour_target(np.array([[1, 1, 1, 2, 2, 0]]), mode="thick").target[0]
    array([[0., 0., 1., 1., 1., 1.]], dtype=float32)
    """
    labels, ignored = _check_labels(labels, ignore_label)
    edge, valid = _contour(labels, ignored, width, mode, _section_axes(labels.ndim, per_section, voxel_size))
    return _stack(labels.shape, [edge], [valid])


def bc_target(labels, *, width=1, mode="inner", per_section=None, voxel_size=None, ignore_label=None):
    """The BC target: channels ``[foreground, contour]`` (Wei et al. 2020, U3D-BC / MitoEM).

    Parameters are those of :func:`contour_target`; channel 0 is :func:`binary_target`.

    Returns
    -------
    Target
        float32 arrays of shape ``(2, *labels.shape)``.

    Examples
    --------
    >>> bc_target(np.array([[0, 1, 1, 1, 2]])).target[:, 0]
    array([[0., 1., 1., 1., 1.],
           [0., 1., 0., 1., 1.]], dtype=float32)
    """
    labels, ignored = _check_labels(labels, ignore_label)
    edge, valid = _contour(labels, ignored, width, mode, _section_axes(labels.ndim, per_section, voxel_size))
    fg_valid = True if ignored is None else ~ignored
    return _stack(labels.shape, [(labels > 0) & fg_valid, edge], [fg_valid, valid])


def _instance_distance(labels, sampling):
    """Distance (in units of ``sampling``) from each foreground voxel to the nearest voxel of another
    label, the volume border not counting; 0 on background, inf for an instance with no boundary."""
    try:
        import edt  # multi-label EDT in one pass, when installed
    except ImportError:
        edt = None
    if edt is not None:
        return edt.edt(labels, anisotropy=sampling, black_border=False).astype(np.float32)
    dist = np.zeros(labels.shape, np.float32)
    for idx, box in enumerate(ndimage.find_objects(labels), 1):
        if box is None:
            continue  # one voxel of margin holds other labels on every side not at the volume border
        box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, labels.shape))
        inside = labels[box] == idx
        dist[box][inside] = (ndimage.distance_transform_edt(inside, sampling=sampling)[inside]
                             if not inside.all() else np.inf)
    return dist


def bcd_target(labels, *, mode="normalized", scale=None, voxel_size=None, width=1, contour_mode="inner",
               per_section=None, ignore_label=None):
    """The BCD target: channels ``[foreground, contour, distance]`` (Lin et al. 2021, NucMM, U3D-BCD).

    Parameters
    ----------
    labels : ndarray of int, 2D or 3D
        Instance labels, 0 = background.
    mode : {'normalized', 'signed'}
        'normalized': in each instance, the Euclidean distance to the nearest voxel of another label
        (background or another instance) divided by that instance's maximum, so in (0, 1] with 1 at
        the instance's centre; 0 on background.
        'signed': ``tanh(d / scale)`` inside instances (``d`` as above) and ``-tanh(d / scale)`` on
        background (``d`` = distance to the nearest foreground voxel): positive inside, negative
        outside, in (-1, 1).
    scale : float, optional
        Distance scale of 'signed', in the units of ``voxel_size``; default 8 voxels of the finest axis.
    voxel_size : sequence of float, optional
        Voxel size (zyx) used as EDT sampling; default isotropic 1. It also sets the ``per_section``
        default of the contour channel.
    width, contour_mode, per_section :
        ``width``, ``mode`` and ``per_section`` of :func:`contour_target` for channel 1.
    ignore_label : int, optional
        Ignored voxels count as background for the distance and get ``mask`` 0.

    Returns
    -------
    Target
        float32 arrays of shape ``(3, *labels.shape)``.

    Notes
    -----
    The volume border is not a boundary (a cell cut by the border keeps its largest distance there).
    Distances are computed in the full 2D/3D space with ``sampling = voxel_size``; ``per_section``
    concerns only the contour channel.

    Examples
    --------
    >>> bcd_target(np.array([[0, 1, 1, 1, 0, 2]])).target[2]
    array([[0. , 0.5, 1. , 0.5, 0. , 1. ]], dtype=float32)
    """
    labels, ignored = _check_labels(labels, ignore_label)
    _options(mode, "mode", ("normalized", "signed"))
    sampling = _sampling(voxel_size, labels.ndim)
    edge, valid = _contour(labels, ignored, width, contour_mode, _section_axes(labels.ndim, per_section, voxel_size))
    fg_valid = np.ones(labels.shape, bool) if ignored is None else ~ignored
    objects = np.where(fg_valid, labels, 0)
    fg = objects > 0
    compact = fastremap.renumber(objects, in_place=False)[0]
    inside = _instance_distance(compact, sampling)
    if mode == "normalized":
        peak = np.zeros(int(compact.max()) + 1, np.float32)
        np.maximum.at(peak, compact.ravel(), inside.ravel())
        with np.errstate(invalid="ignore"):
            dist = np.where(fg, np.nan_to_num(inside / peak[compact], nan=1.0), 0)  # inf/inf: no boundary
    else:
        scale = 8 * min(sampling) if scale is None else float(scale)
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (in the units of voxel_size); got {scale!r}")
        outside = _instance_distance((~fg).view(np.uint8), sampling)  # background to nearest foreground
        dist = np.tanh(np.where(fg, inside, -outside) / np.float32(scale))
    return _stack(labels.shape, [fg, edge, dist * fg_valid], [fg_valid, valid, fg_valid])


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
