"""The job script a batch-system run submits (dask-jobqueue's, generated without submitting): the
directives for memory, cores, walltime, queue and account, and the dask worker it starts; the memory a
job needs follows from the run's blocks."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from conftest import tiny_bc_model

from emseg.blockwise.cluster import BASE, PAUSE, job_script, worker_memory
from emseg.config import ConfigError, ExecutionConfig
from emseg.io import write_volume

pytest.importorskip("dask_jobqueue")

SLURM = {"queue": "gpu", "account": "lab42", "cores": 4, "walltime": "04:00:00",
         "job_extra_directives": ["--gres=gpu:1"], "local_directory": "$TMPDIR"}


@pytest.fixture
def block():
    """The bytes one block of a real prediction plan needs (a tiny BC U-Net on a 16 x 256 x 256 volume)."""
    from emseg.predict import PredictConfig
    from emseg.predict.memory import prediction_memory

    tiny_bc_model("m.safetensors")
    write_volume("raw.zarr", np.zeros((16, 256, 256), np.uint8))
    return prediction_memory("raw.zarr", "m.safetensors", PredictConfig(block_shape=(8, 256, 256), tta="flips"))


def _lines(script, prefix):
    return [line for line in script.splitlines() if line.startswith(prefix)]


def test_slurm_job_script_asks_for_what_the_blocks_need(block):
    e = ExecutionConfig(cluster="slurm", workers=3, cluster_config=SLURM)
    script = job_script(e, block)
    need = (BASE + 4 * block) / PAUSE  # 4 cores: 4 blocks at once in one worker process
    gib = math.ceil(need / 2**30)
    assert 2 * 2**20 < block < 2**30 and gib >= 1
    assert _lines(script, "#SBATCH") == ["#SBATCH -J emseg-worker", "#SBATCH -p gpu", "#SBATCH -A lab42",
                                         "#SBATCH -n 1", "#SBATCH --cpus-per-task=4", f"#SBATCH --mem={gib}G",
                                         "#SBATCH -t 04:00:00", "#SBATCH --gres=gpu:1"]
    command = script.strip().splitlines()[-1]
    assert command.split()[:4] == [sys.executable, "-m", "distributed.cli.dask_worker",
                                   "tcp://<scheduler-address>:8786"]
    for option in ("--nthreads 4", f"--memory-limit {gib}.00GiB", "--nanny", "--local-directory $TMPDIR"):
        assert f" {option} " in command + " ", (option, command)
    m = worker_memory(e, block)
    assert (m.threads, m.processes, m.memory) == (4, 1, gib * 2**30) and m.need == math.ceil(need)


def test_processes_share_the_memory_and_a_given_memory_is_kept(block):
    e = ExecutionConfig(cluster="slurm", cluster_config={**SLURM, "processes": 2, "memory": "64GB"})
    script = job_script(e, block)
    assert "#SBATCH --mem=60G" in script  # 64 GB = 59.6 GiB, rounded up by dask-jobqueue
    command = script.strip().splitlines()[-1]
    assert "--nthreads 2 " in command and "--nworkers 2 " in command and "--memory-limit 29.80GiB" in command


def test_pbs_job_script(block):
    from dask_jobqueue.pbs import pbs_format_bytes_ceil

    e = ExecutionConfig(cluster="pbs", cluster_config={"queue": "workq", "account": "lab42", "cores": 2,
                                                       "walltime": "01:30:00"})
    script = job_script(e, block)
    gib = math.ceil((BASE + 2 * block) / PAUSE / 2**30)
    assert _lines(script, "#PBS") == ["#PBS -N emseg-worker", "#PBS -q workq", "#PBS -A lab42",
                                      f"#PBS -l select=1:ncpus=2:mem={pbs_format_bytes_ceil(gib * 2**30)}",
                                      "#PBS -l walltime=01:30:00"]
    assert "--nthreads 2 --memory-limit" in script


def test_the_script_is_the_one_dask_jobqueue_submits(block):
    """The cluster :func:`start_cluster` builds writes the same script, but for the scheduler's real address."""
    from dask_jobqueue import SLURMCluster

    from emseg.blockwise.cluster import _kwargs

    e = ExecutionConfig(cluster="slurm", cluster_config={**SLURM, "scheduler_options": {
        "host": "127.0.0.1", "dashboard_address": None}})
    kwargs, _ = _kwargs(e, block)
    with SLURMCluster(**kwargs) as cluster:  # starts a scheduler on loopback, submits nothing
        theirs = cluster.job_script()
        address = cluster.scheduler_address
    assert theirs.replace(address, "tcp://<scheduler-address>:8786").replace("dummy-name", "emseg-worker") == \
        job_script(e, block)


def test_memory_smaller_than_a_job_needs_is_refused_naming_both(block):
    e = ExecutionConfig(cluster="slurm", cluster_config={"cores": 2, "memory": "600MB"})
    with pytest.raises(ConfigError, match=r"cluster_config memory 600MB \(572\.2 MiB\) is less than the [0-9.]+ MiB a "
                                          r"job needs .*give memory: 1GiB or more"):
        worker_memory(e, block)


@pytest.mark.parametrize("config,message", [
    ({"queu": "gpu"}, "unknown cluster_config key 'queu' for slurm; accepted: account, cores,"),
    ({"cores": 0}, "cluster_config cores must be an integer >= 1; got 0"),
    ({"walltime": 7200}, "walltime must be a string like '02:00:00'"),
    ({"memory": "lots"}, "cluster_config memory must be an amount like 16GB; got 'lots'"),
    ({"job_extra_directives": "--gres=gpu:1"}, "job_extra_directives must be a list of strings"),
])
def test_a_bad_cluster_config_is_one_line(config, message):
    with pytest.raises(ConfigError) as err:
        ExecutionConfig(cluster="slurm", cluster_config=config)
    assert message in str(err.value) and "\n" not in str(err.value) and err.value.key == "cluster_config"


def test_bad_cluster_values():
    with pytest.raises(ConfigError, match="cluster must be one of slurm, pbs, sge, lsf; got 'slurn'"):
        ExecutionConfig(cluster="slurn")
    with pytest.raises(ConfigError, match="cannot use the scheduler at tcp://h:8786"):
        ExecutionConfig(cluster="slurm", scheduler="tcp://h:8786")
    with pytest.raises(ConfigError, match="set cluster too"):
        ExecutionConfig(cluster_config={"queue": "gpu"})
    assert ExecutionConfig(cluster="sge").scheduler == "local"  # the scheduler runs here, the workers are jobs


def test_without_dask_jobqueue_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import dask_jobqueue now fails
    with pytest.raises(ConfigError, match=r"^--cluster slurm needs dask-jobqueue: pip install 'emseg\[cluster\]'$"):
        ExecutionConfig(cluster="slurm")
