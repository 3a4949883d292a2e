"""Convert a volume between formats block by block, with bounded memory."""

from __future__ import annotations

import os

from .access import open_volume
from .storage import StorageConfig
from .write import _data_meta, _write

__all__ = ["convert_volume"]


def convert_volume(src, dst, *, chunks=None, voxel_size=None, storage=None, execution=None) -> bool:
    """Convert ``src`` to ``dst`` (any formats :func:`open_volume` reads and :func:`write_volume` writes).

    Memory stays near ``execution.max_block_mb`` (default 64 MiB; a few blocks in flight) whatever
    the volume's size. The voxel size and offset carry over unless ``voxel_size`` overrides them.
    ``dst`` appears only once complete; an interrupted conversion leaves no output that looks
    finished.

    A conversion records its input's identity and options with an HDF5/Zarr/N5 output, so running
    the same conversion again finds it finished and returns False without writing.

    Parameters
    ----------
    src, dst : str
        Paths, with ``:key`` for datasets in HDF5/Zarr/N5 containers.
    chunks : tuple of int, optional
        Storage chunks of ``dst`` (default: :func:`default_chunks`).
    voxel_size : tuple of float, optional
        Nanometres per voxel (zyx), replacing what ``src`` says.
    storage : StorageConfig, optional
        Format, compression and Zarr version of ``dst`` (see :class:`StorageConfig`).
    execution : emseg.config.ExecutionConfig, optional
        ``overwrite`` replaces an existing ``dst`` once the new one is complete; ``progress``
        shows a progress bar (tqdm, to stderr); ``max_block_mb`` bounds the memory of a block.

    Returns
    -------
    bool
        True when written; False when ``dst`` already held this very conversion's result.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from emseg.io import write_volume, open_volume
    >>> d = tempfile.mkdtemp()
    >>> write_volume(os.path.join(d, "raw.tif"), np.zeros((3, 64, 64), np.uint8), voxel_size=(30, 4, 4))
    >>> convert_volume(os.path.join(d, "raw.tif"), os.path.join(d, "raw.zarr"), chunks=(1, 32, 32))
    True
    >>> vol = open_volume(os.path.join(d, "raw.zarr"))
    >>> vol.voxel_size, vol.chunks
    ((30.0, 4.0, 4.0), (1, 32, 32))
    """
    from ..runs import input_identity, run_signature
    from .paths import detect_format, split_key

    storage = storage or StorageConfig()
    (src_file, _), (dst_file, _) = split_key(os.fspath(src)), split_key(os.fspath(dst))
    if os.path.exists(dst_file) and os.path.realpath(src_file) == os.path.realpath(dst_file) and \
            detect_format(dst_file, storage.format) == "hdf5":
        raise ValueError(f"{dst}: converting into the HDF5 file that is being read is not supported (HDF5 allows one "
                         "writer and no reader at once); write to another file")

    with open_volume(src) as vol:
        signature = run_signature("convert", {"input": input_identity(src, vol)},
                                  options={"chunks": chunks, "voxel_size": voxel_size, "format": storage.format,
                                           "compression": storage.compression, "zarr_format": storage.zarr_format})
        return _write(dst, vol, _data_meta(vol, voxel_size), chunks=chunks, storage=storage, execution=execution,
                      signature=signature, desc=f"convert {vol.path}")
