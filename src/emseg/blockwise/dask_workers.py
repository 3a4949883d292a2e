"""Blocks on Dask workers: connect to (or start) a cluster, share one client across the runs of a command,
and submit again the blocks of workers that died. Used by :func:`emseg.blockwise.execute.run_blocks`.

Only the plan (``spec``, once per worker) and block indices travel; workers open volumes and load models
themselves. A block is recorded when its result arrives, so a killed worker or a cancelled job costs only
the blocks it had not finished.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

__all__ = ["probe_scheduler", "connect", "shared_dask"]
log = logging.getLogger(__name__)


def probe_scheduler(scheduler, timeout=5.0) -> str:
    """Check within ``timeout`` seconds that a Dask scheduler answers at ``scheduler``; return its address.

    A closed port, an unknown host or a port that does not speak Dask's protocol ends in a
    ValueError instead of a hang (a Dask client alone waits forever on a silent port).
    """
    import asyncio

    from distributed.comm import connect as comm_connect

    address = str(scheduler) if "://" in str(scheduler) else f"tcp://{scheduler}"

    async def probe():
        comm = await comm_connect(address, timeout=timeout)
        await comm.close()

    try:
        asyncio.run(asyncio.wait_for(probe(), timeout))
    except (OSError, asyncio.TimeoutError, ValueError, TypeError) as e:
        why = "no answer as a Dask scheduler" if isinstance(e, asyncio.TimeoutError) else str(e) or type(e).__name__
        raise ValueError(f"cannot reach a Dask scheduler at {scheduler!r} within {timeout:g} s ({why}); "
                         "is the scheduler running, and is this its address (tcp://host:8786)?") from None
    return address


def connect(execution, memory=None, timeout=10.0):
    """A Dask client for ``execution``: a new ``LocalCluster`` of ``workers`` processes for ``"local"``, the
    jobs of a batch system for ``cluster`` (sized for blocks of ``memory`` bytes:
    :func:`emseg.blockwise.cluster.start_cluster`), else the scheduler at ``tcp://host:port``.

    The address is probed with a Dask handshake first, within ``timeout`` seconds overall, so a
    port that is closed or does not speak Dask fails fast with a message instead of hanging.
    Returns ``(client, cluster or None)``.
    """
    from distributed import Client, LocalCluster

    if execution.cluster is not None:
        from .cluster import start_cluster

        return start_cluster(execution, memory)
    if execution.scheduler == "local":
        cluster = LocalCluster(n_workers=execution.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        return Client(cluster), cluster
    address = probe_scheduler(execution.scheduler, timeout / 2)
    try:
        return Client(address, timeout=f"{timeout / 2:g}s"), None
    except (OSError, TimeoutError) as e:
        raise ValueError(f"cannot connect to the Dask scheduler at {execution.scheduler!r} ({e})") from None


_SHARED: list = []
"""Inside :func:`shared_dask`: one slot, ``(settings, client, cluster, memory of its jobs)`` or None."""


@contextmanager
def shared_dask():
    """Inside it, Dask runs of the same execution settings share one client and its cluster, closed on exit:
    one set of batch jobs (one ``LocalCluster``) for the prediction and both passes of ``emseg segment``."""
    if _SHARED:  # nested: the outer one keeps and closes it
        yield
        return
    _SHARED.append(None)
    try:
        yield
    finally:
        kept = _SHARED.pop()
        if kept is not None:
            _close(kept[1], kept[2])


def _client(execution, memory):
    """``(client, cluster, own)``: the shared one where it fits (same settings, jobs big enough), else a new one."""
    if not _SHARED:
        return (*connect(execution, memory), True)
    settings = (execution.scheduler, execution.workers, execution.cluster, repr(execution.cluster_config))
    kept, size = _SHARED[0], _job_memory(execution, memory)
    if kept is not None and kept[0] == settings and size <= kept[3]:
        return kept[1], kept[2], False
    if kept is not None:  # other settings, or blocks bigger than its jobs were sized for
        _close(kept[1], kept[2])
        _SHARED[0] = None
    client, cluster = connect(execution, memory)
    _SHARED[0] = (settings, client, cluster, size)
    return client, cluster, False


def _job_memory(execution, memory):
    """The memory of each batch job for blocks of ``memory`` bytes (0 for other Dask clusters)."""
    if execution.cluster is None:
        return 0
    from .cluster import worker_memory

    return worker_memory(execution, memory).memory


def _close(client, cluster):
    client.close()
    try:
        if cluster is not None:
            cluster.close()
    except Exception as e:  # noqa: BLE001 - the run is done; say so rather than fail it
        log.warning("could not close the Dask cluster cleanly (%s: %s); check that no job of it is left running",
                    type(e).__name__, e)


_ROUNDS = 3
"""How many times the blocks of dead Dask workers are resubmitted (after Dask's own retries: a task whose
workers died ``distributed.scheduler.allowed-failures`` times fails with KilledWorker)."""


class _WorkersLost(Exception):
    def __init__(self, lost, attempts):
        super().__init__(lost, attempts)
        self.lost, self.attempts = lost, attempts


def _plan(spec):
    """The task whose result is the plan: held by one worker, fetched once by each other worker that needs it,
    and computed again by the scheduler if every holder dies (scattered data would be lost with them)."""
    return spec


def _run_dask(fn, spec, pending, execution, memory, count):
    """``fn(spec, i)`` on Dask workers: ``spec`` reaches every worker once, then only indices travel.

    Each block is recorded once, when its result arrives. Dask itself retries the blocks of a dead worker
    until one has seen ``distributed.scheduler.allowed-failures`` deaths (KilledWorker); those are submitted
    again in a new round, at most :data:`_ROUNDS` times, then :class:`_WorkersLost`.
    """
    from distributed import KilledWorker, as_completed

    from .cluster import keep_jobs

    if not pending:  # nothing to do: no cluster started, no job submitted
        return
    client, cluster, own = _client(execution, memory)
    futures, seen, todo = [], set(), list(pending)
    try:
        with keep_jobs(cluster, execution.workers):
            plan = client.submit(_plan, spec, pure=False)
            for round_ in range(_ROUNDS + 1):
                futures = client.map(fn, [plan] * len(todo), todo, pure=False)
                index_of = {f.key: i for f, i in zip(futures, todo)}
                lost = []
                for fut in as_completed(futures):
                    if fut.status == "error" and isinstance(fut.exception(), KilledWorker):
                        lost.append(index_of[fut.key])
                        continue
                    index = fut.result()
                    if index not in seen:  # a block recomputed after its result was lost counts once
                        seen.add(index)
                        count(index)
                if not lost:
                    return
                todo = sorted(lost)
                if round_ < _ROUNDS:
                    log.warning("%d blocks lost their Dask workers; submitting them again (%d of %d)", len(todo),
                                round_ + 1, _ROUNDS)
            raise _WorkersLost(len(todo), _ROUNDS + 1)
    except BaseException:
        if futures:
            client.cancel(futures)
        raise
    finally:
        if own:
            _close(client, cluster)
