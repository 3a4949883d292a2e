"""NIfTI-1 volumes (``.nii``, ``.nii.gz``), as used by UroCell and medical-imaging tools.

NIfTI stores x fastest; emseg shows every volume as zyx, so reads are transposed lazily.
Zooms are converted from the header's spatial unit to nm. Writing streams z-slices into the
file (NIfTI's on-disk order is exactly C order of zyx), so it needs no whole-volume buffer.
"""

from __future__ import annotations

import gzip
import math
import os

import numpy as np

from ..blockwise.geometry import iter_planes
from .meta import VolumeMeta, plausible_voxel_size, to_nm
from .paths import suffix_hint
from .volume import Volume, VolumeReadError, unreadable_file

__all__ = ["open_nifti", "write_nifti"]


class _Reversed:
    """View of an (x, y, z) array-like as (z, y, x), reading only what is asked."""

    def __init__(self, array):
        self._array = array
        self.shape = tuple(reversed(array.shape))
        self.dtype = array.dtype

    def __getitem__(self, key):
        return np.ascontiguousarray(np.asarray(self._array[tuple(reversed(key))]).transpose())


def open_nifti(path, mode="r") -> Volume:
    import nibabel as nib

    if mode != "r":
        raise ValueError(f"{path}: NIfTI files open read-only; write a new one with write_volume()")
    size = 0 if os.path.isdir(path) else os.path.getsize(path)
    if 0 < size < 348 and not str(path).lower().endswith(".gz"):
        raise VolumeReadError(f"{path}: NIfTI file is cut short: it has {size} bytes, less than the 348-byte NIfTI "
                              "header; copy or write it again")
    try:
        img = nib.load(str(path))
    except Exception as e:
        raise unreadable_file(path, "NIfTI file", e, suffix_hint(path, "nifti")) from None
    shape = img.shape
    if not str(path).lower().endswith(".gz"):  # a .nii.gz shows it is cut short only when it is read
        expected = int(img.dataobj.offset) + math.prod(shape) * img.get_data_dtype().itemsize
        if size < expected:
            voxels = " x ".join(map(str, shape))
            raise VolumeReadError(f"{path}: NIfTI file is cut short: its header promises {expected} bytes ({voxels} "
                                  f"voxels (x y z) of {img.get_data_dtype()}) but the file has {size}; copy or write "
                                  "it again")
    if len(shape) == 4 and shape[3] == 1:
        proxy = img.dataobj
        array = _Reversed(_Squeezed(proxy))
    elif len(shape) in (2, 3):
        array = _Reversed(img.dataobj)
    else:
        raise ValueError(f"{path}: NIfTI image of shape {shape} is not a 2D/3D volume")
    header = img.header
    unit = header.get_xyzt_units()[0]
    zooms = header.get_zooms()[: len(array.shape)]
    nm = [to_nm(z, unit) for z in reversed(zooms)] if unit != "unknown" else [None]
    vs = plausible_voxel_size(nm) if None not in nm else None
    meta = VolumeMeta("zyx" if len(array.shape) == 3 else "yx", vs)
    return Volume(array, meta, path=path, format="nifti")


class _Squeezed:
    def __init__(self, proxy):
        self._proxy, self.shape, self.dtype = proxy, proxy.shape[:3], proxy.dtype

    def __getitem__(self, key):
        return np.asarray(self._proxy[tuple(key) + (0,)])


def write_nifti(path, data, meta: VolumeMeta, progress=None, max_block_bytes=64 * 2**20):
    """Write ``data`` (zyx or yx array-like) as NIfTI-1, voxel size in µm, z-slice by z-slice."""
    import nibabel as nib

    if meta.axes not in ("zyx", "yx"):
        raise ValueError(f"{path}: NIfTI holds zyx volumes or yx images here; got axes {meta.axes!r}")
    shape_xyz = tuple(reversed(data.shape))
    header = nib.Nifti1Header()
    header.set_data_dtype(np.dtype(data.dtype))
    header.set_data_shape(shape_xyz)
    vs_um = [v / 1e3 for v in reversed(meta.voxel_size)] if meta.voxel_size is not None else [1.0] * len(shape_xyz)
    header.set_zooms(vs_um)
    header.set_xyzt_units("micron" if meta.voxel_size is not None else "unknown")
    affine = np.diag(list(vs_um) + [1.0] * (4 - len(vs_um)))
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header["vox_offset"] = 352
    opener = gzip.open if str(path).endswith(".gz") else open
    out_dtype = header.get_data_dtype()
    with opener(path, "wb") as f:
        header.write_to(f)  # 348 header bytes + 4 extension-flag bytes: data starts at 352
        if f.tell() != 352:
            raise RuntimeError(f"{path}: NIfTI header took {f.tell()} bytes, expected 352")
        for plane in iter_planes(data, max_block_bytes):
            f.write(np.ascontiguousarray(plane, dtype=out_dtype).tobytes())
            if progress is not None:
                progress(plane.size)
