"""HDF5 volumes (CREMI layout, ilastik/Fiji, gala): ``file.h5:volumes/raw``.

Voxel size is read from the ``resolution`` attribute (CREMI: nm, zyx), ``element_size_um``
(ilastik/Fiji: µm, zyx) or ``voxel_size``; written as ``resolution`` (and ``offset``, nm, zyx)
so CREMI tools read it too. Axes are stored as an ``axes`` attribute when not plain zyx.
"""

from __future__ import annotations

import numpy as np

from .paths import KeyNotFoundError
from .meta import VolumeMeta, plausible_voxel_size
from .volume import Volume

__all__ = ["open_hdf5", "create_hdf5", "list_hdf5_datasets"]

COMPRESSIONS = ("gzip", "lzf", None)


def list_hdf5_datasets(path) -> list[str]:
    """Keys of every dataset in an HDF5 file, sorted."""
    import h5py

    with h5py.File(path, "r") as f:
        return _datasets(f)


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

    try:
        f = h5py.File(path, {"r": "r", "r+": "r+", "a": "a"}.get(mode, mode))
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e})") from None
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
    except Exception:
        f.close()
        raise
    return Volume(ds, meta, path=path, key=key, format="hdf5", mode=mode, chunks=ds.chunks, closer=f.close)


def create_hdf5(path, key, shape, dtype, chunks, meta: VolumeMeta, compression="gzip") -> Volume:
    """Create a chunked dataset (the file is created or appended to) and return it open for writing."""
    import h5py

    if compression not in COMPRESSIONS:
        raise ValueError(f"HDF5 compression must be one of {COMPRESSIONS}; got {compression!r}")
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
    return Volume(ds, meta, path=path, key=key, format="hdf5", mode="r+", chunks=ds.chunks, closer=f.close)
