"""Per-object morphology of a label volume: one row per id, in nanometres, in memory or blockwise.

The columns (``COLUMNS``; with ``raw`` also ``INTENSITY``), for an object of ``n`` voxels with
voxel size ``v`` (nm, zyx) and volume offset ``o`` (nm):

- ``id``, ``voxels`` (``n``), ``volume_nm3`` (``n * vz * vy * vx``);
- ``surface_nm2``: the area of its marching-cubes mesh at level 0.5 with the voxel size, the mask
  closed at the volume border (:mod:`emseg.measure.surface`), as ``skimage.measure.marching_cubes``
  + ``mesh_surface_area`` of the padded mask;
- ``sphericity``: ``pi^(1/3) (6 V)^(2/3) / A`` with ``V = volume_nm3``, ``A = surface_nm2`` (1 for a sphere;
  the mesh of a binary mask is facetted, about 8% more area than the smooth surface, so a voxelised ball
  of radius 18 voxels gives 0.92);
- ``centroid_{z,y,x}_nm``: ``o + v * mean index``; ``bbox_{z,y,x}{0,1}``: the first voxel and one past the
  last (voxel indices, as skimage's ``bbox``); ``bbox_min_{z,y,x}_nm``, ``bbox_max_{z,y,x}_nm``: the box's
  faces in nm (``o + v * index``);
- ``axis_major_nm``, ``axis_middle_nm``, ``axis_minor_nm``: ``sqrt(20 l)`` for the eigenvalues ``l`` of the
  covariance of its voxel centres in nm (the full axes of the ellipsoid with the same second moments:
  skimage's ``axis_major_length`` / ``axis_minor_length`` with ``spacing``); ``elongation`` =
  major / middle and ``flatness`` = middle / minor (ITK's shape labels; >= 1, ``inf`` for a flat object);
- ``touches_border``: a voxel on a face of the volume;
- ``intensity_mean``, ``intensity_min``, ``intensity_max`` of ``raw``.
"""

from __future__ import annotations

import os

import numpy as np

from ..blockwise.geometry import aligned_block_shape, block_slices
from .partial import PAIRS, block_partial, merge_partials

__all__ = ["COLUMNS", "INTENSITY", "region_table", "block_task", "columns_of"]

COLUMNS = ("id", "voxels", "volume_nm3", "surface_nm2", "sphericity", "centroid_z_nm", "centroid_y_nm",
           "centroid_x_nm", "bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1", "bbox_min_z_nm",
           "bbox_min_y_nm", "bbox_min_x_nm", "bbox_max_z_nm", "bbox_max_y_nm", "bbox_max_x_nm", "axis_major_nm",
           "axis_middle_nm", "axis_minor_nm", "elongation", "flatness", "touches_border")
INTENSITY = ("intensity_mean", "intensity_min", "intensity_max")


def check_labels_volume(labels, name="labels", raw=None):
    """Refuse what is not a 2D/3D integer label volume, or a ``raw`` of another shape; return the shape."""
    dtype = np.dtype(labels.dtype)
    if dtype.kind not in "ui":
        raise ValueError(f"{name}: labels must be integer ids (0 = background); got dtype {dtype}"
                         + (" (probabilities? segment them first: emseg postprocess)" if dtype.kind == "f" else ""))
    shape = tuple(int(s) for s in labels.shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"{name}: labels must be a (z, y, x) volume or a (y, x) image; got shape {shape}")
    if raw is not None and tuple(int(s) for s in raw.shape) != shape:
        raise ValueError(f"raw has shape {tuple(raw.shape)} but {name} has {shape}; give the raw volume the labels "
                         "were made from")
    return shape


def block_task(labels, raw, roi, shape, voxel_size):
    """The partial table of the block ``roi`` (a write region of a 3D volume of ``shape``)."""
    read = tuple(slice(s.start, min(s.stop + 1, n)) for s, n in zip(roi, shape))
    pad = tuple((int(s.start == 0), int(s.stop == n)) for s, n in zip(roi, shape))
    write = tuple(slice(0, s.stop - s.start) for s in roi)
    lab = np.asarray(labels[read])
    r = None if raw is None else np.asarray(raw[roi])
    return block_partial(lab, r, write, tuple(s.start for s in roi), pad, voxel_size)


def region_table(labels, raw=None, *, voxel_size=None, offset=None, block_shape=None, workers=None) -> dict:
    """One row per object of ``labels``: size, surface, position, shape and intensity, in nm.

    Parameters
    ----------
    labels : array-like (z, y, x) or (y, x)
        Integer ids, 0 = background: a numpy array or a lazy volume (read block by block).
    raw : array-like, optional
        Intensities of the same shape: adds ``intensity_mean/min/max``.
    voxel_size : tuple of float, optional
        Nanometres per voxel (zyx); default the volume's ``voxel_size``, else 1 (the ``_nm`` columns in voxels).
    offset : tuple of float, optional
        World position of voxel 0 in nm; default the volume's ``offset``, else 0.
    block_shape : tuple of int, optional
        Measure block by block (bounded memory; objects across blocks are combined exactly);
        default: blocks of about 8 million voxels aligned to the storage chunks.
    workers : int, optional
        Threads (default: the CPU count, at most 8).

    Returns
    -------
    dict of str -> ndarray
        The columns of the module docstring, one entry per object, sorted by id.

    Raises
    ------
    ValueError
        Non-integer or negative labels, a ``raw`` of another shape, a voxel size of the wrong length.

    Notes
    -----
    Equals ``skimage.measure.regionprops_table(labels, raw, spacing=voxel_size)`` on ``area``,
    ``centroid``, ``bbox``, ``axis_major_length``, ``axis_minor_length`` and ``intensity_*``, and
    ``mesh_surface_area(marching_cubes(padded mask, 0.5, spacing=voxel_size))`` per object
    (``tests/measure``). A (y, x) image is measured as one section.

    Examples
    --------
    >>> lab = np.zeros((1, 4, 6), np.uint8); lab[0, 1:3, 1:5] = 7
    >>> t = region_table(lab, voxel_size=(40.0, 4.0, 4.0))
    >>> t["id"].tolist(), t["voxels"].tolist(), t["volume_nm3"].tolist(), t["centroid_x_nm"].tolist()
    ([7], [8], [5120.0], [10.0])
    >>> t["bbox_x0"].tolist(), t["bbox_x1"].tolist(), t["touches_border"].tolist()
    ([1], [5], [True])
    """
    from concurrent.futures import ThreadPoolExecutor

    shape = check_labels_volume(labels, raw=raw)
    vs, off = _geometry(labels, voxel_size, offset, len(shape))
    if len(shape) == 2:
        labels = _Section(labels)
        raw = None if raw is None else _Section(raw)
        shape = (1,) + shape
    if block_shape is None:
        chunks = getattr(labels, "chunks", None) or (1,) * 3
        block_shape = aligned_block_shape(shape, tuple(int(c) if c else 1 for c in chunks[-3:]), 1, 2**23)
    elif len(block_shape) != len(shape):
        raise ValueError(f"block_shape must have {len(shape)} entries; got {tuple(block_shape)}")
    rois = block_slices(shape, tuple(int(b) for b in block_shape))
    workers = max(1, min(workers or os.cpu_count() or 1, 8, len(rois)))
    parts = []
    with ThreadPoolExecutor(workers) as pool:  # numba (nogil) and fastremap release the GIL
        for start in range(0, len(rois), 8 * workers):  # a window of blocks: memory stays bounded
            parts.extend(pool.map(lambda roi: block_task(labels, raw, roi, shape, vs), rois[start:start + 8 * workers]))
            if len(parts) > 64:
                parts = [merge_partials(parts)]
    return columns_of(merge_partials(parts), vs, off, shape, raw is not None, flat=isinstance(labels, _Section))


def columns_of(part, voxel_size, offset, shape, intensity=False, flat=False) -> dict:
    """The table's columns from a merged partial table (:func:`emseg.measure.partial.merge_partials`);
    ``flat``: a (y, x) image seen as one section (its z faces are no border)."""
    v, o = np.asarray(voxel_size, np.float64), np.asarray(offset, np.float64)
    count = part["count"]
    n = np.maximum(count, 1).astype(np.float64)
    volume = count * float(np.prod(v))
    area = part["area"]
    cov = np.zeros((len(count), 3, 3))
    for c, (a, b) in enumerate(PAIRS):
        cov[:, a, b] = cov[:, b, a] = part["m2"][:, c] * v[a] * v[b] / n
    lam = np.clip(np.linalg.eigvalsh(cov)[:, ::-1], 0.0, None) if len(count) else np.zeros((0, 3))
    axes = np.sqrt(20.0 * lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        sphericity = np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area
        elongation, flatness = axes[:, 0] / axes[:, 1], axes[:, 1] / axes[:, 2]
    lo, hi = part["lo"], part["hi"] + 1
    out = {"id": part["ids"], "voxels": count, "volume_nm3": volume, "surface_nm2": area, "sphericity": sphericity}
    out.update({f"centroid_{a}_nm": o[i] + v[i] * part["mean"][:, i] for i, a in enumerate("zyx")})
    out.update({f"bbox_{a}0": lo[:, i] for i, a in enumerate("zyx")})
    out.update({f"bbox_{a}1": hi[:, i] for i, a in enumerate("zyx")})
    out.update({f"bbox_min_{a}_nm": o[i] + v[i] * lo[:, i] for i, a in enumerate("zyx")})
    out.update({f"bbox_max_{a}_nm": o[i] + v[i] * hi[:, i] for i, a in enumerate("zyx")})
    out.update(axis_major_nm=axes[:, 0], axis_middle_nm=axes[:, 1], axis_minor_nm=axes[:, 2], elongation=elongation,
               flatness=flatness, touches_border=((lo == 0) | (hi == np.asarray(shape)))[:, int(flat):].any(axis=1))
    if intensity:
        out.update(intensity_mean=part["isum"] / n, intensity_min=part["imin"], intensity_max=part["imax"])
    return out


def _geometry(labels, voxel_size, offset, nd):
    vs = voxel_size if voxel_size is not None else getattr(labels, "voxel_size", None)
    off = offset if offset is not None else getattr(labels, "offset", None)
    for name, value in (("voxel_size", vs), ("offset", off)):
        if value is not None and len(value) != nd:
            raise ValueError(f"{name} must have {nd} entries (one per axis of the labels); got {tuple(value)}")
    vs = tuple(float(x) for x in vs) if vs is not None else (1.0,) * nd
    if any(not np.isfinite(x) or x <= 0 for x in vs):
        raise ValueError(f"voxel_size must be positive nanometres; got {vs}")
    off = tuple(float(x) for x in off) if off is not None else (0.0,) * nd
    if nd == 2:
        vs, off = (1.0,) + vs, (0.0,) + off
    return vs, off


class _Section:
    """A (y, x) image seen as a (1, y, x) volume."""

    def __init__(self, image):
        self.image, self.shape, self.dtype = image, (1,) + tuple(image.shape), image.dtype

    def __getitem__(self, roi):
        roi = roi if isinstance(roi, tuple) else (roi,)
        section = np.asarray(self.image[roi[1:]])
        return section if isinstance(roi[0], (int, np.integer)) else section[None]
