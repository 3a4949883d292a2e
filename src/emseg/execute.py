"""Run per-block tasks on local threads or on a Dask cluster, with a durable record of finished blocks.

Shared by every blockwise stage (prediction, instance segmentation). Knows nothing about what a
block computes: a task is ``fn(spec, index, **local)`` where ``spec`` is a JSON-able plan and
``index`` a block number. Only ``spec`` and the indices travel to Dask workers; workers open
volumes and load models themselves (and cache them per process with :func:`open_cached`).
"""

from __future__ import annotations

import json
import os
import time

__all__ = ["BlockRecord", "record_path", "run_blocks", "open_cached"]


class BlockRecord:
    """Append-only, fsync'ed record of finished blocks, headed by a signature of the run's settings.

    A run started again with the same signature skips the recorded blocks; a different signature
    is refused (the output was started with other settings).
    """

    def __init__(self, path, signature, resume=True, what="the output"):
        self.path, self.done = path, set()
        if os.path.exists(path) and resume:
            with open(path) as f:
                lines = f.read().splitlines()
            head = json.loads(lines[0]) if lines else {}
            if head.get("signature") != signature:
                raise ValueError(f"{path}: {what} was started with different settings; pass overwrite=True "
                                 "or another output")
            self.done = {int(x) for x in lines[1:] if x.strip().isdigit()}
        else:
            with open(path, "w") as f:
                f.write(json.dumps({"signature": signature}) + "\n")
                f.flush()
                os.fsync(f.fileno())
        self._f = open(path, "a")

    def mark(self, index):
        self._f.write(f"{index}\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def note(self, text):
        """A durable line that is not a block index (e.g. that the whole run completed)."""
        self._f.write(f"{text}\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self):
        self._f.close()


def record_path(out_path, stage="progress"):
    """Where the record of ``out_path`` (``file.ext:key`` allowed) lives: inside a directory store
    (Zarr, N5; existing or not yet created), else beside it."""
    from .io.paths import detect_format, split_key

    path, key = split_key(str(out_path))
    name = (key or "root").replace("/", "_")
    try:
        directory = detect_format(path, None, for_writing=True) in ("zarr", "n5")
    except ValueError:
        directory = False
    if os.path.isdir(path) or directory:
        return os.path.join(path, f".emseg-{stage}-{name}.jsonl")
    return f"{path}.{name}.emseg-{stage}.jsonl"


_OPEN: dict = {}


def open_cached(path, mode="r"):
    """Open a volume once per process (Dask workers reuse it across blocks)."""
    from .io import open_volume

    key = (str(path), mode, os.getpid())
    if key not in _OPEN:
        _OPEN[key] = open_volume(path, mode=mode)
    return _OPEN[key]


def run_blocks(fn, spec, pending, *, local=None, stages=None, workers=2, scheduler=None, record=None, progress=None,
               sizes=None, desc="blocks"):
    """Run ``fn(spec, i, **local)`` for every ``i`` in ``pending``; mark each finished block in ``record``.

    Parameters
    ----------
    stages : (read, compute, write), optional
        On local threads, ``fn`` split into ``read(spec, i) -> data``, ``compute(spec, i, data) -> result``
        and ``write(spec, i, result) -> i``: each of the ``workers`` compute streams then reads its next
        block and writes its previous one in the background while it computes (I/O overlapped with compute).
    workers : int
        Threads, or the processes of a Dask ``LocalCluster`` when ``scheduler="local"``.
    scheduler : None, "local" or "tcp://host:port"
        None runs on local threads with ``local`` passed as keyword arguments (open volumes,
        loaded models); otherwise ``fn(spec, i)`` runs on Dask workers and must open what it needs.
    progress : bool or callable
        True shows a tqdm bar (blocks, voxels/s when ``sizes`` is given, ETA); a callable gets each index.
    """
    bar = _bar(progress, len(pending) + (len(record.done) if record else 0),
               len(record.done) if record else 0, desc)
    sizes = sizes or {}
    try:
        if scheduler is None and stages is not None:
            _run_pipelined(stages, spec, pending, workers, record, bar, sizes)
        elif scheduler is None:
            _run_threads(fn, spec, pending, local or {}, workers, record, bar, sizes)
        else:
            _run_dask(fn, spec, pending, scheduler, workers, record, bar, sizes)
    finally:
        if bar is not None and hasattr(bar, "close"):
            bar.close()


def _bar(progress, total, initial, desc):
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=initial, unit="block", desc=desc)
        bar.voxels, bar.started = 0, time.perf_counter()
        return bar
    return progress if callable(progress) else None


def _tick(bar, index, voxels=0):
    if bar is None:
        return
    if hasattr(bar, "update"):
        bar.voxels += voxels
        if voxels:
            rate = bar.voxels / max(time.perf_counter() - bar.started, 1e-9)
            bar.set_postfix_str(f"{rate / 1e6:.2f} Mvoxel/s", refresh=False)
        bar.update(1)
    else:
        bar(index)


def _done(index, record, bar, sizes):
    if record is not None:
        record.mark(index)
    _tick(bar, index, sizes.get(index, 0))


def _run_threads(fn, spec, pending, local, workers, record, bar, sizes):
    from concurrent.futures import ThreadPoolExecutor, as_completed

    if int(workers or 1) <= 1:  # serial: easy to debug, exceptions with their own traceback
        for i in pending:
            _done(fn(spec, i, **local), record, bar, sizes)
        return
    with ThreadPoolExecutor(int(workers)) as pool:
        futures = [pool.submit(fn, spec, i, **local) for i in pending]
        try:
            for fut in as_completed(futures):
                _done(fut.result(), record, bar, sizes)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _run_pipelined(stages, spec, pending, workers, record, bar, sizes):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    read, compute, write = stages
    lock = threading.Lock()

    def finished(future):
        index = future.result()
        with lock:
            _done(index, record, bar, sizes)

    def stream(indices):
        if not indices:
            return
        with ThreadPoolExecutor(2) as io:  # one read ahead, one write behind
            ahead = io.submit(read, spec, indices[0])
            behind = None
            for k, index in enumerate(indices):
                data = ahead.result()
                if k + 1 < len(indices):
                    ahead = io.submit(read, spec, indices[k + 1])
                result = compute(spec, index, data)
                del data
                if behind is not None:
                    finished(behind)
                behind = io.submit(write, spec, index, result)
                del result
            finished(behind)

    n = max(1, min(int(workers or 1), len(pending)))
    if n == 1:
        stream(list(pending))
        return
    with ThreadPoolExecutor(n) as pool:
        for fut in [pool.submit(stream, list(pending[s::n])) for s in range(n)]:
            fut.result()


def _run_dask(fn, spec, pending, scheduler, workers, record, bar, sizes):
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=max(1, int(workers or 1)), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="3s")
        except OSError as e:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r} ({e}); is it running?") from None
    try:
        futures = client.map(fn, [spec] * len(pending), pending, pure=False)
        for fut in as_completed(futures):
            _done(fut.result(), record, bar, sizes)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
