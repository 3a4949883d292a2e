"""Fault injection for ``emseg train``: real ``python -m emseg train CONFIG`` processes, real signals, real files.

A tiny U-Net trains for 40 steps on a synthetic volume (about a second of training after about
three seconds of start-up, mostly importing torch). A clean run is the reference; every other run
must end in bit-identical weights (compared tensor by tensor) and the same logged losses, whatever
happened to it: SIGKILL at points spread over the run, SIGINT. A rerun with another input or
option refuses and names the field; ``--overwrite`` starts over and deletes only the trainer's
files; a bad config ends in one line naming the culprit, never a traceback. Failures that need
no new process (every config check, a corrupt state file, a diverging loss) are in tests/train.
"""

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from emseg.config import ExecutionConfig
from emseg.synthetic import synthetic_em
from emseg.io import write_volume

from harness import wait_for

STEPS = 40


def _config(folder, name, out, **changes):
    """A YAML config in ``folder``: the tiny run, with ``changes``."""
    import yaml

    config = dict(raw=[f"{folder}/raw.h5:raw"], labels=[f"{folder}/labels.h5:mito"], val_roi="6:8",
                  patch_shape=[64, 64], batch_size=4, model={"features": 4, "depth": 2}, steps=STEPS, warmup_steps=2,
                  val_every=4, val_patches=2, threads=1, device="cpu", out_dir=str(out))
    config.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train_runs")
    em = synthetic_em((8, 64, 64), seed=5)
    write_volume(folder / "raw.h5:raw", em.raw, voxel_size=em.voxel_size)
    write_volume(folder / "labels.h5:mito", em.mito, voxel_size=em.voxel_size)
    return folder


def _cmd(config, *args):
    return [sys.executable, "-m", "emseg", "train", str(config), "--no-progress", *args]


def _run(config, *args, timeout=120, env=None):
    return subprocess.run(_cmd(config, *args), capture_output=True, text=True, timeout=timeout, env=env)


def _start(config, *args):
    # the default SIGINT disposition, even when the test runner was started with SIGINT ignored
    return subprocess.Popen(_cmd(config, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _rows(log):
    try:
        with open(log, newline="") as f:
            return list(csv.DictReader(f))
    except (FileNotFoundError, csv.Error):
        return []


def _tensors(path):
    from safetensors.numpy import load_file

    return load_file(str(path))


def _assert_identical(a, b):
    ta, tb = _tensors(a), _tensors(b)
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape, k
        assert ta[k].tobytes() == tb[k].tobytes(), f"{k} differs between {a} and {b}"


def _assert_like_clean(out, clean):
    _assert_identical(out / "latest.safetensors", clean / "latest.safetensors")
    _assert_identical(out / "best.safetensors", clean / "best.safetensors")
    got, ref = _rows(out / "log.csv"), _rows(clean / "log.csv")
    assert [(r["step"], r["loss"], r["lr"], r["val_loss"]) for r in got] == \
           [(r["step"], r["loss"], r["lr"], r["val_loss"]) for r in ref]


def _one_line_error(proc, *names):
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("emseg train: error: "), err
    for name in names:
        assert name in err, (name, err)
    return err


def _folder_digest(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def clean(data):
    """The reference run; it also lists the fault points it passes (``emseg.faults``) in points.txt."""
    out = data / "clean"
    proc = _run(_config(data, "clean", out), env={**os.environ, "EMSEG_FAULTS": f"count:{data / 'points.txt'}"})
    assert proc.returncode == 0, proc.stderr
    assert len(_rows(out / "log.csv")) == STEPS
    return out


def _log_rewritten_with(proc, log, rows, old_inode):
    """A condition for ``wait_for``: ``log`` (rewritten by this process: another inode) has ``rows`` rows,
    or the process ended."""
    def ready():
        if proc.poll() is not None:
            return True
        try:
            fresh = os.stat(log).st_ino != old_inode
        except FileNotFoundError:
            fresh = False
        return fresh and len(_rows(log)) >= rows

    return ready


def _inode(path):
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _interrupt(proc, out):
    """SIGINT: exit 130 within seconds with one true line; returns the step it reports as saved."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 130, err
    err = err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "interrupted at step" in err and "checkpoint saved" in err and "run the same command again" in err, err
    step = int(err.split("interrupted at step ")[1].split()[0])
    from emseg.models import read_model_header

    assert read_model_header(str(out / "latest.safetensors")).extra["step"] == step  # the message is true
    assert int(_rows(out / "log.csv")[-1]["step"]) == step
    return step


def _step(point):
    return int(point.split(":")[1]) if ":" in point else 0


def _saved_steps(out):
    """(step of the trainer state, step of latest.safetensors); 0 for a missing file."""
    from emseg.models import read_model_header
    from emseg.models.checkpoint import read_safetensors_header

    state, latest = out / "latest.state.safetensors", out / "latest.safetensors"
    s = dict(json.loads(read_safetensors_header(state)[0]["state"])["dict"])["step"] if state.exists() else 0
    return s, read_model_header(latest).extra["step"] if latest.exists() else 0


def test_sigkill_and_sigint_at_points_spread_over_the_run_then_rerun_is_bit_identical(data, clean):
    """One run folder, stopped again and again, each time rerun with the same command. The SIGKILLs
    land at fault points of the clean run (``EMSEG_FAULTS=kill:N``, a real SIGKILL): right after
    run.json is written, between best.safetensors and the state, at the step 45% through the run,
    between the state and latest.safetensors around 80% and at the very last step; a SIGINT comes
    from outside after 60% of the steps. The last rerun finishes bit-identical to the clean run.
    The out_dir starts with a file of the user's, which every run keeps."""
    points = (data / "points.txt").read_text().split()
    states = [p for p in points if p.startswith("train.state:")]
    plan = ["train.run_json", next(p for p in points if p.startswith("train.best:")), points[45 * len(points) // 100],
            "sigint", min(states, key=lambda p: abs(_step(p) - 0.8 * STEPS)), states[-1]]
    out = data / "stopped"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    config = _config(data, "stopped", out)
    for target in plan:
        resumed, _ = _saved_steps(out)
        if target == "sigint":
            proc = _start(config)
            wait_for(_log_rewritten_with(proc, out / "log.csv", 3 * STEPS // 5, _inode(out / "log.csv")),
                     what=f"{3 * STEPS // 5} rows in the rewritten log.csv")
            assert 3 * STEPS // 5 <= _interrupt(proc, out) < STEPS
            continue
        fresh = not (out / "run.json").exists()
        passes = (["train.run_json"] if fresh else []) + [p for p in points if _step(p) > resumed]
        proc = _run(config, env={**os.environ, "EMSEG_FAULTS": f"kill:{passes.index(target) + 1}"})
        assert proc.returncode == -signal.SIGKILL, (target, proc.stderr)
        state, latest = _saved_steps(out)
        if target.startswith("train.state:"):  # killed between the two writes: latest is a checkpoint behind
            assert state == _step(target) and latest < state, (target, state, latest)
        else:
            assert latest == state, (target, state, latest)
    proc = _run(config)
    assert proc.returncode == 0, proc.stderr
    _assert_like_clean(out, clean)
    assert (out / "notes.txt").read_text() == "mine"
    assert not [n for n in os.listdir(out) if n.startswith(".emseg-partial-") or n.endswith(".partial")]


def test_rerun_with_another_input_or_option_refuses_and_names_the_field(data, clean):
    out = data / "refuse"
    shutil.copytree(clean, out)
    before = _folder_digest(out)
    other_raw = data / "other_raw.h5"
    shutil.copy(data / "raw.h5", other_raw)  # the same content in another file
    em = synthetic_em((8, 64, 64), seed=5)
    mito = em.mito.copy()
    mito[0, :8, :8] = 1
    write_volume(f"{data}/changed_labels.h5:mito", mito, voxel_size=em.voxel_size)
    cases = [
        (_config(data, "lr", out, lr=0.002), "options.lr"),
        (_config(data, "raw", out, raw=[f"{other_raw}:raw"]), "inputs.raw[0].path"),
        (_config(data, "labels", out, labels=[f"{data}/changed_labels.h5:mito"]), "inputs.labels[0]"),
        (_config(data, "target", out, target="bc"), "options.target"),
        (_config(data, "patch", out, patch_shape=[32, 32]), "options.patch_shape"),
    ]
    for config, field in cases:
        err = _one_line_error(_run(config), field, "--overwrite", str(out))
        assert "was started by another run" in err
    assert _folder_digest(out) == before  # nothing was touched (what may change on resume: tests/train)


def test_overwrite_starts_over_and_deletes_only_the_trainers_files(data, clean):
    """--overwrite replaces another run, keeps every file of the user's; then the labels' content
    changes in place (same path): the rerun refuses, naming the fingerprint."""
    out = data / "overwrite"
    shutil.copytree(clean, out)
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "latest.safetensors").write_text("not the trainer's")
    (out / "tensorboard").mkdir()
    (out / "tensorboard" / "my_plot.png").write_text("mine")
    (out / "latest.safetensors.state").write_text("the pickled state of an older emseg")
    labels = data / "overwrite_labels.h5"
    shutil.copy(data / "labels.h5", labels)
    config = _config(data, "overwrite", out, steps=4, lr=0.002, labels=[f"{labels}:mito"])
    _one_line_error(_run(config), "options.lr")
    proc = _run(config, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert [r["step"] for r in _rows(out / "log.csv")] == ["1", "2", "3", "4"]
    assert '"lr": 0.002' in (out / "run.json").read_text()
    assert not (out / "latest.safetensors.state").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "mine" / "latest.safetensors").read_text() == "not the trainer's"
    assert (out / "tensorboard" / "my_plot.png").read_text() == "mine"
    em = synthetic_em((8, 64, 64), seed=5)
    mito = em.mito.copy()
    mito[0, :8, :8] = 1
    write_volume(f"{labels}:mito", mito, voxel_size=em.voxel_size, execution=ExecutionConfig(overwrite=True))
    _one_line_error(_run(config), "inputs.labels[0].fingerprint")


def test_a_folder_of_an_older_emseg_or_of_other_files_is_not_resumed(data, clean):
    old = data / "old_run"
    old.mkdir()
    shutil.copy(clean / "latest.safetensors", old / "latest.safetensors")
    (old / "latest.safetensors.state").write_bytes(b"\x80\x04 a pickle")
    (old / "log.csv").write_text("step,loss\n")
    before = _folder_digest(old)
    _one_line_error(_run(_config(data, "old", old)), "no run.json", "--overwrite", "old_run")
    assert _folder_digest(old) == before
    (data / "a_file").write_text("x")
    _one_line_error(_run(_config(data, "file", data / "a_file")), "is a file")


BAD = {  # name: (config changes, what the message names)
    "val_every 0": (dict(val_every=0), ["val_every", "bad.yaml", ">= 1"]),
    "lr a list": (dict(lr=[1, 2]), ["lr must be a number"]),
    "patch_shape 1 number": (dict(patch_shape=[64]), ["patch_shape"]),
    "foreground_fraction 2": (dict(foreground_fraction=2), ["foreground_fraction", "[0, 1]"]),
    "augment a string": (dict(augment="no"), ["augment", "true or false"]),
    "unknown key": (dict(lr_rate=0.1), ["lr_rate", "valid keys"]),
}


def test_bad_configs_end_in_one_line_naming_the_culprit(data):
    for name, (changes, names) in BAD.items():
        _one_line_error(_run(_config(data, "bad", data / "bad_out", **changes)), *names)
    unquoted = _config(data, "unquoted", data / "bad_out")
    unquoted.write_text(unquoted.read_text().replace("val_roi: '6:8'", "val_roi: 6:8"))  # YAML: 6*60 + 8
    _one_line_error(_run(unquoted), "val_roi", "quote")
    broken = data / "broken.yaml"
    broken.write_text("raw: [a.h5:raw\nlabels: [b.h5:labels]\nsteps: 3\n")
    _one_line_error(_run(broken), "broken.yaml", "line 2")
    listed = data / "listed.yaml"
    listed.write_text("- raw: a\n- steps: 3\n")
    _one_line_error(_run(listed), "listed.yaml", "mapping")
    _one_line_error(_run(data / "missing.yaml"), "missing.yaml", "does not exist")
    assert not (data / "bad_out").exists()  # nothing was created for a config that fails


def test_nan_raw_ends_in_one_line_naming_the_file(data):
    em = synthetic_em((8, 64, 64), seed=5)
    raw = em.raw.astype(np.float32)
    raw[3, 20:30, 20:30] = np.nan
    write_volume(data / "nan_raw.h5:raw", raw)
    config = _config(data, "nan", data / "nan_out", raw=[f"{data}/nan_raw.h5:raw"])
    _one_line_error(_run(config), "nan_raw.h5", "NaN", "(3, 20, 20)")
