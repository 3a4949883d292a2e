"""Instances over volumes of any size: segment overlapping blocks, stitch their ids, relabel.

Three passes, each resumable, each block read and written by whoever runs it (threads or Dask)::

    1. segment   block i (write region + halo) -> local ids + i*cap  -> scratch/fragments (write region)
                 + the ids' voxel counts + the labels in a slab of 2*halo around each face -> scratch/blocks/i.npz
    2. stitch    (driver) per face: match ids -> one graph over all ids -> components -> final ids 1..n
                 (objects under min_size -> 0) -> scratch/table.npz
    3. relabel   block i: scratch ids -> final ids -> out

How ids are matched at a face (exactly for ``cc``, by mutual overlap for the watershed methods):
:mod:`emseg.instances.faces`. The blocks and their halo: :func:`emseg.blockwise.plan_grid`.

Memory: a few blocks of voxels per worker; what grows with the volume is only the table of ids.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..blockwise.cluster import check_jobs
from ..blockwise.execute import BlockJob, open_cached, run_blocks
from ..blockwise.geometry import BlockGrid, block_at, block_regions, block_slices, plan_grid
from ..blockwise.record import BlockRecord
from ..probabilities import as_probabilities
from .faces import block_file, face_slabs, save_npz, stitch_ids
from .memory import postprocess_block_bytes
from .methods import METHODS, method_params, segment_block
from .relabel import smallest_uint

__all__ = ["segment_blockwise", "SegmentResult"]


@dataclass(frozen=True)
class SegmentResult:
    out: object
    n_objects: int
    n_blocks: int
    seconds: float
    voxels_per_second: float
    complete_before: bool = False  # the output already held this very run's finished result


def segment_blockwise(pred, out, method=None, params=None, *, config=None, execution=None, pred_identity=None,
                      **options) -> SegmentResult:
    """Segment a channels-first prediction into instances with global ids, block by block.

    Parameters
    ----------
    pred : str or array-like
        ``(C, z, y, x)`` or ``(C, y, x)`` probabilities (float in [0, 1], or uint8 = round(255 p)); a
        2D/3D array without channels is taken as one channel for the single-channel methods.
    out : str or array-like
        A path (a chunked volume is created once the number of objects, hence the dtype, is known)
        or a writable array of the spatial shape.
    method : str, optional
        One of :data:`~emseg.instances.METHODS` ("cc", "watershed", "bc", "bcd", "agglomerate", "mws",
        "sdt"); overrides ``config.method``.
    params : dict, optional
        The method's parameters (see :data:`METHODS`); updates ``config.params``.
    config : PostprocessConfig, optional
        Offsets, size filter, z-filter, blocks, halo, stitching (see
        :class:`~emseg.instances.PostprocessConfig`).
    execution : emseg.config.ExecutionConfig, optional
        Workers, scheduler (paths needed for Dask), resume, overwrite, progress.
    pred_identity : dict, optional
        What identifies ``pred`` in the run's signature (default: its path, size, time and content
        fingerprint); :func:`emseg.workflows.segment_volume` passes the signature of the prediction it made.
    **options
        Any field of either config (``offsets=``, ``block_shape=``, ``workers=`` ...); ``connectivity``
        is a shortcut for the "cc" parameter.

    Returns
    -------
    SegmentResult
    """
    from ..config import ExecutionConfig, resolve
    from .config import PostprocessConfig

    if "connectivity" in options:
        params = {**(params or {}), "connectivity": options.pop("connectivity")}
    config, execution = resolve(options, (PostprocessConfig, config), (ExecutionConfig, execution))
    method = method or config.method
    if method is None:
        raise ValueError(f"segment_blockwise needs a method; choose one of {', '.join(METHODS)}")
    params = {**config.params, **(params or {})}
    if config.objects is not None:  # that kind's size filter and settings, where not given
        from ..tasks import OBJECTS

        preset = OBJECTS[config.objects]
        params = {**{k: v for k, v in preset.get("params", {}).items() if k in METHODS[method]["params"]}, **params}
        if config.min_size is None:
            config = dataclasses.replace(config, min_size=int(preset.get("min_size", 0)))
    return _segment(pred, out, method, params, config, execution, pred_identity)


def _segment(pred, out, method, params, c, e, pred_identity):
    offsets, block_shape, halo, z_filter = c.offsets, c.block_shape, c.halo, c.z_filter or 0
    min_size, stitch_overlap, scratch, keep_scratch = c.min_size or 0, c.stitch_overlap, c.scratch, c.keep_scratch
    scheduler, resume, overwrite = e.scheduler, e.resume, e.overwrite
    from ..io import open_volume

    t0 = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    params = method_params(method, params, offsets)
    pred_path = pred if isinstance(pred, (str, os.PathLike)) else None
    pred_vol = open_volume(pred_path) if pred_path is not None else pred
    from ..probabilities import check_probability_source

    check_probability_source(pred_vol, pred_path or "pred", trusted=True)  # a uint8 0/1 mask is ambiguous
    channels_first = not (METHODS[method]["channels"] == 1 and len(pred_vol.shape) in (2, 3))
    shape = tuple(int(s) for s in (pred_vol.shape[1:] if channels_first else pred_vol.shape))
    if channels_first:
        need = METHODS[method]["channels"] or len(offsets)
        exact = METHODS[method]["channels"] not in (None, 1)  # bc/bcd: exactly their channels
        if len(shape) not in (2, 3) or pred_vol.shape[0] < need or (exact and pred_vol.shape[0] != need):
            raise ValueError(f"{pred_path or 'pred'}: method {method!r} needs a channels-first (C, [z,] y, x) "
                             f"prediction with {need} channel(s); got shape {tuple(pred_vol.shape)}")
        if METHODS[method]["channels"] is None and pred_vol.shape[0] != len(offsets):
            raise ValueError(f"{pred_path or 'pred'} has {pred_vol.shape[0]} affinity channels but {len(offsets)} "
                             "offsets were given; pass one offset per channel")
    nd = len(shape)
    from .methods import section_offsets

    offsets = section_offsets([[int(v) for v in o] for o in offsets], nd) if offsets else None
    if offsets and any(len(o) != nd for o in offsets):
        raise ValueError(f"offsets must have {nd} entries each for a {nd}D prediction; got {offsets}")
    grid = _grid(shape, method, block_shape, halo, offsets)
    block_shape, halo = grid.block_shape, grid.halo
    zf = int(z_filter or 0) // 2 if nd == 3 else 0  # z_filter, min_size, stitch_overlap: checked by the config

    out_path = out if isinstance(out, (str, os.PathLike)) else None
    if out_path is not None:
        from ..io.output import check_not_input

        check_not_input(out_path, pred_path)
    spec = {"pred": str(pred_path) if pred_path else None, "channels_first": channels_first, "method": method,
            "params": params, "offsets": offsets, "shape": shape, "block_shape": block_shape, "halo": halo,
            "z_filter": int(z_filter or 0), "zf": zf, "min_size": int(min_size), "stitch_overlap": stitch_overlap}
    if scheduler is not None and (pred_path is None or out_path is None):
        raise ValueError("Dask execution needs pred and out as paths: workers open them themselves")
    if scheduler not in (None, "local"):
        from ..blockwise.execute import probe_scheduler

        probe_scheduler(scheduler)  # before anything is created
    signature = _signature(spec, pred_path, pred_vol, pred_identity)
    from ..runs import signature_hash

    spec["run"] = signature_hash(signature)  # the stitch table of another prediction is never reused
    channels = pred_vol.shape[0] if channels_first else 1
    spec["_memory"] = postprocess_block_bytes(spec, np.dtype(pred_vol.dtype).itemsize, channels)
    check_jobs(e, spec["_memory"])  # batch jobs too small for a block: refused before anything is written
    blocks = block_slices(shape, block_shape)
    if out_path is None:
        if tuple(out.shape) != shape:
            raise ValueError(f"out has shape {tuple(out.shape)}; expected the spatial shape {shape}")
        scratch = scratch or tempfile.mkdtemp(prefix="emseg-segment-")
        n_objects = _passes(spec, signature, blocks, pred_vol, scratch, resume, e)
        _relabel(spec, blocks, out, e, BlockJob("relabel"))
        if not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        seconds = time.perf_counter() - t0
        return SegmentResult(out, n_objects, len(blocks), seconds, float(np.prod(shape)) / max(seconds, 1e-9))

    from ..io.output import Output, remove_ours, sibling
    from ..io.paths import split_key

    from ..io.meta import VolumeMeta

    with Output(out_path, signature=signature, execution=e) as o:
        if o.complete:  # this very run finished before: nothing to do
            from ..io.output import read_run_attrs

            n = int((read_run_attrs(o.path, o.key, o.fmt) or {}).get("n_objects", 0))
            stale = sibling(o.path, o.key if o.keyed else None, ".emseg-scratch-", ".d")
            if scratch is None and os.path.exists(stale):  # left by a run killed after its commit
                remove_ours(stale)
            from ..io.ome_labels import register_label_image

            register_label_image(out_path)  # a run killed after its commit listed nothing yet
            return SegmentResult(open_volume(out_path), n, len(blocks), time.perf_counter() - t0, 0.0,
                                 complete_before=True)
        own_scratch = scratch is None
        scratch = scratch or sibling(o.path, o.key if o.keyed else None, ".emseg-scratch-", ".d")
        if (overwrite or not resume) and os.path.exists(scratch):
            remove_ours(scratch) if own_scratch else shutil.rmtree(scratch)
        n_objects = _passes(spec, signature, blocks, pred_vol, scratch, resume and not overwrite, e)
        vs = getattr(pred_vol, "voxel_size", None)
        out_vol = o.create(shape, smallest_uint(n_objects), chunks=block_shape,
                           meta=VolumeMeta("zyx"[-len(shape):], tuple(vs)[-len(shape):] if vs else None))
        spec["out"] = o.tmp_path + (f":{o.tmp_key}" if o.tmp_key else "")
        try:
            _relabel(spec, blocks, out_vol, e, BlockJob("relabel", record=o.record, where=o.tmp_path))
        finally:
            out_vol.close()
        missing = [i for i in range(len(blocks)) if i not in o.done]
        if missing:
            raise RuntimeError(f"{out_path}: {len(missing)} blocks are not recorded as written (e.g. block "
                               f"{missing[0]}); not committing an incomplete output: run the same command again")
        if pred_path is not None:
            pred_vol.close()  # the input may live in the same HDF5 file, which the commit opens for writing
        from ..io.pyramid import pyramid_for_output

        pyramid_for_output(o, "mode", e)
        o.commit({"kind": "labels", "method": method, "n_objects": n_objects})
        from ..io.ome_labels import register_label_image

        register_label_image(out_path)  # IMAGE.zarr:labels/NAME: a label layer of the raw image
    if not keep_scratch:
        remove_ours(scratch) if own_scratch else shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - t0
    path, key = split_key(str(out_path))
    return SegmentResult(open_volume(path, key), n_objects, len(blocks), seconds,
                         float(np.prod(shape)) / max(seconds, 1e-9))


def _signature(spec, pred_path, pred_vol, ident=None):
    from ..runs import content_fingerprint, input_identity, run_signature

    if ident is None:
        ident = input_identity(pred_path, pred_vol) if pred_path else {"array": content_fingerprint(pred_vol)}
    return run_signature("segment", {"pred": ident}, options={k: v for k, v in spec.items() if k != "pred"})


def _passes(spec, signature, blocks, pred_vol, scratch, resume, execution):
    """Pass 1 (segment each block into the scratch) and pass 2 (stitch); returns the number of objects."""
    import threading

    from ..io import create_volume, open_volume

    shape, block_shape, halo = spec["shape"], spec["block_shape"], spec["halo"]
    os.makedirs(os.path.join(str(scratch), "blocks"), exist_ok=True)
    spec.update(scratch=str(scratch), fragments=os.path.join(str(scratch), "fragments.zarr"),
                table=os.path.join(str(scratch), "table.npz"))
    cap = int(np.prod([min(b + 2 * h, n) for b, h, n in zip(block_shape, halo, shape)])) + 1
    spec["cap"] = cap
    if len(blocks) * cap >= 2**63:
        raise ValueError("too many blocks for 64-bit ids; use larger blocks")
    frag_record = BlockRecord(os.path.join(str(scratch), "segment.jsonl"), signature, resume,
                              what=f"the intermediate state {scratch}")
    if frag_record.done and os.path.exists(spec["fragments"]):
        frag = open_volume(spec["fragments"], mode="r+")
    else:
        from ..io.storage import StorageConfig

        frag = create_volume(spec["fragments"], shape, "uint32" if len(blocks) * cap < 2**32 else "uint64",
                             chunks=block_shape, storage=StorageConfig(compression="lz4"),
                             overwrite=True)  # scratch: fast codec
    sizes = {i: int(np.prod([s.stop - s.start for s in b])) for i, b in enumerate(blocks)}
    spec["_frag"] = frag
    try:
        pending = [i for i in range(len(blocks)) if i not in frag_record.done]
        job = BlockJob(f"segment ({spec['method']})", sizes, frag_record, f"{scratch} (pass 1 of 3: segmenting blocks)",
                       spec.get("_memory"))
        run_blocks(_segment_block, _public(spec), pending, local=dict(pred=pred_vol, frag=frag), execution=execution,
                   job=job, stop=threading.Event())
    finally:
        frag_record.close()
    return stitch_ids(_public(spec), blocks)


def _public(spec):
    return {k: v for k, v in spec.items() if not k.startswith("_")}


def _relabel(spec, blocks, out_vol, execution, job):
    """Pass 3: scratch ids -> final ids -> out (the blocks ``job.record`` does not list yet)."""
    sizes = {i: int(np.prod([s.stop - s.start for s in b])) for i, b in enumerate(blocks)}
    pending = [i for i in range(len(blocks)) if job.record is None or i not in job.record.done]
    if execution.scheduler is not None:  # each worker also holds the table of ids
        with np.load(spec["table"]) as t:
            job = job._replace(memory=spec.get("_memory", 0) + 2 * t["nodes"].nbytes)
    run_blocks(_relabel_block, _public(spec), pending, local=dict(frag=spec["_frag"], out=out_vol),
               execution=execution, job=job._replace(sizes=sizes))


def _grid(shape, method, block_shape, halo, offsets) -> BlockGrid:
    """The blocks of a segmentation: the method's halo ("auto"; at least the offsets' reach), then :func:`plan_grid`."""
    nd = len(shape)
    if halo == "auto" or halo is None:
        halo = METHODS[method]["halo"][-nd:]
        if offsets:
            halo = tuple(max(h, max(abs(o[a]) for o in offsets)) for a, h in enumerate(halo))
    return plan_grid(shape, block_shape, halo, halo_factor=2)


def _read_block(spec, pred, read):
    ch = (slice(None),) if spec["channels_first"] else ()
    data = np.asarray(pred[ch + read])
    data = as_probabilities(data if spec["channels_first"] else data[None], f"{spec['pred'] or 'pred'} block {read}")
    return data


def _segment_block(spec, index, pred=None, frag=None):
    """Pass 1 for block ``index``: segment write region + halo, keep ids, counts and face slabs."""
    import fastremap

    pred = pred if pred is not None else open_cached(spec["pred"])
    frag = frag if frag is not None else open_cached(spec["fragments"], "r+")
    shape, halo, zf = spec["shape"], spec["halo"], spec["zf"]
    regions = block_regions(BlockGrid(shape, spec["block_shape"], halo), index)
    write, ext = regions
    read = list(ext)
    if zf:
        read[0] = slice(max(0, ext[0].start - zf), min(shape[0], ext[0].stop + zf))
    data = _read_block(spec, pred, tuple(read))
    if zf:
        from .zfilter import z_filter

        data = z_filter(data, spec["z_filter"])[:, ext[0].start - read[0].start:ext[0].stop - read[0].start]
    labels = segment_block(data, spec["method"], spec["params"], spec["offsets"]).astype(np.uint64)
    glob = np.where(labels > 0, labels + np.uint64(index * spec["cap"]), np.uint64(0))
    inner = glob[tuple(slice(w.start - e.start, w.stop - e.start) for w, e in zip(write, ext))]
    frag[write] = inner
    ids, counts = fastremap.unique(inner, return_counts=True)
    keep = ids != 0
    arrays = {"ids": ids[keep].astype(np.uint64), "counts": counts[keep].astype(np.int64),
              **face_slabs(glob, regions, halo, shape)}
    save_npz(block_file(spec["scratch"], index), arrays)
    return index


_TABLES: dict = {}
_TABLES_LOCK = threading.Lock()


def _table(path):
    """The id table of pass 2, loaded once per process and shared by the relabelling threads. Under a
    lock: two threads loading it at once used to clear each other's entry (a KeyError naming the table,
    seen on the CDeep3M volume of benchmarks/accuracy.py)."""
    key = (path, os.getpid(), os.stat(path).st_mtime_ns)
    with _TABLES_LOCK:
        if key not in _TABLES:
            with np.load(path) as t:
                table = (t["nodes"], t["final"])
            _TABLES.clear()
            _TABLES[key] = table
        return _TABLES[key]


def _relabel_block(spec, index, frag=None, out=None):
    """Pass 3 for block ``index``: scratch ids -> final ids -> out."""
    frag = frag if frag is not None else open_cached(spec["fragments"])
    out = out if out is not None else open_cached(spec["out"], "r+")
    nodes, final = _table(spec["table"])
    write = block_at(spec["shape"], spec["block_shape"], index)
    ids = np.asarray(frag[write]).astype(np.uint64, copy=False)
    res = np.zeros(ids.shape, np.uint64)
    m = ids != 0
    res[m] = final[np.searchsorted(nodes, ids[m])]
    out[write] = res.astype(out.dtype, copy=False)
    if hasattr(out, "flush"):
        out.flush()  # on disk before the block is recorded as done
    return index
