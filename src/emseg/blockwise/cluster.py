"""Blockwise runs on a batch system (SLURM, PBS, SGE, LSF) through ``dask-jobqueue``: the Dask
scheduler runs here, every worker is a job.

What a job is: ``cores`` Dask threads in ``processes`` worker processes (default 1 and 1: one block
at a time, the model loaded once), and the memory those need::

    memory of a job = processes x (BASE + threads x one block) / PAUSE

where ``one block`` is what the stage says a block needs at its peak (input with halo, output, the
network's activations), ``BASE`` what a worker process holds before any block (Python, torch, Dask,
open volumes) and ``PAUSE`` the fraction of its memory at which Dask pauses a worker. A cluster
config without ``memory`` gets this (rounded up to whole GiB); one with less is refused.
:func:`job_script` is the script each job runs, exactly as :func:`start_cluster` submits it.
"""

from __future__ import annotations

import logging
import math
import threading
from contextlib import contextmanager
from typing import NamedTuple

from ..config import ConfigError

__all__ = ["CLUSTERS", "WorkerMemory", "check_cluster", "worker_memory", "check_jobs", "job_script", "start_cluster",
           "keep_jobs"]
log = logging.getLogger(__name__)

CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}
"""``--cluster`` values and their ``dask_jobqueue`` classes."""

BASE = 512 * 2**20
"""Bytes a worker process holds before its first block (measured: ~310 MiB with torch, Dask, zarr)."""

PAUSE = 0.8
"""Dask pauses a worker at this fraction of its memory limit (``distributed.worker.memory.pause``)."""

RESUBMIT_EVERY = 30.0
"""Seconds between checks for ended jobs (:func:`keep_jobs`)."""

# the accepted cluster_config keys (dask-jobqueue's keyword arguments) and what each takes
_TEXT, _TEXTS, _INT = "a string", "a list of strings", "an integer >= 1"
_NUMBER, _FLAG, _MAP = "a number", "true or false", "a mapping"
_COMMON = {"cores": _INT, "memory": "an amount like 16GB", "processes": _INT, "queue": _TEXT, "walltime": _TEXT,
           "job_name": _TEXT, "job_extra_directives": _TEXTS, "job_directives_skip": _TEXTS,
           "job_script_prologue": _TEXTS, "worker_extra_args": _TEXTS, "local_directory": _TEXT,
           "log_directory": _TEXT, "interface": _TEXT, "python": _TEXT, "shebang": _TEXT, "death_timeout": _NUMBER,
           "nanny": _FLAG, "scheduler_options": _MAP}
_KINDS = {"slurm": {"account": _TEXT, "job_cpu": _INT, "job_mem": _TEXT},
          "pbs": {"account": _TEXT, "resource_spec": _TEXT},
          "sge": {"project": _TEXT, "resource_spec": _TEXT},
          "lsf": {"project": _TEXT, "ncpus": _INT, "mem": _INT, "lsf_units": _TEXT, "use_stdin": _FLAG}}
_CLUSTER_ONLY = ("scheduler_options",)  # keywords of the cluster, not of its jobs
_ADDRESS = "tcp://<scheduler-address>:8786"  # the scheduler's address, known once it runs


class WorkerMemory(NamedTuple):
    """The memory of one job (bytes): what it needs and what it asks the batch system for."""

    block: int
    threads: int
    processes: int
    need: int
    memory: int

    def describe(self):
        return f"{_size(self.memory)} per job ({self.formula()}: {_size(self.need)} needed)"

    def formula(self):
        return (f"{_count(self.processes, 'worker process', 'es')} x ({_count(self.threads, 'thread')} x "
                f"{_size(self.block)} per block + {_size(BASE)}) / {PAUSE:g}")


def _jobqueue(kind):
    """The ``dask_jobqueue`` cluster class for ``kind``, or a one-line error naming the extra to install."""
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError("cluster", f"--cluster {kind} needs dask-jobqueue: pip install 'emseg[cluster]'") from None
    return getattr(dask_jobqueue, CLUSTERS[kind])


def check_cluster(kind, config) -> dict | None:
    """``config`` (dask-jobqueue keyword arguments for a ``kind`` cluster) checked, as a plain dict.

    Raises
    ------
    ConfigError
        An unknown ``kind`` (listing the valid ones), dask-jobqueue missing (naming the extra), an unknown
        key (listing the accepted ones) or a value of the wrong type; ``key`` is ``cluster`` or ``cluster_config``.

    Examples
    --------
    >>> check_cluster("slurm", {"queue": "gpu", "cores": "4"})
    {'queue': 'gpu', 'cores': 4}
    >>> check_cluster("slurm", {"queu": "gpu"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emseg.config.ConfigError: unknown cluster_config key 'queu' for slurm; accepted: account, ..., worker_extra_args
    """
    if kind is None:
        if config:
            raise ConfigError("cluster_config", "cluster_config is for a batch system: set cluster too "
                              f"({', '.join(CLUSTERS)})")
        return None
    if kind not in CLUSTERS:
        raise ConfigError("cluster", f"cluster must be one of {', '.join(CLUSTERS)}; got {kind!r}")
    _jobqueue(kind)
    config = dict(config or {})
    if not all(isinstance(k, str) for k in config):
        raise ConfigError("cluster_config", f"cluster_config must map option names to values; got {config!r}")
    accepted = {**_COMMON, **_KINDS[kind]}
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise ConfigError("cluster_config", f"unknown cluster_config key{'s' * (len(unknown) > 1)} "
                          f"{', '.join(map(repr, unknown))} for {kind}; accepted: {', '.join(sorted(accepted))}")
    return {k: _value(k, v, accepted[k]) for k, v in config.items()}


def _value(key, v, kind):
    bad = ConfigError("cluster_config", f"cluster_config {key} must be {kind}; got {v!r}")
    if kind == _INT:
        try:
            v2 = int(v)
        except (TypeError, ValueError):
            raise bad from None
        if isinstance(v, bool) or v2 != float(v) or v2 < 1:
            raise bad
        return v2
    if kind == _TEXTS:
        if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise bad
        return list(v)
    if kind.startswith("an amount"):
        return _bytes(v, bad)
    if key == "walltime" and not isinstance(v, str):  # YAML reads an unquoted 02:00:00 as 7200 (base 60)
        raise ConfigError("cluster_config", f"cluster_config walltime must be a string like '02:00:00' (quoted in "
                          f"YAML: unquoted, 02:00:00 reads as the number 7200); got {v!r}")
    ok = {_TEXT: isinstance(v, (str, int)) and not isinstance(v, bool), _FLAG: isinstance(v, bool),
          _NUMBER: isinstance(v, (int, float)) and not isinstance(v, bool), _MAP: isinstance(v, dict)}[kind]
    if not ok:
        raise bad
    return str(v) if kind == _TEXT else v


def _bytes(v, bad):
    from dask.utils import parse_bytes

    try:
        n = parse_bytes(v)
    except (TypeError, ValueError):
        raise bad from None
    if n <= 0:
        raise bad
    return v


def worker_memory(execution, block) -> WorkerMemory:
    """The memory of a job of ``execution.cluster`` whose blocks need ``block`` bytes each (None: unknown, 0).

    Raises
    ------
    ConfigError
        ``cluster_config.memory`` is less than a job needs (both named).

    Examples
    --------
    >>> from emseg.config import ExecutionConfig
    >>> e = ExecutionConfig(cluster="slurm", cluster_config={"cores": 2})
    >>> worker_memory(e, 2**30).describe()
    '4.0 GiB per job (1 worker process x (2 threads x 1.0 GiB per block + 512.0 MiB) / 0.8: 3.1 GiB needed)'
    """
    from dask.utils import parse_bytes

    config = execution.cluster_config or {}
    processes = int(config.get("processes", 1))
    threads = max(1, int(config.get("cores", processes)) // processes)
    block = int(block or 0)
    need = math.ceil(processes * (BASE + threads * block) / PAUSE)
    if "memory" not in config:
        return WorkerMemory(block, threads, processes, need, math.ceil(need / 2**30) * 2**30)
    memory = parse_bytes(config["memory"])
    m = WorkerMemory(block, threads, processes, need, memory)
    if memory < need:
        raise ConfigError("cluster_config", f"cluster_config memory {config['memory']} ({_size(memory)}) is less "
                          f"than the {_size(need)} a job needs ({m.formula()}); give memory: "
                          f"{math.ceil(need / 2**30)}GiB or more, or smaller blocks (--block-shape)")
    return m


def check_jobs(execution, block):
    """Refuse (before anything is written) jobs of ``execution.cluster`` too small for blocks of ``block`` bytes."""
    if execution.cluster is not None:
        worker_memory(execution, block)


def _kwargs(execution, block):
    """The keyword arguments of the dask-jobqueue cluster: the config, with emseg's defaults."""
    m = worker_memory(execution, block)
    config = dict(execution.cluster_config or {})
    config.setdefault("processes", m.processes)
    config.setdefault("cores", m.threads * m.processes)
    config.setdefault("memory", f"{m.memory}B")
    config.setdefault("job_name", "emseg-worker")
    return config, m


def job_script(execution, block=None) -> str:
    """The script every job of ``execution.cluster`` runs (what :func:`start_cluster` submits), for blocks of
    ``block`` bytes; nothing is started or submitted. The scheduler's address reads ``<scheduler-address>``.

    Examples
    --------
    >>> from emseg.config import ExecutionConfig
    >>> e = ExecutionConfig(cluster="slurm", cluster_config={"queue": "gpu", "walltime": "02:00:00"})
    >>> print(job_script(e, 2**30))  # doctest: +ELLIPSIS
    #!/usr/bin/env bash
    <BLANKLINE>
    #SBATCH -J emseg-worker
    #SBATCH -p gpu
    #SBATCH -n 1
    #SBATCH --cpus-per-task=1
    #SBATCH --mem=2G
    #SBATCH -t 02:00:00
    <BLANKLINE>
    ... -m distributed.cli.dask_worker tcp://<scheduler-address>:8786 --name emseg-worker --nthreads 1 ...
    """
    config, _ = _kwargs(execution, block)
    for key in _CLUSTER_ONLY:
        config.pop(key, None)
    job = _jobqueue(execution.cluster).job_cls(_ADDRESS, name="emseg-worker", **config)
    return job.job_script()


def start_cluster(execution, block=None):
    """A dask-jobqueue cluster of ``execution.workers`` jobs for blocks of ``block`` bytes; ``(client, cluster)``."""
    from distributed import Client

    config, m = _kwargs(execution, block)
    log.info("memory per worker: %s", m.describe())
    cluster = _jobqueue(execution.cluster)(**config)
    try:
        cluster.scale(jobs=execution.workers)
        return Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise


@contextmanager
def keep_jobs(cluster, jobs, every=None):
    """While inside, look every ``every`` seconds (default :data:`RESUBMIT_EVERY`) for jobs that ended (walltime,
    preemption, a lost node) and submit new ones: dask-jobqueue does not replace them by itself, and a run
    whose jobs all ended would wait for ever."""
    if cluster is None or not hasattr(cluster, "job_cls"):
        yield
        return
    stop, every = threading.Event(), RESUBMIT_EVERY if every is None else every

    def keep():
        while not stop.wait(every):
            try:
                cluster.scale(jobs=jobs)  # starts the jobs of its plan that are not running
            except Exception as e:  # noqa: BLE001 - a failed submission is retried at the next tick
                log.warning("could not resubmit the ended jobs (%s); retrying in %g s", e, every)

    thread = threading.Thread(target=keep, name="emseg-keep-jobs", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every)


def _count(n, word, plural="s"):
    return f"{n} {word}{plural * (n != 1)}"


def _size(n):
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
