"""Convert a volume between formats block by block, with bounded memory."""

from __future__ import annotations

import os

from .access import _write, open_volume

__all__ = ["convert_volume"]


def convert_volume(src, dst, *, chunks=None, voxel_size=None, format=None, compression="default",
                   zarr_format=2, overwrite=False, progress=False, max_block_bytes=64 * 2**20) -> bool:
    """Convert ``src`` to ``dst`` (any formats :func:`open_volume` reads and :func:`write_volume` writes).

    Memory stays near ``max_block_bytes`` (a few blocks in flight) whatever the volume's size.
    The voxel size and offset carry over unless ``voxel_size`` overrides them. ``dst`` appears
    only once complete; an interrupted conversion leaves no output that looks finished.

    A conversion records its input's identity and options with an HDF5/Zarr/N5 output, so running
    the same conversion again finds it finished and returns False without writing.

    Parameters
    ----------
    src, dst : str
        Paths, with ``:key`` for datasets in HDF5/Zarr/N5 containers.
    progress : bool or callable
        True shows a progress bar (tqdm, to stderr); a callable receives voxels done per block.

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

    (src_file, _), (dst_file, _) = split_key(os.fspath(src)), split_key(os.fspath(dst))
    if os.path.exists(dst_file) and os.path.realpath(src_file) == os.path.realpath(dst_file) and \
            detect_format(dst_file, format) == "hdf5":
        raise ValueError(f"{dst}: converting into the HDF5 file that is being read is not supported (HDF5 allows one "
                         "writer and no reader at once); write to another file")

    with open_volume(src) as vol:
        signature = run_signature("convert", {"input": input_identity(src, vol)},
                                  options={"chunks": chunks, "voxel_size": voxel_size, "format": format,
                                           "compression": compression, "zarr_format": zarr_format})
        bar = None
        if progress is True:
            from tqdm.auto import tqdm

            bar = tqdm(total=vol.size, unit="vox", unit_scale=True, desc=f"convert {vol.path}", leave=False)
            progress = bar.update
        try:
            return _write(dst, vol, voxel_size=voxel_size, chunks=chunks, format=format,
                                compression=compression, zarr_format=zarr_format, overwrite=overwrite,
                                progress=progress or None, max_block_bytes=max_block_bytes, signature=signature)
        finally:
            if bar is not None:
                bar.close()
