"""Open, read and create volumes in any supported format, by path (writing is :mod:`emseg.io.write`)."""

from __future__ import annotations

import os
import shutil

import numpy as np

from .meta import VolumeMeta
from .paths import CONTAINERS, FORMATS, detect_format, split_key
from .storage import StorageConfig
from .volume import Volume

__all__ = ["open_volume", "read_volume", "create_volume", "list_datasets", "default_chunks"]

_DEFAULT_AXES = {2: "yx", 3: "zyx", 4: "czyx"}
_DEFAULT_COMPRESSION = {"hdf5": "gzip", "zarr": "zstd", "n5": "gzip", "tiff": "zlib"}


def _exists(path, key=None) -> None:
    if not os.path.exists(path):
        from .siblings import incomplete_hint

        parent = os.path.dirname(os.path.abspath(path))
        hint = incomplete_hint(path, key) if os.path.isdir(parent) else f" (its folder {parent} does not exist either)"
        raise FileNotFoundError(f"{path}: no such file or folder{hint}")


def open_volume(path, key=None, mode="r", *, format=None, ndim=None) -> Volume:
    """Open a volume lazily: nothing is read until it is sliced.

    Parameters
    ----------
    path : str or PathLike
        A file or folder; containers take a dataset key as ``file.h5:volumes/raw`` or ``key=``.
    key : str, optional
        Dataset inside an HDF5/Zarr/N5 container (may be omitted when it holds exactly one).
    mode : {"r", "r+"}
        ``"r+"`` allows writes to HDF5, Zarr, N5 and MRC volumes.
    format : str, optional
        Force a format instead of guessing it from the suffix: one of
        ``tiff, image-folder, image, hdf5, zarr, n5, mrc, nifti``.
    ndim : int, optional
        Require this many dimensions (e.g. 3 for a zyx volume).

    Returns
    -------
    Volume
        With ``shape``, ``dtype``, ``chunks``, ``voxel_size`` (nm, zyx), ``axes``, ``offset`` and
        numpy slicing. Close it (or use ``with``) to release the file.

    Raises
    ------
    FileNotFoundError, ValueError (unsupported or unreadable file, wrong ndim),
    KeyNotFoundError (a missing key; the message lists the keys that exist).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from emseg.io import write_volume
    >>> path = os.path.join(tempfile.mkdtemp(), "cells.h5")
    >>> write_volume(path + ":raw", np.arange(24, dtype=np.uint8).reshape(2, 3, 4), voxel_size=(40, 4, 4))
    >>> with open_volume(path + ":raw") as vol:
    ...     vol.shape, vol.voxel_size, vol[1, :, 2]
    ((2, 3, 4), (40.0, 4.0, 4.0), array([14, 18, 22], dtype=uint8))
    """
    path, key = split_key(path, key)
    _exists(path, key)
    if mode == "r" and any(p.startswith(".emseg-partial-") for p in
                           [os.path.basename(os.path.abspath(path))] + (key or "").split("/")):
        raise ValueError(f"{path}: this is the incomplete output of an interrupted run, not a volume to read; "
                         "rerun the command that wrote it to finish it")
    fmt = detect_format(path, format)
    if key is not None and fmt not in CONTAINERS:
        raise ValueError(f"{path}: a {fmt} file holds one volume; drop the key {key!r} "
                         f"(keys are for {', '.join(CONTAINERS)} containers)")
    if mode not in ("r", "r+"):
        raise ValueError(f"mode must be 'r' or 'r+'; got {mode!r}")
    if fmt == "tiff":
        from .tiff import open_tiff as opener
    elif fmt == "hdf5":
        from .hdf5 import open_hdf5 as opener
    elif fmt == "zarr":
        from .omezarr import open_zarr as opener
    elif fmt == "n5":
        from .n5volume import open_n5_volume as opener
    elif fmt == "mrc":
        from .mrc import open_mrc as opener
    elif fmt == "nifti":
        from .nifti import open_nifti as opener
    elif fmt == "image":
        from .images import open_image as opener
    else:
        from .images import open_image_folder as opener
    try:
        vol = opener(path, key, mode) if fmt in CONTAINERS else opener(path, mode)
    except KeyError as e:
        from .siblings import incomplete_hint

        hint = incomplete_hint(path, key)
        if hint:
            raise type(e)(f"{e}{hint}") from None
        raise
    if ndim is not None and vol.ndim != ndim:
        vol.close()
        want = {2: "a 2D image (yx)", 3: "a 3D volume (zyx)", 4: "a 4D volume (czyx)"}.get(ndim, f"{ndim}D data")
        raise ValueError(f"{vol.path}{':' + vol.key if vol.key else ''} holds a {vol.ndim}D array of shape "
                         f"{vol.shape} but {want} is expected")
    return vol


def read_volume(path, key=None, *, format=None, ndim=None) -> np.ndarray:
    """Read a whole volume into memory (see :func:`open_volume` for the arguments)."""
    with open_volume(path, key, format=format, ndim=ndim) as vol:
        return vol[...]


def list_datasets(path) -> list[str]:
    """Keys of the datasets inside an HDF5, Zarr or N5 container ([] for single-volume files)."""
    path, _ = split_key(path)
    _exists(path)
    fmt = detect_format(path)
    if fmt == "hdf5":
        from .hdf5 import list_hdf5_datasets as lister
    elif fmt == "zarr":
        from .omezarr import list_zarr_arrays as lister
    elif fmt == "n5":
        from .n5attrs import list_n5_datasets as lister
    else:
        return []
    return [k for k in lister(path) if not any(p.startswith(".emseg-") for p in k.split("/"))]


def default_chunks(shape, voxel_size=None) -> tuple[int, ...]:
    """Storage chunks for a new volume: 64³ (16×128×128 when z is ≥ 3× coarser), 512² in 2D.

    Examples
    --------
    >>> default_chunks((30, 512, 512), (50, 4, 4)), default_chunks((2, 100, 100, 100))
    ((16, 128, 128), (1, 64, 64, 64))
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        base = (512, 512)
    else:
        aniso = voxel_size is not None and voxel_size[-3] >= 3 * min(voxel_size[-2:])
        base = (16, 128, 128) if aniso else (64, 64, 64)
        base = (1,) * (len(shape) - 3) + base
    return tuple(max(1, min(b, s)) for b, s in zip(base, shape))


def _meta(shape, axes=None, voxel_size=None, offset=None) -> VolumeMeta:
    axes = axes or _DEFAULT_AXES.get(len(shape))
    if axes is None or len(axes) != len(shape):
        raise ValueError(f"axes {axes!r} do not fit data of shape {tuple(shape)}; give axes like 'zyx' or 'czyx'")
    return VolumeMeta(axes, voxel_size, offset)


def create_volume(path, shape, dtype, chunks=None, *, key=None, meta=None, storage=None, overwrite=False) -> Volume:
    """Create an empty chunked volume (HDF5, Zarr/OME-Zarr or N5) to be written block by block.

    Unwritten chunks read as 0. Returns the volume open for writing (``vol[roi] = block``).

    Parameters
    ----------
    path : str or PathLike
        A container path, with the dataset as ``file.h5:key`` or ``key=``.
    shape, dtype : the array's.
    chunks : tuple of int, optional
        Storage chunks (default: :func:`default_chunks`).
    meta : VolumeMeta, optional
        Axes, voxel size (nm) and offset (nm); default: axes from the number of dimensions
        (``yx``, ``zyx``, ``czyx``), no voxel size.
    storage : StorageConfig, optional
        Format, compression and Zarr version (default: from the suffix, the format's default
        codec, Zarr v2).
    overwrite : bool
        Replace a volume already at ``path`` (``key``); otherwise that raises ``FileExistsError``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "pred.zarr")
    >>> vol = create_volume(path, (4, 100, 100), "uint8", chunks=(4, 64, 64), meta=VolumeMeta("zyx", (8, 8, 8)))
    >>> vol[:, :64, :64] = 7
    >>> int(open_volume(path)[...].sum()), open_volume(path).voxel_size
    (114688, (8.0, 8.0, 8.0))
    """
    path, key = split_key(path, key)
    storage = storage or StorageConfig()
    fmt = detect_format(path, storage.format, for_writing=True)
    if fmt not in CONTAINERS:
        suffixes = ", ".join(s for c in CONTAINERS for s in FORMATS[c])
        raise ValueError(f"{path}: create_volume makes chunked volumes ({suffixes}); got a {fmt} path. "
                         f"Use write_volume() for {fmt} output")
    shape = tuple(int(s) for s in shape)
    meta = _meta(shape) if meta is None else _meta(shape, meta.axes, meta.voxel_size, meta.offset)
    chunks = tuple(chunks) if chunks is not None else default_chunks(shape, meta.voxel_size)
    if len(chunks) != len(shape) or any(int(c) < 1 for c in chunks):
        raise ValueError(f"chunks must be {len(shape)} positive ints for shape {shape}; got {chunks}")
    chunks = tuple(min(int(c), s) for c, s in zip(chunks, shape))
    compression = _DEFAULT_COMPRESSION[fmt] if storage.compression == "default" else storage.compression
    _remove_existing(path, key, fmt, overwrite)
    if fmt == "hdf5":
        from .hdf5 import create_hdf5

        return create_hdf5(path, key, shape, dtype, chunks, meta, compression)
    if fmt == "zarr":
        from .omezarr import create_zarr

        return create_zarr(path, key, shape, dtype, chunks, meta, zarr_format=storage.zarr_format,
                           compression=compression)
    from .n5volume import create_n5_volume

    return create_n5_volume(path, key, shape, dtype, chunks, meta, compression)


def _remove_existing(path, key, fmt, overwrite):
    """Refuse (or, with overwrite, delete) what already stands at ``path``/``key``; a link is unlinked, not followed."""
    from .paths import check_key, inside_container

    key = check_key(path, key)
    if key is None or fmt not in CONTAINERS:
        if os.path.lexists(path):
            if not overwrite:
                raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
        return
    if not os.path.exists(path):
        return
    if fmt == "hdf5":
        import h5py

        with h5py.File(path, "a") as f:
            if key in f:
                if not overwrite:
                    raise FileExistsError(f"{path} already holds {key!r}; pass overwrite=True to replace it")
                del f[key]
    else:
        inside_container(path, key)  # refuses keys and links that leave the container
        node = os.path.join(path, *key.split("/"))
        if os.path.lexists(node):
            if not overwrite:
                raise FileExistsError(f"{path} already holds {key!r}; pass overwrite=True to replace it")
            os.remove(node) if os.path.islink(node) else shutil.rmtree(node)
