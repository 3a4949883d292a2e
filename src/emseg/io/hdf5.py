"""HDF5 volumes (CREMI layout, ilastik/Fiji, gala): ``file.h5:volumes/raw``.

Voxel size is read from the ``resolution`` attribute (CREMI: nm, zyx), ``element_size_um``
(ilastik/Fiji: µm, zyx) or ``voxel_size``; written as ``resolution`` (and ``offset``, nm, zyx)
so CREMI tools read it too. Axes are stored as an ``axes`` attribute when not plain zyx.
"""

from __future__ import annotations

import os
import re

import numpy as np

from .meta import VolumeMeta, plausible_voxel_size
from .paths import KeyNotFoundError, check_key, suffix_hint
from .volume import Volume, VolumeReadError, describe_error, unreadable_file

__all__ = ["open_hdf5", "create_hdf5", "list_hdf5_datasets"]

COMPRESSIONS = ("gzip", "lzf", None)


def list_hdf5_datasets(path) -> list[str]:
    """Keys of every dataset in an HDF5 file, sorted."""
    with _open_file(path, "r") as f:
        return _datasets(f)


def _open_file(path, mode):
    """``h5py.File(path, mode)``, with a one-line error that says why a file does not open."""
    import h5py

    try:
        return h5py.File(path, mode)
    except OSError as e:
        raise _unreadable(path, e) from None


def _unreadable(path, error) -> OSError:
    text = str(error)
    if isinstance(error, PermissionError) or "errno = 13" in text or os.path.isdir(path):
        return unreadable_file(path, "HDF5 file", error)
    cut = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
    if cut:
        why = (f"the file is cut short: it has {cut[1]} bytes but its header says {cut[2]} (an interrupted copy "
               "or write?); copy or write it again")
    elif "file signature not found" in text:
        why = "not an HDF5 file (no HDF5 signature)" + (suffix_hint(path, "hdf5") or "; it may be corrupt")
    elif "lock" in text and "errno = 11" in text:
        why = ("the file is locked by another process that has it open for writing; wait for it to finish "
               "(or set HDF5_USE_FILE_LOCKING=FALSE to read anyway)")
    else:
        return unreadable_file(path, "HDF5 file", error, suffix_hint(path, "hdf5"))
    return VolumeReadError(f"{path}: {why}")


def _datasets(group) -> list[str]:
    import h5py

    keys = []
    group.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(keys)


def _read_meta(attrs, ndim, path, key) -> VolumeMeta:
    axes = attrs.get("axes")
    axes = axes.decode() if isinstance(axes, bytes) else axes
    if not isinstance(axes, str) or len(axes) != ndim:
        axes = {2: "yx", 3: "zyx", 4: "czyx"}.get(ndim)
        if axes is None:
            raise ValueError(f"{path}:{key} is {ndim}D; emseg reads 2D (yx), 3D (zyx) or 4D (czyx) arrays")
    n = sum(a in "zyx" for a in axes)
    vs = None
    for name, factor in (("resolution", 1.0), ("voxel_size", 1.0), ("element_size_um", 1e3)):
        if name in attrs and np.size(attrs[name]) == n:
            vs = plausible_voxel_size(np.asarray(attrs[name], float).ravel() * factor)
            break
    offset = attrs.get("offset")
    offset = tuple(np.asarray(offset, float).ravel()) if offset is not None and np.size(offset) == n else None
    return VolumeMeta(axes, vs, offset)


def open_hdf5(path, key=None, mode="r") -> Volume:
    """Open one dataset of an HDF5 file lazily (chunked reads through h5py)."""
    import h5py

    key = check_key(path, key)
    f = _open_file(path, {"r": "r", "r+": "r+", "a": "a"}.get(mode, mode))
    try:
        keys = _datasets(f)
        if key is None:
            if len(keys) != 1:
                raise ValueError(f"{path} holds {len(keys)} datasets; name one as {path}:KEY or with key=. "
                                 f"Datasets: {', '.join(keys) or '(none)'}")
            key = keys[0]
        if key not in f or not isinstance(f[key], h5py.Dataset):
            inside = [k for k in keys if k.startswith(key.rstrip("/") + "/")]
            raise KeyNotFoundError(f"{path} has no dataset {key!r}; datasets: "
                           f"{', '.join(inside or keys) or '(none)'}")
        ds = f[key]
        meta = _read_meta(ds.attrs, ds.ndim, path, key)
    except (ValueError, KeyError, TypeError):
        f.close()
        raise
    except Exception as e:  # a damaged object header or attribute: h5py raises OSError, RuntimeError
        f.close()
        raise VolumeReadError(f"{path}:{key}: cannot read the dataset's header ({describe_error(e)}); the file "
                              "is damaged: restore it from a copy or write it again") from None
    return Volume(ds, meta, path=path, key=key, format="hdf5", mode=mode, closer=f.close,
                  chunk_location=_chunk_location(ds))


def _chunk_location(ds):
    def location(index):
        info = ds.id.get_chunk_info_by_coord(tuple(int(i * c) for i, c in zip(index, ds.chunks)))
        return None if info.byte_offset is None else f"at byte {info.byte_offset} of the file ({info.size} bytes)"

    return location


def create_hdf5(path, key, shape, dtype, chunks, meta: VolumeMeta, compression="gzip") -> Volume:
    """Create a chunked dataset (the file is created or appended to) and return it open for writing."""
    import h5py

    if compression not in COMPRESSIONS:
        raise ValueError(f"HDF5 compression must be one of {COMPRESSIONS}; got {compression!r}")
    key = check_key(path, key)
    if key is None:
        raise ValueError(f"{path}: name the dataset to write, e.g. {path}:volumes/raw")
    f = h5py.File(path, "a")
    try:
        if key in f:
            raise FileExistsError(f"{path} already has a dataset {key!r}; pass overwrite=True or use another key")
        ds = f.create_dataset(key, shape=shape, dtype=dtype, chunks=tuple(chunks), compression=compression,
                              **({"compression_opts": 4} if compression == "gzip" else {}))
        if meta.voxel_size is not None:
            ds.attrs["resolution"] = np.asarray(meta.voxel_size, float)
        if meta.offset is not None:
            ds.attrs["offset"] = np.asarray(meta.offset, float)
        if meta.axes not in ("yx", "zyx"):
            ds.attrs["axes"] = meta.axes
    except Exception:
        f.close()
        raise
    return Volume(ds, meta, path=path, key=key, format="hdf5", mode="r+", closer=f.close)
