"""Blockwise prediction over volumes of any size: read a block plus its halo, predict, crop, write.

Geometry (one axis)::

    volume   |----------------------------------------------|
    write    |   block 0   |   block 1   |   block 2   |  3 |   aligned to the output's chunks
    read          |<-halo->|   block 1   |<-halo->|            clipped at the volume's border

Blocks start at multiples of ``block_shape`` (a multiple of the network's input divisor) and the
halo is rounded up to the divisor too, so every read region sits on the pooling grid of a
whole-volume pass: with ``tile_shape=None`` the result equals one forward pass over the whole
volume. Each finished block is appended to a progress record (fsync'ed) inside or beside the
output; a run that is killed and started again computes only the missing blocks. Only block
indices travel to Dask workers; workers open the volumes and load the model themselves, once.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..blockwise.cluster import check_jobs
from ..blockwise.execute import BlockJob, open_cached, run_blocks
from ..blockwise.geometry import BlockGrid, BlockRegions, as_halo, block_regions, block_slices, grow_roi, plan_grid
from ..zoo import resolve_model
from .config import PredictConfig
from .memory import prediction_block_bytes
from .model import as_predictor, runs_on_onnx
from .tiling import predict_region

__all__ = ["predict_blockwise", "PredictResult", "plan_blocks"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictResult:
    out: object
    n_blocks: int
    n_computed: int
    n_skipped: int
    seconds: float
    voxels_per_second: float
    complete_before: bool = False  # the output already held this very run's finished result


def plan_blocks(shape, block_shape, halo) -> list[BlockRegions]:
    """``[BlockRegions(write, read), ...]`` for a volume of ``shape`` (spatial axes only), in C order."""
    return [BlockRegions(w, grow_roi(w, halo, shape)) for w in block_slices(shape, block_shape)]


def _block(spec, index) -> BlockRegions:
    """The regions of block ``index`` alone (the stages run once per block: no full plan)."""
    return block_regions(BlockGrid(spec["shape"], spec["block_shape"], spec["halo"]), index)


_REGION_OPTIONS = ("tile_shape", "overlap", "tta", "tta_reduce", "ensemble_reduce", "batch_size")
"""The fields of :class:`PredictConfig` that :func:`predict_region` reads; they travel in the spec."""


def _grid(shape, predictors, block_shape, halo, out_chunks) -> BlockGrid:
    """The blocks of a prediction: the models' input divisor and receptive-field halo, then :func:`plan_grid`."""
    p = predictors[0]
    vn, mn = len(shape), p.ndim
    if mn > vn:
        raise ValueError(f"a {mn}D model cannot predict a {vn}D volume of shape {shape}")
    for q in predictors[1:]:
        if (q.ndim, q.in_channels, q.out_channels) != (p.ndim, p.in_channels, p.out_channels):
            raise ValueError("ensemble members must share dimensionality and input/output channels")
    lead = vn - mn  # 1 for a 2D model on a 3D stack (section by section)
    divisor = (1,) * lead + tuple(int(np.lcm.reduce([q.divisor[a] for q in predictors])) for a in range(mn))
    context = (p.in_channels - 1) // 2 if lead else 0  # 2.5D: neighbouring sections as channels
    model_halo = (context,) * lead + tuple(max(q.halo[a] for q in predictors) for a in range(mn))
    halo = model_halo if halo == "auto" or halo is None else as_halo(halo, shape)
    if any(h < m for h, m in zip(halo, model_halo)):
        log.warning("halo %s is smaller than the network's receptive-field halo %s: blocks will show seams "
                    "(results differ from a whole-volume pass near block faces)", halo, model_halo)
    # blocks big enough that the halo is a small part of what is computed
    return plan_grid(shape, block_shape, halo, divisor=divisor, chunks=out_chunks,
                     default=(1, 1024, 1024) if lead else None, halo_factor=4)


def _read(spec, index, raw=None):
    """Stage 1 of block ``index``: read its region plus halo, normalise, build the network input."""
    raw = raw if raw is not None else open_cached(spec["raw"], "r")
    _, read = _block(spec, index)
    data = np.asarray(raw[read])
    if data.dtype.kind == "f":
        from ..probabilities import check_finite

        check_finite(data, f"{spec['raw'] or 'raw'} block {index} (region {_region(read)})",
                     hint="replace them first (e.g. with the volume's median) or crop them out")
    data = data.astype(np.float32, copy=False)
    norm = spec["normalization"]
    if norm:
        lo, hi = norm["low"], norm["high"]
        data = (data - np.float32(lo)) / np.float32(max(hi - lo, 1e-6))
    k = spec["context"]
    if k and data.ndim == 3 and spec["ndim"] == 2:  # 2.5D: section z gets sections z-k..z+k as channels
        idx = np.clip(np.arange(data.shape[0])[None] + np.arange(-k, k + 1)[:, None], 0, data.shape[0] - 1)
        return data[idx]  # (2k+1, Z, Y, X); sections beyond the read region repeat its edge (inner
        # block borders have a z-halo of k sections, so only the volume's own ends are repeated)
    return data[None]


def _compute(spec, index, data, predictors=None, should_stop=None):
    """Stage 2: the network (with TTA/ensemble) on the read region, cropped to the write region."""
    from ..probabilities import check_finite

    predictors = predictors or [as_predictor(m, device=spec["device"], runtime=spec["runtime"]) for m in spec["models"]]
    pred = predict_region([q.fn for q in predictors], data, spatial_ndim=spec["ndim"], divisor=spec["divisor"],
                          halo=spec["halo"][-spec["ndim"]:], voxel_size=spec["voxel_size"],
                          config=PredictConfig(**{k: spec[k] for k in _REGION_OPTIONS}), should_stop=should_stop)
    check_finite(pred, f"the network output of block {index}",
                 hint="the model's weights or its input are broken (check the checkpoint)")
    write, read = _block(spec, index)
    return pred[(slice(None),) + tuple(slice(w.start - r.start, w.stop - r.start) for w, r in zip(write, read))]


def _write(spec, index, pred, out=None):
    """Stage 3: cast and write the block (whole storage chunks: a block is written entirely or not at all)."""
    out = out if out is not None else open_cached(spec["out"], "r+")
    write = _block(spec, index).write
    if np.dtype(out.dtype) == np.uint8:
        pred = np.clip(np.rint(pred * 255), 0, 255)
    out[(slice(None),) + write] = pred.astype(out.dtype)
    if hasattr(out, "flush"):
        out.flush()  # on disk before the block is recorded as done
    return index


def _region(roi):
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in roi) + "]"


def _run_block(spec, index, raw=None, out=None, predictors=None):
    """Read, predict and write block ``index`` of ``spec`` (a JSON-able plan); returns the index."""
    return _write(spec, index, _compute(spec, index, _read(spec, index, raw), predictors), out)


def predict_blockwise(raw, model, out, *, config=None, execution=None, **options) -> PredictResult:
    """Predict ``raw`` block by block into ``out`` (channels first), never holding more than a few blocks.

    Parameters
    ----------
    raw : str or array-like
        A path any format emseg reads (``file.h5:key``) or an array-like (zyx, or yx).
    model : str, UNet, callable, or a list of them (an ensemble, combined by ``ensemble_reduce``)
        Checkpoints (or shipped models' names) are read once per process; their normalisation is
        applied to ``raw`` and their task's activations to the output.
    out : str or array-like
        A path (a chunked OME-Zarr/N5/HDF5 volume of shape (C, *raw.shape) is created, with chunks
        equal to the blocks) or an existing writable volume of that shape.
    config : PredictConfig, optional
        Blocks, halo, tiles, TTA, output dtype, device, normalisation, roi/mask (see
        :class:`~emseg.predict.PredictConfig`).
    execution : emseg.config.ExecutionConfig, optional
        Workers (threads, or Dask processes with ``scheduler="local"``), a scheduler address,
        resume (skip blocks an interrupted run of the same settings recorded), overwrite, progress.
    **options
        Any field of either config, e.g. ``block_shape=(1, 256, 256), workers=1``.

    Examples
    --------
    >>> double = lambda x: 2 * x; double.ndim = 2
    >>> r = predict_blockwise(np.ones((2, 8, 8), np.float32), double, np.zeros((1, 2, 8, 8), np.float32),
    ...                       block_shape=(1, 8, 8), workers=1)
    >>> float(r.out[0, 1, 3, 3])
    2.0
    """
    from ..config import ExecutionConfig, resolve
    from .config import PredictConfig

    config, execution = resolve(options, (PredictConfig, config), (ExecutionConfig, execution))
    return _predict(raw, model, out, config, execution)


def _predict(raw, model, out, c, e):
    block_shape, halo, tile_shape, overlap, tta = c.block_shape, c.halo, c.tile_shape, c.overlap, c.tta
    tta_reduce, ensemble_reduce, dtype, device, normalization = (c.tta_reduce, c.ensemble_reduce, c.dtype, c.device,
                                                                 c.normalization)
    batch_size, roi, mask, runtime = c.batch_size, c.roi, c.mask, c.runtime
    scheduler, resume, overwrite = e.scheduler, e.resume, e.overwrite
    import threading

    from ..io import open_volume
    from ..io.output import Output
    from ..io.paths import split_key

    t0 = time.perf_counter()
    models = model if isinstance(model, (list, tuple)) else [model]
    predictors = [as_predictor(m, device=device, runtime=runtime) for m in models]
    raw_path = raw if isinstance(raw, (str, os.PathLike)) else None
    raw_vol = open_volume(raw_path) if raw_path is not None else raw
    shape = tuple(int(s) for s in raw_vol.shape)
    p = predictors[0]
    multi_slice = p.ndim == 2 and len(shape) == 3 and p.in_channels % 2 == 1
    if p.in_channels != 1 and not multi_slice:
        raise ValueError(f"the model takes {p.in_channels} input channels but {raw_path or 'raw'} is a "
                         f"single-channel {len(shape)}D volume of shape {shape}")
    from ..probabilities import check_raw_source

    check_raw_source(raw_vol, str(raw_path or "raw"))
    out_path = out if isinstance(out, (str, os.PathLike)) else None
    if out_path is not None:
        from ..io.output import check_not_input

        check_not_input(out_path, raw_path, *[m for m in models if isinstance(m, (str, os.PathLike))])
    out_chunks = None if out_path is not None else tuple(getattr(out, "chunks", None) or ())[1:] or None
    grid = _grid(shape, predictors, block_shape, halo, out_chunks)
    block_shape, halo = grid.block_shape, grid.halo
    divisor = tuple(int(np.lcm.reduce([q.divisor[a] for q in predictors])) for a in range(p.ndim))
    if tile_shape is not None:
        from .tiling import check_tile_shape

        tile_shape = check_tile_shape(tile_shape, len(shape), p.ndim, divisor, halo[-p.ndim:], overlap)
    vs = getattr(raw_vol, "voxel_size", None) or p.voxel_size
    spec = {"raw": str(raw_path) if raw_path else None, "out": None,
            "models": [resolve_model(m)[0] if isinstance(m, str) else os.fspath(m) if hasattr(m, "__fspath__") else None
                       for m in models],  # a shipped model's name travels as its checkpoint's path
            "device": device, "runtime": runtime, "shape": shape, "block_shape": block_shape, "halo": halo,
            "divisor": divisor,
            "tile_shape": tile_shape, "overlap": overlap, "tta": tta, "tta_reduce": tta_reduce,
            "ensemble_reduce": ensemble_reduce, "batch_size": batch_size,
            "voxel_size": tuple(vs[-p.ndim:]) if vs else None,
            "normalization": normalization.as_dict() if hasattr(normalization, "as_dict") else normalization,
            "ndim": p.ndim, "context": (p.in_channels - 1) // 2}
    if normalization == "data":  # fitted to this volume's sampled 1st-99th percentiles
        from ..probabilities import sample_percentiles

        low, high = sample_percentiles(raw_vol)
        spec["normalization"] = {"mode": "percentile", "low": low, "high": high}
    elif spec["normalization"] is None and p.normalization is not None:
        spec["normalization"] = p.normalization.as_dict()
        from ..probabilities import check_intensity_range

        check_intensity_range(raw_vol, spec["normalization"], str(raw_path or "raw"),
                              f"model {models[0] if isinstance(models[0], str) else 'the model'}")
    memory = prediction_block_bytes(predictors, shape, grid, c, np.dtype(raw_vol.dtype).itemsize)
    check_jobs(e, memory)  # batch jobs too small for a block: refused before anything is written
    if scheduler is not None and (spec["raw"] is None or out_path is None or None in spec["models"]):
        raise ValueError("Dask execution needs raw, out and the model(s) as paths: workers open them themselves")
    if scheduler not in (None, "local"):
        from ..blockwise.execute import probe_scheduler

        probe_scheduler(scheduler)  # before anything is created
    blocks = plan_blocks(shape, block_shape, halo)
    todo = [i for i, (w, _) in enumerate(blocks) if _wanted(w, shape, roi, mask)]
    stop = threading.Event()
    compute = partial(_compute, predictors=predictors, should_stop=stop.is_set)
    if out_path is None:  # an array the caller owns: written in place, no record
        out_vol = out
        if tuple(out_vol.shape) != (p.out_channels,) + shape:
            raise ValueError(f"out has shape {tuple(out_vol.shape)}; expected {(p.out_channels,) + shape} "
                             "(channels first)")
        sizes = {i: _size(blocks[i][0]) for i in todo}
        run_blocks(_run_block, spec, todo,
                   stages=(partial(_read, raw=raw_vol), compute, partial(_write, out=out_vol)), execution=e,
                   job=BlockJob("predict", sizes), stop=stop)
        seconds = time.perf_counter() - t0
        return PredictResult(out_vol, len(blocks), len(todo), len(blocks) - len(todo), seconds,
                             sum(sizes.values()) / max(seconds, 1e-9))
    signature = _signature(spec, raw_path, raw_vol, models, predictors, dtype, roi, mask)
    from ..config import ExecutionConfig
    from ..io.meta import VolumeMeta

    with Output(out_path, signature=signature, execution=ExecutionConfig(overwrite=overwrite or not resume)) as o:
        if o.complete:  # this very run finished before
            return PredictResult(open_volume(out_path), len(blocks), 0, len(blocks) - len(todo),
                                 time.perf_counter() - t0, 0.0, complete_before=True)
        out_vol = o.create((p.out_channels,) + shape, dtype, chunks=(p.out_channels,) + block_shape,
                           meta=VolumeMeta("c" + "zyx"[-len(shape):], tuple(vs) if vs else None))
        spec["out"] = o.tmp_path + (f":{o.tmp_key}" if o.tmp_key else "")
        pending = [i for i in todo if i not in o.done]
        sizes = {i: _size(blocks[i][0]) for i in pending}
        try:
            run_blocks(_run_block, spec, pending,
                       stages=(partial(_read, raw=raw_vol), compute, partial(_write, out=out_vol)), execution=e,
                       job=BlockJob("predict", sizes, o.record, o.tmp_path, memory), stop=stop)
        finally:
            out_vol.close()
        missing = [i for i in todo if i not in o.done]
        if missing:
            raise RuntimeError(f"{out_path}: {len(missing)} blocks are not recorded as written (e.g. block "
                               f"{missing[0]}); not committing an incomplete output: run the same command again")
        if raw_path is not None:
            raw_vol.close()  # the input may live in the same HDF5 file, which the commit opens for writing
        from ..io.pyramid import pyramid_for_output

        pyramid_for_output(o, "mean", e)
        o.commit({"kind": "prediction", "channels": p.out_channels, "dtype": dtype})
    seconds = time.perf_counter() - t0
    voxels = sum(sizes.values())
    return PredictResult(open_volume(split_key(str(out_path))[0], split_key(str(out_path))[1]), len(blocks),
                         len(pending), len(blocks) - len(todo), seconds, voxels / max(seconds, 1e-9))


def _size(roi):
    return int(np.prod([s.stop - s.start for s in roi]))


def _signature(spec, raw_path, raw_vol, models, predictors, dtype, roi, mask):
    from ..runs import content_fingerprint, input_identity, model_identity, run_signature
    from ..runtime import torch_device

    raw_id = input_identity(raw_path, raw_vol) if raw_path else {"array": content_fingerprint(raw_vol)}
    options = {k: spec[k] for k in ("shape", "block_shape", "halo", "divisor", "tile_shape", "overlap", "tta",
                                    "tta_reduce", "ensemble_reduce", "batch_size", "voxel_size", "normalization",
                                    "ndim", "context")}
    onnx = any(q.weights and runs_on_onnx(q.weights, spec["runtime"]) for q in predictors)
    options.update(dtype=dtype, device="cpu" if onnx else str(torch_device(spec["device"]).type),
                   roi=[[s.start, s.stop] for s in roi] if roi is not None else None,
                   mask=content_fingerprint(mask) if mask is not None else None)
    if spec["runtime"] != "torch":  # runs of before the option keep their signature
        options["runtime"] = spec["runtime"]
    identities = [model_identity(m, q.weights) for m, q in zip(models, predictors)]
    return run_signature("predict", {"raw": raw_id}, identities, options)


def _wanted(write, shape, roi, mask):
    if roi is not None and any(w.stop <= r.start or w.start >= r.stop for w, r in zip(write, roi)):
        return False
    if mask is not None:
        scale = [m / n for m, n in zip(mask.shape, shape)]
        low = tuple(slice(int(w.start * s), max(int(w.start * s) + 1, int(np.ceil(w.stop * s))))
                    for w, s in zip(write, scale))
        return bool(np.asarray(mask[low]).any())
    return True
