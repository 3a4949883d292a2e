"""``--cluster``, ``--cluster-config`` and ``--job-script`` on predict, segment, postprocess and measure: a bad
value ends in one line naming the option, a job script is printed without running, nothing is written."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from conftest import tiny_bc_model

from emseg.cli import main
from emseg.io import write_volume

pytest.importorskip("dask_jobqueue")

COMMANDS = {
    "predict": ["predict", "raw.zarr", "out.zarr", "--model", "m.safetensors"],
    "segment": ["segment", "raw.zarr", "out.zarr", "--model", "m.safetensors"],
    "postprocess": ["postprocess", "pred.zarr", "out.zarr", "--method", "bc"],
    "measure": ["measure", "labels.zarr", "out.csv"],
}


@pytest.fixture
def inputs():
    tiny_bc_model("m.safetensors")
    rng = np.random.default_rng(0)
    write_volume("raw.zarr", rng.integers(0, 256, (4, 64, 64), dtype=np.uint8))
    write_volume("pred.zarr", rng.random((2, 4, 64, 64)).astype(np.float32))
    write_volume("labels.zarr", rng.integers(0, 3, (4, 64, 64)).astype(np.uint16))
    with open("bad-key.yaml", "w") as f:
        f.write("queue: gpu\nqueu: gpu\n")
    with open("small.yaml", "w") as f:
        f.write("memory: 100MB\n")
    with open("slurm.yaml", "w") as f:
        f.write("queue: gpu\naccount: lab42\ncores: 2\nwalltime: '01:00:00'\n")
    return sorted(os.listdir("."))


def _run(capsys, *args):
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(code, err, command, *words):
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"emseg {command}: error: "), err
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.mark.parametrize("command", COMMANDS)
def test_cluster_without_dask_jobqueue_names_the_extra(inputs, capsys, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import dask_jobqueue fails
    code, _, err = _run(capsys, *COMMANDS[command], "--cluster", "slurm")
    _one_line(code, err, command, "--cluster slurm needs dask-jobqueue: pip install 'emseg[cluster]'")
    assert sorted(os.listdir(".")) == inputs


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_cluster_value_lists_the_valid_ones(inputs, capsys, command):
    code, _, err = _run(capsys, *COMMANDS[command], "--cluster", "slurn")
    _one_line(code, err, command, "--cluster", "'slurn'", "slurm", "pbs", "sge", "lsf")
    assert sorted(os.listdir(".")) == inputs


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_cluster_config_key_lists_the_accepted_ones(inputs, capsys, command):
    code, _, err = _run(capsys, *COMMANDS[command], "--cluster", "slurm", "--cluster-config", "bad-key.yaml")
    _one_line(code, err, command, "--cluster-config bad-key.yaml: unknown cluster_config key 'queu' for slurm; "
              "accepted: account, cores,", "walltime")
    assert sorted(os.listdir(".")) == inputs


@pytest.mark.parametrize("command", COMMANDS)
def test_memory_too_small_for_a_block_is_refused_naming_both(inputs, capsys, command):
    code, _, err = _run(capsys, *COMMANDS[command], "--cluster", "pbs", "--cluster-config", "small.yaml")
    _one_line(code, err, command, "--cluster-config", "memory 100MB (95.4 MiB) is less than the", "a job needs")
    assert sorted(os.listdir(".")) == inputs


@pytest.mark.parametrize("extra,words", [
    (["--cluster-config", "slurm.yaml"], ["--cluster-config needs --cluster"]),
    (["--job-script"], ["--job-script needs --cluster"]),
    (["--cluster", "slurm", "--scheduler", "tcp://127.0.0.1:8786"], ["--cluster slurm starts its own scheduler"]),
    (["--cluster", "sge", "--cluster-config", "missing.yaml"], ["--cluster-config missing.yaml:", "does not exist"]),
])
def test_options_that_do_not_go_together(inputs, capsys, extra, words):
    code, _, err = _run(capsys, *COMMANDS["predict"], *extra)
    _one_line(code, err, "predict", *words)
    assert sorted(os.listdir(".")) == inputs


@pytest.mark.parametrize("command", COMMANDS)
def test_job_script_prints_the_script_and_runs_nothing(inputs, capsys, command):
    code, out, err = _run(capsys, *COMMANDS[command], "--cluster", "slurm", "--cluster-config", "slurm.yaml",
                          "--workers", "8", "--job-script")
    assert code == 0, err
    assert out.startswith("#!/usr/bin/env bash\n") and "#SBATCH -p gpu\n" in out and "#SBATCH -A lab42\n" in out
    assert "#SBATCH --cpus-per-task=2\n" in out and "#SBATCH -t 01:00:00\n" in out and "#SBATCH --mem=1G\n" in out
    assert "distributed.cli.dask_worker tcp://<scheduler-address>:8786" in out and "--nthreads 2 " in out
    assert err.startswith(f"emseg {command}: 8 slurm jobs of this script") and "per block" in err
    assert sorted(os.listdir(".")) == inputs
