"""The memory one block of a prediction needs at its peak: what sizes Dask workers and batch jobs.

Per block (bytes), with ``R`` the voxels of the read region (write region plus halo, padded to the
network's input divisor) and ``N`` the voxels the network sees at once (``R``; for a 2D model,
``batch_size`` sections of it; with tiles, ``batch_size`` tiles)::

    input    R x (raw itemsize + 3 x 4 x C_in)                    read, float32, transposed copies
    network  4 x (sum_l w_l N_l + 7 w_0 N)  per model             activations (``network_bytes``)
    output   R x C_out x 4 x (2 + (2T + 2)[T > 1] + (2M + 2)[M > 1])   batches, TTA views, ensemble
    tiles    R x (C_out + 1) x 4                                  blending accumulators
    write    W x C_out x (itemsize + 8)                           the cropped, cast block

where ``w_l`` is the width of U-Net level ``l`` and ``N_l`` its voxels (``N`` divided by the pooling
so far), ``T`` the test-time augmentations, ``M`` the ensemble's models and ``W`` the write region.
The network term was checked against the peak RSS of real forward passes (2D light U-Net on 1024²,
2D 32-feature U-Net on 2 x 512², 3D U-Nets on 64 x 128² and 32 x 96²): within 0.94-1.13 of it; the
whole estimate against real blocks (a light 2D U-Net on 4 x 1024², a tiny one on 8 x 512², a 3D U-Net on
48 x 160², each with and without flip TTA): 1.2-1.8 times their peak RSS, on the safe side.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["network_bytes", "prediction_block_bytes", "prediction_memory"]


def network_bytes(init_args, voxels) -> int:
    """Peak bytes of a U-Net forward pass (float32, inference) over ``voxels`` input voxels.

    ``init_args`` are the network's (a checkpoint's ``init_args``: ``features`` per level and
    ``pool_sizes``); the skip connections are held while the decoder runs, about 7 full-resolution
    feature maps of level 0 at its peak.

    Examples
    --------
    >>> network_bytes({"features": [8, 16], "pool_sizes": [[2, 2]]}, 1000)
    272000
    """
    widths, pools = list(init_args["features"]), [math.prod(p) for p in init_args.get("pool_sizes", [])]
    held, level = 0.0, float(voxels)
    for i, w in enumerate(widths):
        held += w * level
        level /= pools[i] if i < len(pools) else 1
    return int(4 * (held + 7 * widths[0] * voxels))


def prediction_block_bytes(predictors, shape, grid, config, raw_itemsize=4) -> int:
    """Peak bytes of the largest block of a volume of ``shape`` cut into ``grid`` (a
    :class:`~emseg.blockwise.BlockGrid`: block shape and halo; formulas: the module docstring).

    ``predictors`` are the ensemble's :class:`~emseg.predict.model.Predictor`; a model that is not a
    checkpoint (a callable) adds no network term. ``config`` is the :class:`~emseg.predict.PredictConfig`.
    """
    from .tiling import tta_transforms

    p = predictors[0]
    divisor = (1,) * (len(shape) - p.ndim) + tuple(p.divisor)
    block = [min(b, n) for b, n in zip(grid.block_shape, shape)]
    read = [-(-min(b + 2 * h, n) // d) * d for b, h, n, d in zip(block, grid.halo, shape, divisor)]
    r, w = math.prod(read), math.prod(block)
    image = read[-p.ndim:] if config.tile_shape is None else \
        [min(t, n) for t, n in zip(tuple(config.tile_shape)[-p.ndim:], read[-p.ndim:])]
    seen = math.prod(image) * (min(config.batch_size, read[0]) if p.ndim < len(read) else 1)  # 2D: sections batched
    n_tta = len(tta_transforms(p.ndim, None, config.tta)) if config.tta else 1
    n_models = len(predictors)
    network = max((network_bytes(q.checkpoint.init_args, seen) for q in predictors if q.checkpoint is not None),
                  default=0)
    c_in, c_out = p.in_channels, p.out_channels
    out = r * c_out * 4 * (2 + (2 * n_tta + 2) * (n_tta > 1) + (2 * n_models + 2) * (n_models > 1))
    tiles = r * (c_out + 1) * 4 if config.tile_shape is not None else 0
    write = w * c_out * (np.dtype(config.dtype).itemsize + 8)
    return int(r * (raw_itemsize + 12 * c_in) + network + out + tiles + write)


def prediction_memory(raw, model, config=None) -> int:
    """Peak bytes of one block of ``predict_blockwise(raw, model, out, config=config)``, planned as it plans.

    ``raw`` is a path (or an array-like), ``model`` a checkpoint, a shipped model's name or a list of them.
    """
    from ..io import open_volume
    from .blocks import _grid
    from .config import PredictConfig
    from .model import as_predictor

    config = config if config is not None else PredictConfig()
    models = model if isinstance(model, (list, tuple)) else [model]
    predictors = [as_predictor(m, device=config.device) for m in models]
    vol = open_volume(raw) if isinstance(raw, str) or hasattr(raw, "__fspath__") else raw
    try:
        shape, itemsize = tuple(int(s) for s in vol.shape), np.dtype(vol.dtype).itemsize
    finally:
        if vol is not raw:
            vol.close()
    grid = _grid(shape, predictors, config.block_shape, config.halo, None)
    return prediction_block_bytes(predictors, shape, grid, config, itemsize)
