"""MRC/CCP4 volumes (cryo-ET, FIB-SEM exports): memory-mapped reads, voxel size from the header.

MRC stores the voxel size in ångström and the data as (sections, rows, columns) = zyx.
MRC2014 has no unsigned 8-bit mode: mrcfile widens uint8 data to uint16 (mode 6) on write.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ..blockwise.geometry import iter_planes
from .meta import VolumeMeta, plausible_voxel_size
from .paths import suffix_hint
from .volume import Volume, VolumeReadError, unreadable_file

__all__ = ["open_mrc", "write_mrc"]

_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}


def _expected_size(path) -> tuple[int, str] | None:
    """File size the MRC header promises (1024 + extended header + data) and why, or None."""
    with open(path, "rb") as f:
        head = f.read(1024)
    if len(head) < 1024:
        return None
    order = ">" if head[212] == 0x11 else "<"  # machine stamp: 0x44 little-endian, 0x11 big-endian
    nx, ny, nz, mode = struct.unpack_from(f"{order}4i", head)
    nsymbt = struct.unpack_from(f"{order}i", head, 92)[0]
    if mode not in _MODE_BYTES or min(nx, ny, nz, nsymbt + 1) < 1:
        return None
    return 1024 + nsymbt + nx * ny * nz * _MODE_BYTES[mode], f"{nx} x {ny} x {nz} voxels (x y z) of mode {mode}"


def _unreadable(path, error) -> OSError:
    if isinstance(error, PermissionError) or os.path.isdir(path):
        return unreadable_file(path, "MRC file", error)
    size = os.path.getsize(path)
    expected, what = _expected_size(path) or (None, None) if size else (None, None)
    if expected is not None and expected > size:
        return VolumeReadError(f"{path}: MRC file is cut short or its header is damaged: the header promises "
                               f"{what}, {expected} bytes, but the file has {size}; copy or write it again")
    return unreadable_file(path, "MRC file", error,
                           suffix_hint(path, "mrc") or "; its header is damaged or it is not an MRC file")


def open_mrc(path, mode="r") -> Volume:
    import mrcfile

    try:
        mrc = mrcfile.mmap(path, mode="r" if mode == "r" else "r+", permissive=False)
    except Exception as e:
        raise _unreadable(path, e) from None
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


def write_mrc(path, data, meta: VolumeMeta, progress=None, max_block_bytes=64 * 2**20):
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
            for z, plane in enumerate(iter_planes(data, max_block_bytes)):
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
