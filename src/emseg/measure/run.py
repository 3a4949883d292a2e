"""``emseg measure``: the region table of a label volume on disk, blockwise, on threads or Dask, resumable.

Each block's partial table (:mod:`emseg.measure.partial`) is written to a scratch folder beside the
output and recorded; a run killed part-way keeps them, and the same command again measures only the
blocks not recorded (another run's scratch is refused, naming what differs). Once every block is
done, the partial tables are merged, the table is written under a hidden name and renamed into
place, and the scratch removed: the table at ``OUT`` is complete or absent::

    dir/.emseg-lock-OUT.csv           the writer's lock
    dir/.emseg-scratch-OUT.csv.d/     the run record (measure.jsonl) and one blocks/I.npz per finished block
    dir/OUT.csv                       appears only when complete
"""

from __future__ import annotations

import os
import threading
import time
from typing import NamedTuple

import numpy as np

from ..blockwise.geometry import aligned_block_shape, block_slices
from .partial import FIELDS, merge_partials
from .table import _Section, _geometry, block_task, check_labels_volume, columns_of
from .write import table_format, write_table

__all__ = ["MeasureResult", "measure_volume", "measure_memory"]


class MeasureResult(NamedTuple):
    """What :func:`measure_volume` did: the table's columns, its path, the blocks, and the time it took."""

    columns: dict
    path: str
    n_blocks: int
    seconds: float
    voxel_size: tuple
    voxel_size_known: bool


def measure_volume(labels, out, raw=None, *, voxel_size=None, block_shape=None, execution=None) -> MeasureResult:
    """Measure every object of the label volume at ``labels`` into the table ``out`` (.csv or .parquet).

    Parameters
    ----------
    labels, raw : str
        Paths of volumes emseg reads (``file.h5:key`` allowed); ``raw`` adds the intensity columns.
    out : str
        The table to write; refused if it exists, unless ``execution.overwrite``.
    voxel_size : tuple of float, optional
        nm per voxel (zyx); default the labels' own, else 1 (``voxel_size_known`` is then False).
    block_shape : tuple of int, optional
        Default: about 8 million voxels a block, aligned to the labels' chunks.
    execution : emseg.config.ExecutionConfig, optional
        Threads or Dask (``workers``, ``scheduler``), ``overwrite``, ``resume``, ``progress``.

    Returns
    -------
    MeasureResult
    """
    from ..blockwise.cluster import check_jobs
    from ..blockwise.execute import BlockJob, run_blocks
    from ..blockwise.record import BlockRecord
    from ..config import ExecutionConfig
    from ..io import open_volume
    from ..io.lock import output_lock
    from ..io.siblings import remove_ours, sibling

    e = execution or ExecutionConfig()
    t0 = time.perf_counter()
    out = os.fspath(out)
    fmt = table_format(out)
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{out}: output folder {folder} does not exist")
    if os.path.isdir(out):
        raise ValueError(f"{out} is a folder; give a table file such as objects.csv")
    with open_volume(labels) as lab:
        raw_vol = open_volume(raw) if raw is not None else None
        try:
            shape = check_labels_volume(lab, labels, raw_vol)
            known = voxel_size is not None or lab.voxel_size is not None
            vs, off = _geometry(lab, voxel_size, None, len(shape))
            chunks = tuple(int(c) for c in (lab.chunks or (1,) * len(shape)))
        finally:
            if raw_vol is not None:
                raw_vol.close()
    shape3, block_shape = _blocks(shape, chunks, block_shape)
    if len(block_shape) != 3 or min(block_shape) < 1:
        raise ValueError(f"block_shape must be 3 positive integers (z, y, x); got {block_shape}")
    rois = block_slices(shape3, block_shape)
    spec = {"labels": os.fspath(labels), "raw": None if raw is None else os.fspath(raw), "shape": shape3,
            "flat": len(shape) == 2, "block_shape": block_shape, "voxel_size": vs}
    signature = _signature(spec, labels, raw)
    memory = _block_bytes(block_shape)
    check_jobs(e, memory)  # batch jobs too small for a block: refused before anything is written
    if e.scheduler not in (None, "local"):
        from ..blockwise.execute import probe_scheduler

        probe_scheduler(e.scheduler)
    with output_lock(out, what=out):
        if os.path.lexists(out) and not e.overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it, or write to another table")
        scratch = sibling(out, None, ".emseg-scratch-", ".d")
        if os.path.exists(scratch) and (e.overwrite or not e.resume):
            remove_ours(scratch, folder)
        os.makedirs(os.path.join(scratch, "blocks"), exist_ok=True)
        spec["blocks"] = os.path.join(scratch, "blocks")
        record = BlockRecord(os.path.join(scratch, "measure.jsonl"), signature, e.resume and not e.overwrite,
                             what=f"the measurement of {out} (its unfinished blocks in {scratch})")
        try:
            pending = [i for i in range(len(rois)) if i not in record.done]
            sizes = {i: int(np.prod([s.stop - s.start for s in r])) for i, r in enumerate(rois)}
            with open_volume(labels) as lab:  # on threads; Dask workers open their own
                raw_vol = open_volume(raw) if raw is not None else None
                try:
                    run_blocks(_measure_block, spec, pending, local=dict(lab=lab, raw=raw_vol), execution=e,
                               stop=threading.Event(),
                               job=BlockJob("measure", sizes, record, f"{scratch} (the blocks measured so far)",
                                            memory))
                finally:
                    if raw_vol is not None:
                        raw_vol.close()
        finally:
            record.close()
        columns = columns_of(_merge_files(spec["blocks"], len(rois)), vs, off, shape3, raw is not None,
                             flat=len(shape) == 2)
        tmp = sibling(out, None, ".emseg-partial-")
        write_table(columns, tmp, fmt)
        os.replace(tmp, out)
        remove_ours(scratch, folder)
    return MeasureResult(columns, out, len(rois), time.perf_counter() - t0, vs[-len(shape):], known)


def _blocks(shape, chunks, block_shape):
    """The volume as 3D and its blocks: ``block_shape``, or about 8 million voxels of whole storage chunks."""
    shape3 = (1,) * (3 - len(shape)) + tuple(shape)
    if block_shape is None:
        block_shape = aligned_block_shape(shape3, (1,) * (3 - len(chunks)) + tuple(chunks), 1, 2**23)
    return shape3, tuple(int(b) for b in block_shape)


def _block_bytes(block_shape):
    """Peak bytes of a block (an estimate, for sizing Dask workers and batch jobs): the ids as read and
    compacted, the raw, the sums and the cells of the marching cubes, about 80 B a voxel (1.1 times the
    peak RSS of a 64 x 256² block of dense objects)."""
    return int(np.prod([b + 1 for b in block_shape])) * 80


def measure_memory(labels, block_shape=None) -> int:
    """Peak bytes of one block of ``measure_volume(labels, ..., block_shape=block_shape)``."""
    from ..io import open_volume

    with open_volume(labels) as lab:
        chunks = tuple(int(c) for c in (lab.chunks or (1,) * len(lab.shape)))
        return _block_bytes(_blocks(tuple(lab.shape), chunks, block_shape)[1])


def _signature(spec, labels, raw):
    from ..runs import input_identity, run_signature

    inputs = {"labels": input_identity(labels)}
    if raw is not None:
        inputs["raw"] = input_identity(raw)
    return run_signature("measure", inputs, options={k: spec[k] for k in ("block_shape", "voxel_size")})


def _measure_block(spec, index, lab=None, raw=None):
    """One block: its partial table to ``blocks/INDEX.npz`` (written whole, then renamed)."""
    if lab is None:  # a Dask worker
        from ..blockwise.execute import open_cached

        lab = open_cached(spec["labels"])
        raw = open_cached(spec["raw"]) if spec["raw"] else None
    if spec["flat"]:
        lab, raw = _Section(lab), None if raw is None else _Section(raw)
    roi = block_slices(tuple(spec["shape"]), tuple(spec["block_shape"]))[index]
    part = block_task(lab, raw, roi, tuple(spec["shape"]), tuple(spec["voxel_size"]))
    path = os.path.join(spec["blocks"], f"{index}.npz")
    tmp = path + ".tmp.npz"
    np.savez(tmp, **part)
    os.replace(tmp, path)
    return index


def _merge_files(folder, n_blocks):
    """The merged partial table of blocks ``0..n_blocks-1``, loaded 64 at a time (memory stays bounded)."""
    merged = merge_partials([])
    for start in range(0, n_blocks, 64):
        parts = [merged]
        for i in range(start, min(start + 64, n_blocks)):
            path = os.path.join(folder, f"{i}.npz")
            if not os.path.exists(path):
                raise RuntimeError(f"{folder}: block {i} is recorded as measured but its table is missing; "
                                   "run the same command with --overwrite to measure again")
            with np.load(path) as f:
                parts.append({k: f[k] for k in FIELDS})
        merged = merge_partials(parts)
    return merged
