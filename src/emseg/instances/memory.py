"""The memory one block of :func:`~emseg.instances.segment_blockwise` needs at its peak (an estimate):
what sizes Dask workers and batch jobs. Pass 1 dominates: per voxel of the read region (block, halo
and z-filter sections), the prediction as read and as float32 probabilities, and the method's labels
and workspace (global ids, seeds, distances: about 40 B). Measured on 32 x 512² blocks: 1.5-1.8 times
the peak RSS of ``cc`` and ``bc`` blocks (on the safe side)."""

from __future__ import annotations

import numpy as np

__all__ = ["postprocess_block_bytes", "postprocess_memory"]


def postprocess_block_bytes(spec, itemsize, channels) -> int:
    """Peak bytes of a block of pass 1 for a plan ``spec`` (``shape``, ``block_shape``, ``halo``, ``zf``).

    Examples
    --------
    >>> spec = {"shape": (8, 64, 64), "block_shape": (8, 32, 32), "halo": (0, 4, 4), "zf": 0}
    >>> postprocess_block_bytes(spec, 4, 2)  # 8 x 40 x 40 voxels, 2 float32 channels
    819200
    """
    ext = [min(b + 2 * h, n) for b, h, n in zip(spec["block_shape"], spec["halo"], spec["shape"])]
    ext[0] = min(ext[0] + 2 * spec["zf"], spec["shape"][0])
    return int(np.prod(ext)) * (channels * (itemsize + 8) + 40)


def postprocess_memory(pred, config) -> int:
    """Peak bytes of one block of ``segment_blockwise(pred, out, config=config)``, planned as it plans.

    ``pred`` is a path, or anything with ``shape`` and ``dtype`` (channels first); ``config`` a
    :class:`~emseg.instances.PostprocessConfig` with its ``method``.
    """
    from ..io import open_volume
    from .methods import METHODS, section_offsets
    from .stitch import _grid

    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")
    vol = open_volume(pred) if isinstance(pred, str) or hasattr(pred, "__fspath__") else pred
    try:
        full, itemsize = tuple(int(s) for s in vol.shape), np.dtype(vol.dtype).itemsize
    finally:
        if vol is not pred:
            vol.close()
    channels_first = not (METHODS[config.method]["channels"] == 1 and len(full) in (2, 3))
    shape = full[1:] if channels_first else full
    offsets = section_offsets([list(o) for o in config.offsets], len(shape)) if config.offsets else None
    grid = _grid(shape, config.method, config.block_shape, config.halo, offsets)
    zf = int(config.z_filter or 0) // 2 if len(shape) == 3 else 0
    spec = {"shape": shape, "block_shape": grid.block_shape, "halo": grid.halo, "zf": zf}
    return postprocess_block_bytes(spec, itemsize, full[0] if channels_first else 1)
