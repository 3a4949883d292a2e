"""What a volume is: shape, dtype, voxel size, chunks, size on disk and the value range of a sample."""

from __future__ import annotations

import os

import numpy as np

from .access import open_volume

__all__ = ["volume_info", "disk_usage"]


def disk_usage(path) -> int:
    """Bytes a file, or everything below a folder, takes on disk (apparent size)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def _sample_roi(shape, max_voxels):
    """A central box of at most ``max_voxels``: full along small axes, cut along large ones."""
    roi = [slice(0, n) for n in shape]
    axis = 0
    while np.prod([s.stop - s.start for s in roi]) > max_voxels:
        sizes = [s.stop - s.start for s in roi]
        axis = int(np.argmax(sizes))
        n = max(1, sizes[axis] // 2)
        centre = shape[axis] // 2
        roi[axis] = slice(centre - n // 2, centre - n // 2 + n)
    return tuple(roi)


def volume_info(path, key=None, *, sample_voxels=2**24) -> dict:
    """Describe a volume as a JSON-ready dict.

    Keys: ``path, key, format, shape, dtype, axes, voxel_size_nm, offset_nm, chunks,
    size_on_disk_bytes, size_in_memory_bytes, sample`` where ``sample`` holds the ``roi`` read
    (a central box of at most ``sample_voxels``) and its ``min, max, mean``, plus ``n_ids`` (distinct
    values) for integer data wider than 8 bits (label volumes).

    Raises
    ------
    FileNotFoundError, ValueError
        A damaged file fails with one line naming it (and the chunk, page or slice of the sample
        that cannot be read); only the sample is read, so damage elsewhere goes unnoticed here.
    """
    with open_volume(path, key) as vol:
        roi = _sample_roi(vol.shape, sample_voxels)
        sample = vol[roi]
        if vol.format == "hdf5":
            try:
                disk = int(vol._array.id.get_storage_size())
            except Exception:  # a damaged chunk index: the file's size is still a fair answer
                disk = disk_usage(vol.path)
        elif vol.format in ("zarr", "n5") and vol.key:
            disk = disk_usage(os.path.join(vol.path, vol.key))
        else:
            disk = disk_usage(vol.path)
        stats = {"roi": [[s.start, s.stop] for s in roi]}
        if sample.size:
            stats.update(min=sample.min().item(), max=sample.max().item(), mean=float(sample.mean(dtype=np.float64)))
            if sample.dtype.kind in "ui" and sample.dtype.itemsize > 1:
                stats["n_ids"] = int(np.unique(sample).size)
        return {
            "path": vol.path, "key": vol.key, "format": vol.format, "shape": list(vol.shape),
            "dtype": str(vol.dtype), "axes": vol.axes,
            "voxel_size_nm": list(vol.voxel_size) if vol.voxel_size else None,
            "offset_nm": list(vol.offset) if vol.offset else None,
            "chunks": list(vol.chunks) if vol.chunks else None,
            "size_on_disk_bytes": disk, "size_in_memory_bytes": vol.nbytes, "sample": stats,
        }
