"""Run per-block tasks on local threads or on a Dask cluster, with a durable record of finished blocks.

Shared by every blockwise stage (prediction, instance segmentation). Knows nothing about what a
block computes: a task is ``fn(spec, index, **local)`` where ``spec`` is a JSON-able plan and
``index`` a block number. Only ``spec`` and the indices travel to Dask workers; workers open
volumes and load models themselves (and cache them per process with :func:`open_cached`). The
record of finished blocks is :class:`emseg.blockwise.record.BlockRecord`; it stays the truth when Dask
workers die: their blocks are resubmitted (:func:`run_blocks`), and what is recorded is never redone.
Batch systems (``execution.cluster``): :mod:`emseg.blockwise.cluster`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import NamedTuple

from ..config import ExecutionConfig
from .dask_workers import _WorkersLost, _run_dask, connect, probe_scheduler, shared_dask

__all__ = ["BlockJob", "Interrupted", "run_blocks", "open_cached", "connect", "probe_scheduler", "shared_dask"]


class BlockJob(NamedTuple):
    """What a run of blocks is called and keeps, for :func:`run_blocks`.

    ``desc`` names the progress bar; ``sizes`` maps a block index to its voxels (the bar shows
    voxels/s); ``record`` (a :class:`~emseg.blockwise.record.BlockRecord`) marks each finished
    block; ``where`` is the incomplete output, named in the :class:`Interrupted` message; ``memory``
    the bytes one block needs at its peak (sizes the jobs of a batch-system cluster).
    """

    desc: str = "blocks"
    sizes: dict | None = None
    record: object = None
    where: str | None = None
    memory: int | None = None


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT (Ctrl-C) after finishing the blocks in flight; says what is on disk."""

    def __init__(self, done, total, where=None):
        self.done, self.total, self.where = done, total, where
        super().__init__(self.message())

    def message(self):
        where = f"; the incomplete output is at {self.where}" if self.where else ""
        return (f"interrupted after {self.done} of {self.total} blocks{where}; "
                "run the same command again to resume")


_OPEN: dict = {}


def open_cached(path, mode="r"):
    """Open a volume once per process (Dask workers reuse it across blocks)."""
    from ..io import open_volume

    key = (str(path), mode, os.getpid())
    if key not in _OPEN:
        _OPEN[key] = open_volume(path, mode=mode)
    return _OPEN[key]


def run_blocks(fn, spec, pending, *, local=None, stages=None, execution=None, job=None, stop=None):
    """Run ``fn(spec, i, **local)`` for every ``i`` in ``pending``; mark each finished block in ``job.record``.

    Parameters
    ----------
    local : dict, optional
        On local threads, keyword arguments of ``fn`` (open volumes, loaded models).
    stages : (read, compute, write), optional
        On local threads, ``fn`` split into ``read(spec, i) -> data``, ``compute(spec, i, data) -> result``
        and ``write(spec, i, result) -> i``: each of the ``workers`` compute streams then reads its next
        block and writes its previous one in the background while it computes (I/O overlapped with compute).
    execution : emseg.config.ExecutionConfig, optional
        ``workers`` (threads, or the processes of a Dask ``LocalCluster`` when ``scheduler="local"``),
        ``scheduler`` (None runs on local threads; otherwise ``fn(spec, i)`` runs on Dask workers at
        ``"local"`` or ``"tcp://host:port"``, or on the jobs of ``cluster``, and must open what it needs:
        ``spec`` is sent to each worker once, then only block indices) and ``progress`` (a tqdm
        bar: blocks, voxels/s when ``job.sizes`` is given, ETA). Blocks whose Dask worker died are
        resubmitted, a bounded number of times.
    job : BlockJob, optional
        The bar's name, the blocks' sizes, the record and where the output is.
    stop : threading.Event, optional
        Set on SIGINT (Ctrl-C): no new block starts, the blocks in flight are finished and recorded.
        Pass its ``is_set`` to long computations so they can stop early too.

    Raises
    ------
    Interrupted
        On SIGINT, once the blocks in flight are done: how many blocks are finished, and where.
    RuntimeError
        Blocks whose Dask workers kept dying: how many blocks are finished (a rerun resumes there).

    Examples
    --------
    >>> run_blocks(lambda spec, i: print(spec, i) or i, "plan", [0, 1], execution=ExecutionConfig(workers=1))
    plan 0
    plan 1
    """
    execution = execution if execution is not None else ExecutionConfig()
    job = job if job is not None else BlockJob()
    workers, record = execution.workers, job.record
    stop = stop if stop is not None else threading.Event()
    before = len(record.done) if record else 0
    total = len(pending) + before
    bar = _bar(execution.progress, total, before, job.desc)
    sizes = job.sizes or {}
    finished = [0]

    def count(index):
        _done(index, record, bar, sizes)
        finished[0] += 1  # after the record: an interrupt inside mark() does not over-report

    try:
        if execution.scheduler is None and stages is not None:
            _run_pipelined(stages, spec, pending, workers, count, stop)
        elif execution.scheduler is None:
            _run_threads(fn, spec, pending, local or {}, workers, count, stop)
        else:
            _run_dask(fn, spec, pending, execution, job.memory, count)
    except _WorkersLost as e:
        where = f"; the incomplete output is at {job.where}" if job.where else ""
        raise RuntimeError(f"{e.lost} blocks failed {e.attempts} times because their Dask workers died (killed, out "
                           f"of memory, or their jobs ended); {before + finished[0]} of {total} blocks are done"
                           f"{where}: run the same command again to resume") from None
    except KeyboardInterrupt:
        stop.set()
        raise Interrupted(before + finished[0], total, job.where) from None
    finally:
        if bar is not None:
            bar.close()


def _bar(progress, total, initial, desc):
    if not progress:
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, unit="block", desc=desc)
    bar.voxels, bar.started = 0, time.perf_counter()
    return bar


def _tick(bar, voxels=0):
    if bar is None:
        return
    bar.voxels += voxels
    if voxels:
        rate = bar.voxels / max(time.perf_counter() - bar.started, 1e-9)
        bar.set_postfix_str(f"{rate / 1e6:.2f} Mvoxel/s", refresh=False)
    bar.update(1)


def _done(index, record, bar, sizes):
    if record is not None:
        record.mark(index)
    _tick(bar, sizes.get(index, 0))


def _run_threads(fn, spec, pending, local, workers, count, stop):
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    if workers <= 1:  # serial: easy to debug, exceptions with their own traceback
        for i in pending:
            if stop.is_set():
                raise KeyboardInterrupt
            count(fn(spec, i, **local))
        return
    pool = ThreadPoolExecutor(workers)
    running = set()
    todo = iter(pending)
    try:
        # a few blocks in flight at a time: no future per block of a 500k-block volume up front
        for i in todo:
            running.add(pool.submit(fn, spec, i, **local))
            if len(running) < 2 * workers:
                continue
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                count(fut.result())
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                count(fut.result())
    except BaseException:
        stop.set()
        for fut in running:
            fut.cancel()
        _drain(running, count)
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _drain(futures, count):
    """After an interruption: wait for the blocks in flight and record those that finished."""
    from concurrent.futures import wait

    try:
        wait(futures)
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting (unrecorded blocks are recomputed on resume)
        return
    for fut in futures:
        if fut.done() and not fut.cancelled() and fut.exception() is None and fut.result() is not None:
            count(fut.result())


def _run_pipelined(stages, spec, pending, workers, count, stop):
    from concurrent.futures import ThreadPoolExecutor, wait

    read, compute, write = stages
    lock = threading.Lock()

    def finished(future):
        index = future.result()
        with lock:
            count(index)

    def stream(indices):
        if not indices:
            return
        with ThreadPoolExecutor(2) as io:  # one read ahead, one write behind
            ahead = io.submit(read, spec, indices[0])
            behind = None
            try:
                for k, index in enumerate(indices):
                    if stop.is_set():
                        break
                    data = ahead.result()
                    if k + 1 < len(indices) and not stop.is_set():
                        ahead = io.submit(read, spec, indices[k + 1])
                    result = compute(spec, index, data)
                    del data
                    if behind is not None:
                        finished(behind)
                    behind = io.submit(write, spec, index, result)
                    del result
            finally:
                if behind is not None:
                    finished(behind)

    n = max(1, min(workers, len(pending)))
    pool = ThreadPoolExecutor(n)
    futures = [pool.submit(stream, list(pending[s::n])) for s in range(n)]
    try:
        from concurrent.futures import FIRST_EXCEPTION

        wait(futures, return_when=FIRST_EXCEPTION)  # an error in any stream stops the others at once
        for fut in futures:
            if fut.done() and fut.exception() is not None:
                stop.set()
                wait(futures)
                fut.result()
        for fut in futures:
            fut.result()
    except BaseException:
        stop.set()
        try:
            wait(futures)
        except KeyboardInterrupt:
            pass
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
