"""MRC/CCP4 volumes (cryo-ET, FIB-SEM exports): memory-mapped reads, voxel size from the header.

MRC stores the voxel size in ångström and the data as (sections, rows, columns) = zyx.
MRC2014 has no unsigned 8-bit mode: mrcfile widens uint8 data to uint16 (mode 6) on write.
"""

from __future__ import annotations

import numpy as np

from ..blockwise import iter_planes
from .meta import VolumeMeta, plausible_voxel_size
from .volume import Volume

__all__ = ["open_mrc", "write_mrc"]


def open_mrc(path, mode="r") -> Volume:
    import mrcfile

    try:
        mrc = mrcfile.mmap(path, mode="r" if mode == "r" else "r+", permissive=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable MRC file ({e})") from None
    data = mrc.data
    if data is None or data.ndim not in (2, 3):
        mrc.close()
        raise ValueError(f"{path}: MRC data must be a 2D image or 3D volume; found "
                         f"{'no data' if data is None else f'{data.ndim}D'}")
    axes = "zyx" if data.ndim == 3 else "yx"
    vs = mrc.voxel_size  # Å, x y z
    vs_nm = [float(vs.z) / 10, float(vs.y) / 10, float(vs.x) / 10][-data.ndim:]
    origin = mrc.header.origin
    offset = (float(origin.z) / 10, float(origin.y) / 10, float(origin.x) / 10)[-data.ndim:]
    voxel_size = None if all(v == 0 for v in vs_nm) else plausible_voxel_size(vs_nm)
    meta = VolumeMeta(axes, voxel_size, offset if voxel_size and any(offset) else None)
    return Volume(data, meta, path=path, format="mrc", mode=mode, closer=mrc.close)


def write_mrc(path, data, meta: VolumeMeta, progress=None, max_bytes=64 * 2**20):
    """Stream ``data`` (zyx or yx array-like) into a new MRC file through a memory map."""
    import mrcfile

    if meta.axes not in ("zyx", "yx"):
        raise ValueError(f"{path}: MRC holds zyx volumes or yx images; got axes {meta.axes!r}")
    dtype = np.dtype(data.dtype)
    if dtype == np.uint8:
        dtype = np.dtype(np.uint16)
    if dtype == np.float64:
        dtype = np.dtype(np.float32)
    with mrcfile.new_mmap(path, shape=tuple(data.shape), mrc_mode=mrcfile.utils.mode_from_dtype(dtype),
                          overwrite=True) as mrc:
        if meta.axes == "yx":
            mrc.data[...] = np.asarray(data[...])
        else:
            for z, plane in enumerate(iter_planes(data, max_bytes)):
                mrc.data[z] = plane
                if progress is not None:
                    progress(plane.size)
        if meta.voxel_size is not None:
            vs = meta.voxel_size if len(meta.voxel_size) == 3 else (1.0,) + tuple(meta.voxel_size)
            mrc.voxel_size = (vs[2] * 10, vs[1] * 10, vs[0] * 10)
        if meta.offset is not None:
            off = meta.offset if len(meta.offset) == 3 else (0.0,) + tuple(meta.offset)
            mrc.header.origin = (off[2] * 10, off[1] * 10, off[0] * 10)
        mrc.update_header_stats()
