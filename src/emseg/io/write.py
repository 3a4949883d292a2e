"""Write any array-like to any writable format, block by block, appearing only once complete.

The data is read in blocks aligned to the output's chunks (and the source's when cheap), so a
volume larger than memory is copied with bounded memory; the output is written under a hidden
partial name by :class:`~emseg.io.output.Output` and renamed into place at the end.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..blockwise.geometry import aligned_block_shape, block_slices
from ..config import ExecutionConfig
from .access import _DEFAULT_COMPRESSION, _meta
from .meta import VolumeMeta
from .paths import CONTAINERS, detect_format, split_key
from .storage import StorageConfig
from .volume import Volume

__all__ = ["write_volume", "WRITABLE", "MAX_BLOCK_BYTES"]

WRITABLE = ("tiff", "image-folder", "hdf5", "zarr", "n5", "mrc", "nifti")
MAX_BLOCK_BYTES = 64 * 2**20  # the memory one block of a copy may take when the execution says nothing


def write_volume(path, data, *, voxel_size=None, offset=None, axes=None, chunks=None, storage=None,
                 execution=None) -> None:
    """Write an array or any array-like (a lazy ``Volume``, an h5py/zarr array) to ``path``.

    Reads ``data`` in blocks of at most ``execution.max_block_mb`` (default 64 MiB), so volumes
    larger than memory are copied with bounded memory. The output appears only when complete
    (written under a hidden temporary name, then renamed): a failed or interrupted write leaves
    nothing that looks done.

    Parameters
    ----------
    path : str or PathLike
        The output; a dataset of an HDF5/Zarr/N5 container as ``file.h5:volumes/raw``.
    voxel_size, offset, axes : optional
        Override (or supply) metadata; by default taken from ``data`` when it is a ``Volume``.
    chunks : tuple of int, optional
        Storage chunks for HDF5/Zarr/N5 (default: :func:`default_chunks`).
    storage : StorageConfig, optional
        Format (default: from the suffix), compression (default: gzip for HDF5/N5, Blosc-zstd
        for Zarr, zlib for TIFF) and Zarr version (default 2).
    execution : emseg.config.ExecutionConfig, optional
        ``overwrite`` replaces an existing output (once the new one is complete), ``progress``
        shows a progress bar, ``max_block_mb`` bounds the memory of one block; the other fields
        do not apply (a write is one pass, never resumed).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from emseg.io import open_volume
    >>> path = os.path.join(tempfile.mkdtemp(), "raw.zarr")
    >>> write_volume(path, np.ones((2, 8, 8), np.uint8), voxel_size=(30, 4, 4),
    ...              storage=StorageConfig(compression=None, zarr_format=3))
    >>> open_volume(path).voxel_size
    (30.0, 4.0, 4.0)
    """
    data = _array_like(data)
    _write(path, data, _data_meta(data, voxel_size, offset, axes), chunks=chunks, storage=storage,
           execution=execution)


def _array_like(data):
    return data if hasattr(data, "shape") and hasattr(data, "__getitem__") else np.asarray(data)


def _data_meta(data, voxel_size=None, offset=None, axes=None) -> VolumeMeta:
    """``data``'s own metadata (when it is a ``Volume``) with the given fields overriding it."""
    src = getattr(data, "meta", None)
    return _meta(data.shape, axes or (src.axes if src else None),
                 voxel_size if voxel_size is not None else (src.voxel_size if src else None),
                 offset if offset is not None else (src.offset if src else None))


def _write(path, data, meta, *, chunks=None, storage=None, execution=None, signature=None, desc=None) -> bool:
    """:func:`write_volume` of ``data`` with ``meta``; False when ``signature``'s finished result was already there."""
    storage, execution = storage or StorageConfig(), execution or ExecutionConfig()
    path, key = split_key(path)
    fmt = detect_format(path, storage.format, for_writing=True)
    if fmt not in WRITABLE:
        raise ValueError(f"{path}: cannot write {fmt!r}; writable formats: {', '.join(WRITABLE)}")
    if key is not None and fmt not in CONTAINERS:
        raise ValueError(f"{path}: a {fmt} file holds one volume; drop the key {key!r}")
    if fmt in CONTAINERS and fmt == "hdf5" and key is None:
        key = "data"
    if fmt not in ("zarr", "n5", "hdf5", "tiff") and meta.axes not in ("zyx", "yx"):
        raise ValueError(f"{path}: {fmt} holds zyx volumes or yx images; got axes {meta.axes!r} "
                         "(write channels to Zarr, N5, HDF5 or TIFF)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{path}: output folder {parent} does not exist")
    from ..runs import run_signature
    from .output import Output

    known = signature is not None
    signature = signature or run_signature("write", options={"shape": list(data.shape), "format": fmt,
                                                             "dtype": str(np.dtype(data.dtype)), "chunks": chunks,
                                                             "compression": storage.compression})
    with Output(path, key, signature=signature, execution=execution, resumable=False, format=fmt,
                complete_ok=known) as o:
        if o.complete:
            return False
        with _progress(execution.progress, data, desc or f"write {path}") as progress:
            _write_data(o, data, meta, chunks, storage, execution.max_block_bytes or MAX_BLOCK_BYTES, progress)
        from .pyramid import pyramid_for_output, pyramid_method

        pyramid_for_output(o, pyramid_method({}, data.dtype), execution)
        o.commit()
    return True


def _write_data(o, data, meta, chunks, storage, max_block_bytes, progress):
    """Write ``data`` to the partial location of the output ``o``, in the writer of its format."""
    if o.fmt in CONTAINERS:
        with o.create(data.shape, data.dtype, chunks=chunks, meta=meta, storage=storage) as out:
            _copy_blocks(data, out, max_block_bytes, progress)
        return
    if o.fmt == "tiff":
        from .tiff import write_tiff

        compression = _DEFAULT_COMPRESSION["tiff"] if storage.compression == "default" else storage.compression
        write_tiff(o.tmp_path, data, meta, compression=compression, progress=progress,
                   max_block_bytes=max_block_bytes)
        return
    if o.fmt == "image-folder":
        from .images import write_image_folder as writer
    elif o.fmt == "mrc":
        from .mrc import write_mrc as writer
    else:
        from .nifti import write_nifti as writer
    writer(o.tmp_path, data, meta, progress=progress, max_block_bytes=max_block_bytes)


@contextlib.contextmanager
def _progress(show, data, desc):
    """A callable that advances a progress bar by the voxels written (None when ``show`` is False)."""
    if not show:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=int(np.prod(data.shape, dtype=np.int64)), unit="vox", unit_scale=True, desc=desc,
              leave=False) as bar:
        yield bar.update


def _copy_blocks(src, out: Volume, max_block_bytes, progress):
    """Copy ``src`` into ``out`` in blocks aligned to ``out``'s chunks (and the source's when cheap)."""
    from .. import faults

    align = list(out.chunks)
    src_chunks = getattr(src, "chunks", None)
    if src_chunks:
        for i, (c, s) in enumerate(zip(align, src_chunks)):
            both = np.lcm(int(c), int(s))
            if both <= 4 * c:
                align[i] = int(both)
    block = aligned_block_shape(out.shape, align, out.dtype.itemsize, max_block_bytes)
    rois = block_slices(out.shape, block)
    # Read the next block while this one is compressed and written: one extra block in memory.
    with ThreadPoolExecutor(1) as reader:
        pending = reader.submit(lambda r: np.asarray(src[r]), rois[0])
        for i, roi in enumerate(rois):
            data = pending.result()
            if i + 1 < len(rois):
                pending = reader.submit(lambda r: np.asarray(src[r]), rois[i + 1])
            out[roi] = data
            faults.point("block-copied")
            if progress is not None:
                progress(data.size)
