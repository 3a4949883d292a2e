"""``emseg fit`` end to end on a tiny synthetic volume: the model card ``emseg segment --model OUT_DIR``
uses, a rerun that keeps every finished stage, a run killed with SIGKILL that finishes on the rerun
without redoing what it had finished, and bad input refused in one line that names the argument,
leaving nothing behind."""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from emseg.cli import main
from emseg.fit.run import STAGES, FitConfig, fit
from emseg.io import read_volume, write_volume
from emseg.synthetic import synthetic_em
from emseg.train import load_config

pytestmark = pytest.mark.usefixtures("one_thread")

MINUTES = "0.05"
ENV = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """raw.zarr and mito.zarr (16x96x96, 30x6x6 nm), and labels that cannot be trained on."""
    folder = tmp_path_factory.mktemp("fit_data")
    em = synthetic_em((16, 96, 96), seed=0)
    vs = em.voxel_size
    write_volume(str(folder / "raw.zarr"), em.raw, voxel_size=vs)
    write_volume(str(folder / "mito.zarr"), em.mito, voxel_size=vs)
    write_volume(str(folder / "small.zarr"), em.mito[:8], voxel_size=vs)
    write_volume(str(folder / "zero.zarr"), np.zeros_like(em.mito), voxel_size=vs)
    part = em.mito.copy()
    part[10:] = 0
    write_volume(str(folder / "part.zarr"), part, voxel_size=vs)
    return folder


def _fit(data, out, *args, labels="mito.zarr"):
    """``emseg fit`` in this process: (rc, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["fit", str(data / "raw.zarr"), str(data / labels), str(out), "--minutes", MINUTES,
                   "--no-progress", *args])
    return rc, stdout.getvalue(), stderr.getvalue()


def _state(out):
    with open(os.path.join(out, "fit.json")) as f:
        return json.load(f)


def _snapshot(folder):
    """Every file under ``folder`` with its size and mtime."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            st = os.stat(p)
            found[os.path.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory):
    """One finished fit: (OUT_DIR, its stdout)."""
    out = tmp_path_factory.mktemp("fitted") / "run"
    rc, stdout, stderr = _fit(data, out)
    assert rc == 0, stderr
    return out, stdout


def test_fit_writes_the_model_card_segment_uses(fitted, data, tmp_path):
    out, stdout = fitted
    for name in ("fit.json", "plan.yaml", "train", "tuning.json", "model.safetensors", "model.json"):
        assert os.path.exists(out / name), name
    assert not os.path.exists(out / ".timing")
    assert set(_state(out)["stages"]) == set(STAGES)
    for i, stage in enumerate(STAGES):
        assert f"[{i + 1}/4] {stage}:" in stdout
    card = json.loads((out / "model.json").read_text())
    assert card["made_by"] == "emseg fit" and card["target"] == "bc"
    post = card["postprocess"]
    assert post["method"] == "bc" and {"params", "min_size", "z_filter", "tta"} <= set(post)
    assert card["tuning"]["tuned"] >= card["tuning"]["defaults"]
    assert card["weights"]["file"] == "model.safetensors" and card["input_voxel_size_nm"] == [30.0, 6.0, 6.0]
    tuning = json.loads((out / "tuning.json").read_text())
    assert tuning["postprocess"] == post
    c = load_config(str(out / "plan.yaml"))
    assert c.raw == (str(data / "raw.zarr"),) and c.max_minutes == float(MINUTES)

    seg = tmp_path / "seg.zarr"
    assert main(["segment", str(data / "raw.zarr"), str(seg), "--model", str(out), "--no-progress"]) == 0
    labels = read_volume(str(seg))
    assert labels.shape == (16, 96, 96) and np.issubdtype(labels.dtype, np.integer)


def test_an_unfinished_folder_is_no_model(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "fit.json").write_text("{}")
    write_volume("raw.zarr", np.zeros((2, 16, 16), np.uint8))
    assert main(["segment", "raw.zarr", "seg.zarr", "--model", str(tmp_path / "half")]) == 2
    assert "an unfinished fit" in capsys.readouterr().err and not os.path.exists("seg.zarr")


def test_a_second_identical_fit_keeps_every_stage(fitted, data):
    out, _ = fitted
    before = _snapshot(out)
    rc, stdout, stderr = _fit(data, out)
    assert rc == 0, stderr
    for i, stage in enumerate(STAGES):
        assert f"[{i + 1}/4] {stage}: finished before, kept" in stdout
    assert "trained" not in stdout and "measured" not in stdout
    after = _snapshot(out)
    assert after["train/log.csv"] == before["train/log.csv"]            # not retrained
    assert after["model.safetensors"] == before["model.safetensors"]
    assert {k: v for k, v in after.items() if k != "fit.json"} == {k: v for k, v in before.items() if k != "fit.json"}

    r = fit(FitConfig(str(data / "raw.zarr"), str(data / "mito.zarr"), str(out), minutes=float(MINUTES)))
    assert r.resumed == STAGES and r.card["made_by"] == "emseg fit"
    assert _snapshot(out)["train/log.csv"] == before["train/log.csv"]


def test_other_minutes_on_the_same_folder_are_refused(fitted, data):
    out, _ = fitted
    before, state = _snapshot(out), _state(out)
    rc, _, err = _fit(data, out, "--minutes", "0.2")
    assert rc == 2
    assert "minutes" in err and f"was {MINUTES}, now 0.2" in err and "--overwrite" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert _snapshot(out) == before and _state(out) == state


def test_overwrite_starts_over(fitted, data, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(fitted[0], out)  # the signature names the inputs and options, not OUT_DIR
    old = _state(out)["stages"]["train"]
    rc, stdout, err = _fit(data, out, "--minutes", "0.03", "--overwrite")
    assert rc == 0, err
    assert "finished before" not in stdout
    state = _state(out)
    assert state["signature"]["options"]["minutes"] == 0.03 and set(state["stages"]) == set(STAGES)
    assert state["stages"]["train"] != old


def test_overwrite_deletes_only_the_fits_files(fitted, data, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(fitted[0], out)
    (out / "notes.txt").write_text("mine")
    rc, _, err = _fit(data, out, "--minutes", "0.03", "--overwrite")
    assert (out / "notes.txt").read_text() == "mine"
    assert rc == 0, err
    assert set(_state(out)["stages"]) == set(STAGES)


def test_a_folder_of_foreign_files_is_refused_and_left_untouched(data, tmp_path):
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    rc, _, err = _fit(data, out)
    assert rc == 2 and "notes.txt" in err and "no fit.json" in err and err.count("\n") == 1
    assert sorted(os.listdir(out)) == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


# SIGKILL: a real `python -m emseg fit` process, killed while training

def _start_fit(data, out, minutes=MINUTES):
    return subprocess.Popen([sys.executable, "-m", "emseg", "fit", str(data / "raw.zarr"), str(data / "mito.zarr"),
                             str(out), "--minutes", minutes, "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)


def _kill_when(proc, ready, timeout=90):
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"emseg fit ended (rc {proc.returncode}) before the kill point: {proc.stderr.read()}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("the kill point was never reached")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _rows(path):
    try:
        with open(path) as f:
            return len(f.read().splitlines()) - 1
    except FileNotFoundError:
        return 0


def test_a_fit_killed_while_training_finishes_on_the_rerun_without_replanning(data, tmp_path):
    out = tmp_path / "killed"
    proc = _start_fit(data, out)
    _kill_when(proc, lambda: _rows(out / "train" / "log.csv") >= 1)
    killed = _state(out)
    assert set(killed["stages"]) == {"plan"}  # the plan was finished, training was not
    assert not os.path.exists(out / "model.json")

    rc, stdout, err = _fit(data, out)
    assert rc == 0, err
    assert "[1/4] plan: finished before, kept" in stdout and "measured" not in stdout
    assert "[2/4] train: finished before" not in stdout and "trained" in stdout
    state = _state(out)
    assert set(state["stages"]) == set(STAGES)
    assert state["stages"]["plan"] == killed["stages"]["plan"]  # not redone
    assert os.path.exists(out / "model.json") and not os.path.exists(out / ".timing")
    # and a third call has nothing left to do
    rc, stdout, _ = _fit(data, out)
    assert rc == 0 and stdout.count("finished before, kept") == 4


def test_a_fit_killed_after_a_training_checkpoint_resumes_training_there(data, tmp_path):
    """The plan checkpoints about every tenth of the run, so a kill costs at most that much training."""
    out = tmp_path / "killed"
    proc = _start_fit(data, out, minutes="0.2")  # on a busy CPU 0.05 minutes hold too few steps for a checkpoint
    # before the last ones (checkpoints come at least 20 steps apart)
    state_file = out / "train" / "latest.state.safetensors"
    _kill_when(proc, lambda: state_file.exists() and _rows(out / "train" / "log.csv") < _planned_steps(out) - 5)
    assert set(_state(out)["stages"]) == {"plan"}
    rc, stdout, err = _fit(data, out, "--minutes", "0.2")
    assert rc == 0, err
    assert "(resumed at step " in stdout and "resumed at step 0" not in stdout
    assert set(_state(out)["stages"]) == set(STAGES)


def _planned_steps(out):
    import yaml

    try:
        with open(out / "plan.yaml") as f:
            return int(yaml.safe_load(f)["steps"])
    except (OSError, TypeError, KeyError):
        return 0


def test_a_fit_killed_while_measuring_a_step_finishes_on_the_rerun(data, tmp_path):
    out = tmp_path / "killed"
    proc = _start_fit(data, out)
    _kill_when(proc, lambda: os.path.isdir(out / ".timing"))
    assert _state(out)["stages"] == {}
    rc, stdout, err = _fit(data, out)
    assert rc == 0, err
    assert set(_state(out)["stages"]) == set(STAGES)


# bad input: one line naming the argument, nothing left behind

@pytest.mark.parametrize("labels, args, message", [
    ("small.zarr", [], ["small.zarr", "(8, 96, 96)", "raw.zarr", "(16, 96, 96)"]),
    ("zero.zarr", [], ["labels", "zero.zarr", "hold no foreground"]),
    ("part.zarr", ["--val", "12:16"], ["--val 12:16", "part.zarr", "no foreground in sections 12-15",
                                       "labelled: 0:10"]),
    ("mito.zarr", ["--val", "14:20"], ["--val 14:20", "outside the volume's 16 sections"]),
    ("mito.zarr", ["--minutes", "0.0001"], ["--minutes 0.0001", "too short for one training step",
                                            "one step of the smallest plan takes", "s here"]),
    ("mito.zarr", ["--init", "no-such-model"], ["--init no-such-model", "shipped:", "mito-fibsem"]),
], ids=["shape", "no-foreground", "val-unlabelled", "val-outside", "budget", "init"])
def test_bad_input_is_one_line_naming_the_argument(data, tmp_path, labels, args, message):
    out = tmp_path / "out"
    rc, _, err = _fit(data, out, *args, labels=labels)
    assert rc == 2
    assert err.startswith("emseg fit: error: ") and err.count("\n") == 1 and "Traceback" not in err
    for part in message:
        assert part in err, (part, err)
    assert not os.path.exists(out)  # no OUT_DIR when there was none


def test_bad_input_in_a_folder_holding_another_run_leaves_it_as_it_was(fitted, data):
    out, _ = fitted
    before = _snapshot(out)
    rc, _, err = _fit(data, out, labels="zero.zarr")
    assert rc == 2 and "OUT_DIR" in err and "labels" in err and err.count("\n") == 1
    assert _snapshot(out) == before


def test_bad_input_in_an_empty_folder_leaves_it_empty(data, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    rc, _, err = _fit(data, out, labels="zero.zarr")
    assert rc == 2 and "hold no foreground" in err
    assert os.listdir(out) == []


# emseg plan

def test_plan_writes_a_config_train_reads(data, capsys):
    argv = ["plan", str(data / "raw.zarr"), str(data / "mito.zarr"), "--out", "p.yaml", "--minutes", "5",
            "--no-measure"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "# dimensionality: 2D on sections" in out and "written to p.yaml" in out
    c = load_config("p.yaml")
    assert c.raw == (str(data / "raw.zarr"),) and c.labels == (str(data / "mito.zarr"),)
    assert c.target == "bc" and c.max_minutes == 5.0 and c.out_dir == os.path.join("runs", "p")
    assert main(argv) == 2
    assert "--out p.yaml exists" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
