"""Instances over volumes of any size: segment overlapping blocks, stitch their ids, relabel.

Three passes, each resumable, each block read and written by whoever runs it (threads or Dask)::

    1. segment   block i (write region + halo) -> local ids + i*cap  -> scratch/fragments (write region)
                 + the ids' voxel counts + the labels in a slab of 2*halo around each face -> scratch/blocks/i.npz
    2. stitch    (driver) per face: match ids -> one graph over all ids -> components -> final ids 1..n
                 (objects under min_size -> 0) -> scratch/table.npz
    3. relabel   block i: scratch ids -> final ids -> out

Matching at a face between blocks A and B:

* ``cc`` (halo 0) is exact: two ids are joined when a voxel of one and a voxel of the other are
  neighbours across the face under the connectivity (diagonal blocks included), as in dask-image's
  ``ndmeasure.label``; the result equals connected components of the whole volume up to a
  permutation of ids.
* the watershed methods: A segmented the slab ``halo`` voxels either side of the face (its own side
  and, with its halo, B's), and so did B. Ids ``a`` and ``b`` are joined when on both sides of the
  face one of them lies mostly (``stitch_overlap``) inside the other: a block that split an object
  for lack of context is corrected by its neighbour, and one block's merge in its halo, not
  confirmed on its own side, is not propagated.

Memory: a few blocks of voxels per worker; what grows with the volume is only the table of ids.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from ..blockwise.geometry import block_at, block_slices, grow_roi
from ..blockwise.execute import BlockRecord, open_cached, run_blocks
from ..probabilities import as_probabilities
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
    return _segment(pred, out, method, {**config.params, **(params or {})}, config, execution, pred_identity)


def _segment(pred, out, method, params, c, e, pred_identity):
    offsets, block_shape, halo, z_filter = c.offsets, c.block_shape, c.halo, c.z_filter or 0
    min_size, stitch_overlap, scratch, keep_scratch = c.min_size or 0, c.stitch_overlap, c.scratch, c.keep_scratch
    workers, scheduler, resume, overwrite, progress = e.workers, e.scheduler, e.resume, e.overwrite, e.progress
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
    offsets = [[int(v) for v in o] for o in offsets] if offsets else None
    if offsets and any(len(o) != nd for o in offsets):
        raise ValueError(f"offsets must have {nd} entries each for a {nd}D prediction; got {offsets}")
    if int(workers or 1) < 1:
        raise ValueError(f"workers must be at least 1; got {workers}")
    if int(min_size) < 0:
        raise ValueError(f"min_size must be 0 or more voxels; got {min_size}")
    if not 0 < float(stitch_overlap) <= 1:
        raise ValueError(f"stitch_overlap must lie in (0, 1]; got {stitch_overlap}")
    block_shape, halo = _geometry(shape, method, block_shape, halo, offsets)
    zf = int(z_filter or 0) // 2 if nd == 3 else 0
    if z_filter and (int(z_filter) < 1 or int(z_filter) % 2 == 0):
        raise ValueError(f"z_filter must be an odd number of sections (3, 5, ...); got {z_filter}")

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
    blocks = block_slices(shape, block_shape)
    if out_path is None:
        if tuple(out.shape) != shape:
            raise ValueError(f"out has shape {tuple(out.shape)}; expected the spatial shape {shape}")
        scratch = scratch or tempfile.mkdtemp(prefix="emseg-segment-")
        n_objects = _passes(spec, signature, blocks, pred_vol, scratch, resume, overwrite, workers, scheduler,
                            progress, None)
        n_objects = _relabel(spec, blocks, out, None, workers, scheduler, progress, n_objects)
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
            return SegmentResult(open_volume(out_path), n, len(blocks), time.perf_counter() - t0, 0.0,
                                 complete_before=True)
        own_scratch = scratch is None
        scratch = scratch or sibling(o.path, o.key if o.keyed else None, ".emseg-scratch-", ".d")
        if (overwrite or not resume) and os.path.exists(scratch):
            remove_ours(scratch) if own_scratch else shutil.rmtree(scratch)
        n_objects = _passes(spec, signature, blocks, pred_vol, scratch, resume and not overwrite, overwrite, workers,
                            scheduler, progress, o.tmp_path)
        vs = getattr(pred_vol, "voxel_size", None)
        out_vol = o.create(shape, smallest_uint(n_objects), chunks=block_shape,
                           meta=VolumeMeta("zyx"[-len(shape):], tuple(vs)[-len(shape):] if vs else None))
        spec["out"] = o.tmp_path + (f":{o.tmp_key}" if o.tmp_key else "")
        try:
            _relabel(spec, blocks, out_vol, o.record, workers, scheduler, progress, n_objects, where=o.tmp_path)
        finally:
            out_vol.close()
        missing = [i for i in range(len(blocks)) if i not in o.done]
        if missing:
            raise RuntimeError(f"{out_path}: {len(missing)} blocks are not recorded as written (e.g. block "
                               f"{missing[0]}); not committing an incomplete output: run the same command again")
        if pred_path is not None:
            pred_vol.close()  # the input may live in the same HDF5 file, which the commit opens for writing
        o.commit({"kind": "labels", "method": method, "n_objects": n_objects})
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


def _passes(spec, signature, blocks, pred_vol, scratch, resume, overwrite, workers, scheduler, progress, where):
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
        run_blocks(_segment_block, _public(spec), pending, local=dict(pred=pred_vol, frag=frag), workers=workers,
                   scheduler=scheduler, record=frag_record, progress=progress, sizes=sizes,
                   desc=f"segment ({spec['method']})", stop=threading.Event(),
                   where=f"{scratch} (pass 1 of 3: segmenting blocks)")
    finally:
        frag_record.close()
    return _stitch(_public(spec), blocks)


def _public(spec):
    return {k: v for k, v in spec.items() if not k.startswith("_")}


def _relabel(spec, blocks, out_vol, record, workers, scheduler, progress, n_objects, where=None):
    """Pass 3: scratch ids -> final ids -> out (the blocks ``record`` does not list yet)."""
    sizes = {i: int(np.prod([s.stop - s.start for s in b])) for i, b in enumerate(blocks)}
    pending = [i for i in range(len(blocks)) if record is None or i not in record.done]
    run_blocks(_relabel_block, _public(spec), pending, local=dict(frag=spec["_frag"], out=out_vol), workers=workers,
               scheduler=scheduler, record=record, progress=progress, sizes=sizes, desc="relabel", where=where)
    return n_objects


def _geometry(shape, method, block_shape, halo, offsets):
    nd = len(shape)
    if halo == "auto" or halo is None:
        halo = METHODS[method]["halo"][-nd:]
        if offsets:
            halo = tuple(max(h, max(abs(o[a]) for o in offsets)) for a, h in enumerate(halo))
    halo = tuple(int(h) for h in (halo if np.ndim(halo) else (halo,) * nd))
    if len(halo) != nd or min(halo) < 0:
        raise ValueError(f"halo must be {nd} non-negative ints (one per axis of {shape}); got {halo}")
    if block_shape is None:
        block_shape = (64, 256, 256)[-nd:] if nd == 3 else (2048, 2048)
        block_shape = tuple(min(max(b, 2 * h), n) for b, h, n in zip(block_shape, halo, shape))
    block_shape = tuple(int(b) for b in block_shape)
    if len(block_shape) != nd or min(block_shape) < 1:
        raise ValueError(f"block_shape must be {nd} positive ints for a volume of shape {shape}; got {block_shape}")
    small = [a for a in range(nd) if block_shape[a] < halo[a] and block_shape[a] < shape[a]]
    if small:
        raise ValueError(f"block_shape {block_shape} is smaller than the halo {halo} along axis {small[0]}; "
                         f"use blocks of at least the halo, e.g. {tuple(max(b, h) for b, h in zip(block_shape, halo))}")
    return block_shape, halo


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
    write = block_at(shape, spec["block_shape"], index)
    ext = grow_roi(write, halo, shape)
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
    arrays = {"ids": ids[keep].astype(np.uint64), "counts": counts[keep].astype(np.int64)}
    for a, h in enumerate(halo):
        if not h:  # exact face matching (cc): the block's first and last planes
            if write[a].start > 0:
                arrays[f"lo{a}"] = np.take(inner, 0, axis=a)
            if write[a].stop < shape[a]:
                arrays[f"hi{a}"] = np.take(inner, -1, axis=a)
            continue
        for side, face in (("lo", write[a].start), ("hi", write[a].stop)):
            if face in (0, shape[a]):
                continue
            sl = [slice(w.start - e.start, w.stop - e.start) for w, e in zip(write, ext)]
            sl[a] = slice(face - h - ext[a].start, face + h - ext[a].start)
            arrays[f"{side}{a}"] = glob[tuple(sl)]
    _save_npz(os.path.join(spec["scratch"], "blocks", f"{index}.npz"), arrays)
    return index


def _save_npz(path, arrays):
    tmp = f"{path}.partial-{os.getpid()}.npz"
    np.savez_compressed(tmp, **arrays)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _stitch(spec, blocks):
    """Pass 2: join ids across faces, drop small objects, write the table global id -> final id."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    signature = hashlib.sha256(json.dumps({k: v for k, v in spec.items() if k not in ("out",)}, sort_keys=True,
                                          default=str).encode()).hexdigest()
    if os.path.exists(spec["table"]):
        with np.load(spec["table"]) as t:
            if str(t["signature"]) == signature:
                return int(t["n_objects"])
    ids, counts, pairs = [], [], []
    grid = tuple(len(range(0, n, b)) for n, b in zip(spec["shape"], spec["block_shape"]))
    planes = _FirstPlanes(spec["scratch"])
    for index, write in enumerate(blocks):
        with np.load(_block_file(spec["scratch"], index)) as z:
            ids.append(z["ids"])
            counts.append(z["counts"])
            pos = np.unravel_index(index, grid)
            for a in range(len(write)):
                if write[a].stop >= spec["shape"][a]:
                    continue
                if spec["method"] == "cc":
                    upper = _upper_plane(planes, blocks, grid, pos, a, spec["shape"])
                    pairs.append(_face_pairs_cc(z[f"hi{a}"], upper, write, a, spec["shape"],
                                                spec["params"]["connectivity"]))
                else:
                    nb = list(pos)
                    nb[a] += 1
                    with np.load(_block_file(spec["scratch"], int(np.ravel_multi_index(nb, grid)))) as zb:
                        pairs.append(_face_pairs_overlap(z[f"hi{a}"], zb[f"lo{a}"], a, spec["halo"][a],
                                                         spec["stitch_overlap"]))
        planes.release(index, grid)
    ids, counts = np.concatenate(ids), np.concatenate(counts)
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.uint64)
    nodes = np.unique(np.concatenate([ids, pairs.ravel()]))
    size = np.zeros(len(nodes), np.int64)
    size[np.searchsorted(nodes, ids)] = counts
    u, v = np.searchsorted(nodes, pairs[:, 0]), np.searchsorted(nodes, pairs[:, 1])
    graph = coo_matrix((np.ones(len(u), np.int8), (u, v)), shape=(len(nodes), len(nodes)))
    n_comp, comp = connected_components(graph, directed=False)
    comp_size = np.bincount(comp, weights=size, minlength=n_comp)
    keep = (comp_size >= max(1, spec["min_size"]))
    final = np.zeros(n_comp, np.uint64)
    final[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint64)
    n_objects = int(keep.sum())
    _save_npz(spec["table"], {"nodes": nodes, "final": final[comp], "n_objects": np.int64(n_objects),
                              "signature": np.array(signature)})
    return n_objects


def _block_file(scratch, index):
    return os.path.join(scratch, "blocks", f"{index}.npz")


class _FirstPlanes:
    """The blocks' first planes (``lo{axis}``, for exact face matching), loaded on demand and dropped once
    no later face can need them: memory stays at about one row-plane of block faces."""

    def __init__(self, scratch):
        self.scratch, self.data = scratch, {}

    def __getitem__(self, index):
        if index not in self.data:
            with np.load(_block_file(self.scratch, index)) as z:
                self.data[index] = {k: z[k] for k in z.files if k.startswith("lo")}
        return self.data[index]

    def release(self, index, grid):
        # blocks go in C order; faces of block j read blocks j + e_axis ± 1 laterally, never below this
        lowest = index - int(np.prod(grid[1:])) - grid[-1]
        for k in [k for k in self.data if k < lowest]:
            del self.data[k]


def _upper_plane(planes, blocks, grid, pos, axis, shape):
    """The first plane of the blocks after block ``pos`` along ``axis``, over its extent plus one voxel each side."""
    write = blocks[int(np.ravel_multi_index(pos, grid))]
    others = [a for a in range(len(grid)) if a != axis]
    region = [slice(max(0, write[a].start - 1), min(shape[a], write[a].stop + 1)) for a in others]
    plane = np.zeros([r.stop - r.start for r in region], np.uint64)
    for d in itertools.product((-1, 0, 1), repeat=len(others)):
        q = list(pos)
        q[axis] += 1
        for a, step in zip(others, d):
            q[a] += step
        if any(v < 0 or v >= g for v, g in zip(q, grid)):
            continue
        qw = blocks[int(np.ravel_multi_index(q, grid))]
        src = planes[int(np.ravel_multi_index(q, grid))][f"lo{axis}"]
        lo = [max(r.start, qw[a].start) for r, a in zip(region, others)]
        hi = [min(r.stop, qw[a].stop) for r, a in zip(region, others)]
        if any(h <= lo_ for lo_, h in zip(lo, hi)):
            continue
        dst = tuple(slice(l_ - r.start, h - r.start) for l_, h, r in zip(lo, hi, region))
        srcsl = tuple(slice(l_ - qw[a].start, h - qw[a].start) for l_, h, a in zip(lo, hi, others))
        plane[dst] = src[srcsl]
    return plane


def _neighbour_offsets(nd, connectivity, axis):
    """Offsets ``d`` with ``d[axis] == 1`` within the connectivity (L1 radius 1, 2 or 3)."""
    default = {2: 4, 3: 6}[nd]
    radius = {4: 1, 8: 2, 6: 1, 18: 2, 26: 3}[int(connectivity or default)]
    return [d for d in itertools.product((-1, 0, 1), repeat=nd) if d[axis] == 1 and sum(map(abs, d)) <= radius]


def _face_pairs_cc(lower, upper, write, axis, shape, connectivity):
    """Pairs of ids touching across the face after ``write`` along ``axis``: ``lower`` is the block's last
    plane, ``upper`` the next plane over the block's extent plus a one-voxel margin (diagonal blocks)."""
    others = [a for a in range(len(shape)) if a != axis]
    start = [write[a].start - max(0, write[a].start - 1) for a in others]  # lower's origin inside upper
    found = []
    for d in _neighbour_offsets(len(shape), connectivity, axis):
        rest = [d[a] for a in others]
        src, dst = [], []
        for n_low, n_up, s0, r in zip(lower.shape, upper.shape, start, rest):
            lo = max(0, -(s0 + r))  # keep s0 + r + i inside [0, n_up)
            hi = min(n_low, n_up - s0 - r)
            src.append(slice(lo, hi))
            dst.append(slice(lo + s0 + r, hi + s0 + r))
        a, b = lower[tuple(src)].ravel(), upper[tuple(dst)].ravel()
        m = (a != 0) & (b != 0) & (a != b)
        if m.any():
            found.append(np.unique(np.stack([a[m], b[m]], 1), axis=0))
    return np.concatenate(found) if found else np.zeros((0, 2), np.uint64)


def _contained_pairs(x, y, min_fraction):
    """Pairs ``(x_id, y_id)`` (both nonzero) whose overlap covers ``min_fraction`` of the smaller of the two there."""
    both = (x != 0) & (y != 0)
    if not both.any():
        return np.zeros((0, 2), np.uint64)
    pairs, n = np.unique(np.stack([x[both], y[both]], 1), axis=0, return_counts=True)
    ix, sx = np.unique(x[x != 0], return_counts=True)
    iy, sy = np.unique(y[y != 0], return_counts=True)
    smaller = np.minimum(sx[np.searchsorted(ix, pairs[:, 0])], sy[np.searchsorted(iy, pairs[:, 1])])
    return pairs[n >= min_fraction * smaller]


def _face_pairs_overlap(a_slab, b_slab, axis, halo, min_fraction):
    """Ids of A and B joined across a face: both sides of it must see them as (mostly) one object.

    ``a_slab``/``b_slab``: A's and B's labels of the slab ``halo`` voxels either side of the face.
    On each side, one block's labels are its own (with full context) and the other's are its halo.
    ``a`` and ``b`` are joined when, on A's side and on B's side, one of them lies mostly
    (``min_fraction``) inside the other. A block that lacked context and split an object is
    corrected by the other (several ids may join one); a block that merged two objects in its halo
    is not confirmed on its own side, so it cannot chain-merge them.
    """
    if a_slab.shape != b_slab.shape:
        raise RuntimeError(f"face slabs differ in shape: {a_slab.shape} vs {b_slab.shape}")
    a_side = (slice(None),) * axis + (slice(0, halo),)
    b_side = (slice(None),) * axis + (slice(halo, None),)
    on_a = _contained_pairs(a_slab[a_side].ravel(), b_slab[a_side].ravel(), min_fraction)
    on_b = _contained_pairs(a_slab[b_side].ravel(), b_slab[b_side].ravel(), min_fraction)
    if not len(on_a) or not len(on_b):
        return np.zeros((0, 2), np.uint64)
    rows, n = np.unique(np.concatenate([on_a, on_b]), axis=0, return_counts=True)
    return rows[n == 2]


_TABLES: dict = {}


def _table(path):
    key = (path, os.getpid(), os.stat(path).st_mtime_ns)
    if key not in _TABLES:
        with np.load(path) as t:
            _TABLES.clear()
            _TABLES[key] = (t["nodes"], t["final"])
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
