"""``--cluster``, ``--cluster-config`` and ``--job-script`` of ``predict``, ``segment``, ``postprocess`` and
``measure``: Dask workers as jobs of a batch system (:mod:`emseg.blockwise.cluster`)."""

from __future__ import annotations

import sys

__all__ = ["add_cluster_options", "cluster_options", "print_job_script"]


def add_cluster_options(s):
    """The options; ``--workers N`` is then the number of jobs."""
    from ..blockwise.cluster import CLUSTERS

    s.add_argument("--cluster", choices=tuple(CLUSTERS), help="run the workers as jobs of this batch system "
                   "(needs dask-jobqueue: pip install 'emseg[cluster]'); --workers N: N jobs (default 2)")
    s.add_argument("--cluster-config", metavar="FILE", help="YAML of the jobs' dask-jobqueue options: queue, "
                   "account, cores, memory, walltime, job_extra_directives, ... (default memory: what a block needs)")
    s.add_argument("--job-script", action="store_true", help="print the script each job would run and exit: nothing "
                   "is submitted, run or written")


def cluster_options(args) -> dict:
    """The :class:`~emseg.config.ExecutionConfig` fields ``--cluster`` and ``--cluster-config`` set, checked
    (an error names the option and the file); the scheduler then runs here and ``--workers`` counts jobs."""
    if args.cluster is None:
        if args.cluster_config:
            raise ValueError("--cluster-config needs --cluster (slurm, pbs, sge or lsf)")
        return {}
    if args.scheduler:
        raise ValueError(f"--cluster {args.cluster} starts its own scheduler here; leave out --scheduler "
                         f"{args.scheduler}")
    config = None
    if args.cluster_config:
        from ..blockwise.cluster import check_cluster
        from ..config import ConfigError, _read_yaml

        try:
            config = check_cluster(args.cluster, _read_yaml(args.cluster_config))
        except ConfigError as e:
            if e.key == "cluster":
                raise
            raise ValueError(f"--cluster-config {args.cluster_config}: {e}") from None
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"--cluster-config {args.cluster_config}: {e}") from None
    return dict(cluster=args.cluster, cluster_config=config)


def print_job_script(command, execution, memory):
    """``--job-script``: the script on stdout (``> job.sh``), what it asks for on stderr."""
    from ..blockwise.cluster import job_script, worker_memory

    if execution.cluster is None:
        raise ValueError("--job-script needs --cluster (slurm, pbs, sge or lsf), or cluster: in --config")
    print(job_script(execution, memory), end="")
    m = worker_memory(execution, memory)
    print(f"emseg {command}: {execution.workers} {execution.cluster} jobs of this script (--workers); memory: "
          f"{m.describe()}; nothing was submitted", file=sys.stderr)
