"""Instance targets: contours, and the BC and BCD targets of U3D-BC/NucMM (foreground, contour,
distance). Conventions: :mod:`emseg.train.targets`."""

from __future__ import annotations

import fastremap
import numpy as np
from scipy import ndimage

from .target_base import _check_labels, _contour, _cross, _options, _sampling, _section_axes, _stack

__all__ = ["contour_target", "bc_target", "bcd_target"]


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
        Ignored voxels get ``mask`` 0, and so do distances they could change: the whole of an
        instance next to them ('normalized': its peak is unknown), and for 'signed' every voxel
        whose nearest boundary is farther than the nearest ignored voxel.

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
    dist_valid = fg_valid
    if ignored is not None and ignored.any():  # a distance is known only where no ignored voxel could change it
        if mode == "normalized":  # an instance next to ignored voxels may go on there: its peak is unknown
            near = ndimage.binary_dilation(ignored, _cross(labels.ndim, range(labels.ndim)))
            dist_valid = fg_valid & ~np.isin(objects, np.unique(objects[near & fg]))
        else:  # known where the nearest ignored voxel is farther than the nearest boundary
            to_ignored = ndimage.distance_transform_edt(~ignored, sampling=sampling)
            dist_valid = fg_valid & (np.where(fg, inside, outside) < to_ignored)
    return _stack(labels.shape, [fg, edge, dist * dist_valid], [fg_valid, valid, dist_valid])
