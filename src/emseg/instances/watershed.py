"""Marker-controlled watershed on network outputs: BC, BCD, and boundary (membrane) maps.

Seeds are the confident cores of objects; the watershed grows them over the foreground, so two
touching objects whose cores are separated by a predicted contour come out as two instances
(the U3D-BC / U3D-BCD post-processing of Wei et al. 2020 and Lin et al. 2021).
``skimage.segmentation.watershed`` does the flooding.
"""

from __future__ import annotations

import numpy as np

from ..probabilities import as_probabilities, check_finite
from .components import check_probability, remove_small_objects
from .relabel import smallest_uint

__all__ = ["seeded_watershed", "bc_watershed", "bcd_watershed", "boundary_watershed"]


def _seeds(core, min_seed_size, connectivity=1):
    import cc3d

    seeds = cc3d.connected_components(np.ascontiguousarray(core, np.uint8),
                                      connectivity={2: (4, 8), 3: (6, 18, 26)}[core.ndim][connectivity - 1])
    if min_seed_size > 1:
        seeds = remove_small_objects(seeds, min_seed_size)
    return seeds


def seeded_watershed(elevation, seeds, mask=None, *, min_size=0) -> np.ndarray:
    """Flood ``elevation`` from the labelled ``seeds`` inside ``mask``; relabel 1..n.

    Examples
    --------
    >>> elev = np.array([[0., 1., 2., 1., 0.]])
    >>> seeded_watershed(elev, np.array([[1, 0, 0, 0, 2]]))
    array([[1, 1, 1, 2, 2]], dtype=uint8)
    """
    from skimage.segmentation import watershed

    labels = watershed(np.asarray(elevation, np.float32), np.asarray(seeds), mask=mask)
    if min_size > 0:
        return remove_small_objects(labels, min_size)
    return labels.astype(smallest_uint(labels.max(initial=0)), copy=False)


def bc_watershed(foreground, contour, *, seed_threshold=0.9, contour_threshold=0.2, mask_threshold=0.5,
                 min_seed_size=16, min_size=0) -> np.ndarray:
    """Instances from a foreground and a contour probability (the "BC" target).

    Seeds: connected regions where ``foreground > seed_threshold`` and ``contour < contour_threshold``
    (at least ``min_seed_size`` voxels). Flooding: ``contour - foreground`` (low inside objects, high
    on their contours) within ``foreground > mask_threshold``.

    Examples
    --------
    >>> fg = np.array([[0, 1, 1, 1, 1, 1, 1, 0.]])
    >>> ct = np.array([[0, 0, 0, 1, 1, 0, 0, 0.]])
    >>> bc_watershed(fg, ct, min_seed_size=1)
    array([[0, 1, 1, 1, 2, 2, 2, 0]], dtype=uint8)
    """
    fg = check_probability(foreground, "foreground")
    ct = check_probability(contour, "contour")
    _same_shape(fg=fg, contour=ct)
    seeds = _seeds((fg > seed_threshold) & (ct < contour_threshold), min_seed_size)
    return seeded_watershed(ct - fg, seeds, fg > mask_threshold, min_size=min_size)


def bcd_watershed(foreground, contour, distance, *, seed_threshold=0.8, contour_threshold=0.3,
                  distance_threshold=0.5, mask_threshold=0.5, min_seed_size=16) -> np.ndarray:
    """Instances from foreground, contour and distance predictions (the "BCD" target, Lin et al. 2021).

    Seeds need all three to agree: ``foreground > seed_threshold``, ``contour < contour_threshold``
    and ``distance > distance_threshold`` (the normalised distance is 1 at an object's centre; a
    signed distance in (-1, 1) works too). The watershed floods ``-distance`` within
    ``foreground > mask_threshold``, so borders fall where the distance map has its valleys.
    Small objects are removed afterwards, over the whole volume (``min_size`` of
    :func:`~emseg.instances.segment` and :func:`~emseg.instances.segment_blockwise`).

    Examples
    --------
    >>> fg = np.array([[0, 1, 1, 1, 1, 1, 1, 1, 0.]])
    >>> ct = np.zeros_like(fg)
    >>> d = np.array([[0, .5, 1, .5, 0.1, .5, 1, .5, 0]])
    >>> bcd_watershed(fg, ct, d, min_seed_size=1)
    array([[0, 1, 1, 1, 1, 2, 2, 2, 0]], dtype=uint8)
    """
    fg = check_probability(foreground, "foreground")
    ct = check_probability(contour, "contour")
    d = np.asarray(distance)
    d = as_probabilities(d, "distance") if d.dtype == np.uint8 else check_finite(d.astype(np.float32), "distance")
    _same_shape(fg=fg, contour=ct, distance=d)
    seeds = _seeds((fg > seed_threshold) & (ct < contour_threshold) & (d > distance_threshold), min_seed_size)
    return seeded_watershed(-d, seeds, fg > mask_threshold)


def boundary_watershed(boundary, *, threshold=0.5, sigma=1.0, seeds="threshold", min_seed_size=8,
                       min_seed_distance=2.0, max_distance=None, per_section=False) -> np.ndarray:
    """Cells from a boundary (membrane) probability map, in 3D or section by section.

    The map is smoothed (``sigma``); voxels below ``threshold`` are cell interior. Seeds:

    * ``"threshold"``: the connected regions of the interior (at least ``min_seed_size`` voxels).
      Local, so blockwise results stitch exactly; a gap in a membrane merges the two cells.
    * ``"distance"``: the maxima of the distance to the nearest membrane, at least
      ``min_seed_distance`` voxels inside (closer maxima are one seed; ``max_distance`` caps the
      distance). Robust to gaps, over-segments slightly: the fragments for
      :func:`~emseg.instances.agglomerate`.

    The watershed then floods the smoothed map from the seeds. Distances are in voxels (isotropic);
    for anisotropic stacks segment section by section (``per_section``). Small objects are removed
    afterwards, over the whole volume (``min_size`` of :func:`~emseg.instances.segment`).

    Parameters
    ----------
    boundary : ndarray (2D or 3D), 1 = membrane
    per_section : bool
        Segment each z-section alone (anisotropic serial-section data; ids stay unique).

    Examples
    --------
    >>> b = np.zeros((7, 15)); b[:, 7] = 1
    >>> seg = boundary_watershed(b, sigma=0, min_seed_size=1)
    >>> seg[3, 2], seg[3, 12], len(np.unique(seg))
    (np.uint8(1), np.uint8(2), 2)
    """
    b = check_probability(boundary, "boundary")
    if b.ndim not in (2, 3):
        raise ValueError(f"boundary must be 2D or 3D; got shape {b.shape}")
    if seeds not in ("threshold", "distance"):
        raise ValueError(f"seeds must be 'threshold' or 'distance'; got {seeds!r}")
    if per_section and b.ndim == 3:
        out, offset = np.zeros(b.shape, np.uint64), 0
        for z in range(b.shape[0]):
            seg = boundary_watershed(b[z], threshold=threshold, sigma=sigma, seeds=seeds, min_seed_size=min_seed_size,
                                     min_seed_distance=min_seed_distance,
                                     max_distance=max_distance).astype(np.uint64)
            out[z] = np.where(seg > 0, seg + offset, 0)
            offset += int(seg.max(initial=0))
        return out.astype(smallest_uint(offset), copy=False)
    from scipy import ndimage as ndi

    smooth = ndi.gaussian_filter(b, sigma) if sigma else b
    inside = smooth < threshold
    elevation = smooth
    if seeds == "threshold":
        markers = _seeds(inside, min_seed_size)
    else:
        import edt

        anis = (1.0,) * b.ndim
        dist = edt.edt(np.ascontiguousarray(inside), anisotropy=anis, black_border=False, parallel=1)
        if max_distance is not None:  # capped: seeds depend on a bounded neighbourhood only
            dist = np.minimum(dist, np.float32(max_distance))
        markers = _seeds(_distance_maxima(dist, min_seed_distance, anis), 1, connectivity=b.ndim)
        elevation = smooth - dist / max(float(dist.max(initial=0)), 1e-6) * 1e-3  # ties: away from membranes
    return seeded_watershed(elevation, markers)


def _distance_maxima(dist, min_distance, anis):
    """Voxels that are the maximum of ``dist`` in a window of about ``min_distance`` and at least that far inside."""
    from scipy import ndimage as ndi

    size = tuple(max(1, int(round(2 * min_distance / a)) | 1) for a in np.asarray(anis) / min(anis))
    return (dist == ndi.maximum_filter(dist, size=size)) & (dist >= min_distance)


def _same_shape(**arrays):
    shapes = {k: v.shape for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"the channels must have the same shape; got {shapes}")
