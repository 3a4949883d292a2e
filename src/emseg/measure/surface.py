"""Surface area of labelled objects as the sum over marching-cubes cells, exactly scikit-image's mesh.

The marching-cubes mesh of a binary mask is made cube by cube: each cell of 2 x 2 x 2 voxels gets
triangles that depend on its 8 corners alone. So the area of an object's mesh is the sum over cells of
the area of that cell's triangles, which is one of 256 values per voxel size (a corner inside the
object or not). :func:`cube_areas` takes those 256 values from ``skimage.measure.marching_cubes``
itself (level 0.5, Lewiner's method, its default) on each single cell; summing them reproduces
``mesh_surface_area(*marching_cubes(padded_mask, 0.5, spacing=voxel_size)[:2])`` of every object,
and the sum splits over blocks: a block adds the cells whose first corner it owns, so no cell is
counted twice and objects that span blocks get their exact area. That is why emseg does not mesh
each object (skimage per object is one mesh per object and bounding box; zmesh meshes simplify).
The object is closed at the volume's border (the mask is padded with background), as the reference.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

__all__ = ["cube_areas", "cell_areas"]


@functools.lru_cache(maxsize=16)
def _cube_areas(voxel_size):
    from skimage.measure import marching_cubes, mesh_surface_area

    areas = np.zeros(256)
    for config in range(1, 255):
        corners = np.array([(config >> j) & 1 for j in range(8)], float).reshape(2, 2, 2)
        verts, faces, _, _ = marching_cubes(corners, 0.5, spacing=voxel_size)
        areas[config] = mesh_surface_area(verts, faces)
    areas.setflags(write=False)
    return areas


def cube_areas(voxel_size=(1.0, 1.0, 1.0)) -> np.ndarray:
    """The mesh area inside one marching-cubes cell for each of its 256 corner patterns.

    Corner ``j = 4 dz + 2 dy + dx`` of the cell is bit ``j`` of the pattern.

    Examples
    --------
    >>> a = cube_areas((1.0, 1.0, 1.0))
    >>> float(a[0]), float(a[255]), round(float(a[1]), 4)   # empty, full, one corner: a triangle
    (0.0, 0.0, 0.2165)
    """
    return _cube_areas(tuple(float(v) for v in voxel_size))


@numba.njit(cache=True, nogil=True)
def cell_areas(ids, areas, k):  # pragma: no cover - compiled by numba
    """Mesh area per dense id (``0..k-1``, 0 = background) over every cell of ``ids`` (zyx)."""
    out = np.zeros(k)
    c = np.empty(8, np.int64)
    nz, ny, nx = ids.shape
    for z in range(nz - 1):
        for y in range(ny - 1):
            for x in range(nx - 1):
                first = ids[z, y, x]
                same = True
                for j in range(8):
                    c[j] = ids[z + (j >> 2), y + ((j >> 1) & 1), x + (j & 1)]
                    if c[j] != first:
                        same = False
                if same:  # inside one object or the background: no surface
                    continue
                for j in range(8):
                    label = c[j]
                    if label == 0:
                        continue
                    seen = False
                    for i in range(j):
                        if c[i] == label:
                            seen = True
                    if seen:
                        continue
                    config = 0
                    for i in range(j, 8):
                        if c[i] == label:
                            config |= 1 << i
                    out[label] += areas[config]
    return out
