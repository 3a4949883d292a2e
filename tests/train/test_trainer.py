"""Trainer: a tiny model learns, checkpoints reload to identical outputs, a killed run resumes
exactly, and bad configs fail clearly."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from emseg.synthetic import synthetic_em
from emseg.io import write_volume
from emseg.train import load_config, train


@pytest.fixture
def tiny_data(tmp_path):
    em = synthetic_em((12, 96, 96), seed=3)
    write_volume(tmp_path / "em.h5:raw", em.raw, voxel_size=em.voxel_size)
    write_volume(tmp_path / "em.h5:mito", em.mito, voxel_size=em.voxel_size)
    return str(tmp_path / "em.h5")


def _config(data, out, **kw):
    base = dict(raw=[f"{data}:raw"], labels=[f"{data}:mito"], val_roi="10:12", patch_shape=[32, 32], batch_size=2,
                model={"features": 4, "depth": 2}, steps=12, val_every=4, val_patches=2, threads=1, out_dir=str(out),
                warmup_steps=2, device="cpu")
    base.update(kw)
    return load_config(**base)


def _losses(out):
    with open(os.path.join(out, "log.csv")) as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_train_writes_checkpoints_and_log(tiny_data, tmp_path):
    result = train(_config(tiny_data, tmp_path / "run"))
    assert result.steps == 12 and os.path.exists(result.latest) and result.best
    losses = _losses(tmp_path / "run")
    assert len(losses) == 12 and all(np.isfinite(losses))
    from emseg.models import load_model

    model = load_model(result.best)
    import torch

    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(load_model(result.best)(x), model(x))  # load → identical outputs


def test_killed_run_resumes_exactly(tiny_data, tmp_path):
    """SIGKILL a run after its first checkpoint; the resumed run's losses equal an uninterrupted run's."""
    ref = tmp_path / "ref"
    train(_config(tiny_data, ref))
    cfg = _config(tiny_data, tmp_path / "killed", steps=12)
    with open(tmp_path / "c.json", "w") as f:
        json.dump(cfg.as_dict(), f)
    code = ("import json, sys; from emseg.train import load_config, train\n"
            "c = load_config(**json.load(open(sys.argv[1])))\n"
            "import emseg.train.checkpoints as t\n"
            "orig = t.export_model\n"
            "def slow(path, *a, **k):\n    orig(path, *a, **k)\n"
            "    if path.endswith('latest.safetensors'):\n        import time; time.sleep(30)\n"  # stall: kill it here
            "t.export_model = slow\n"
            "train(c)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "c.json")])
    state = tmp_path / "killed" / "latest.state.safetensors"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the run never wrote a checkpoint"
    partial = _losses(tmp_path / "killed")
    assert len(partial) < 12
    train(cfg)  # resume
    np.testing.assert_allclose(_losses(tmp_path / "killed"), _losses(ref), rtol=1e-5, atol=1e-6)


def test_config_errors(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="unknown config key.*valid keys: raw, labels"):
        load_config(lr_rate=1)
    with pytest.raises(ValueError, match="target must be one of"):
        load_config(target="cells")
    write_volume(tmp_path / "odd.h5:raw", np.zeros((4, 20, 20), np.uint8))
    write_volume(tmp_path / "odd.h5:labels", np.zeros((4, 20, 21), np.uint8))
    with pytest.raises(ValueError, match="labels .* have shape .* but raw .* has"):
        train(load_config(raw=[f"{tmp_path}/odd.h5:raw"], labels=[f"{tmp_path}/odd.h5:labels"], val_fraction=0,
                          out_dir=str(tmp_path / "o")))
    write_volume(tmp_path / "empty.h5:raw", np.zeros((4, 20, 20), np.uint8))
    write_volume(tmp_path / "empty.h5:labels", np.zeros((4, 20, 20), np.uint8))
    with pytest.raises(ValueError, match="no foreground"):
        train(load_config(raw=[f"{tmp_path}/empty.h5:raw"], labels=[f"{tmp_path}/empty.h5:labels"], val_fraction=0,
                          out_dir=str(tmp_path / "o")))
    with pytest.raises(ValueError, match="patch_shape .* is larger than the region"):
        train(_config(tiny_data, tmp_path / "big", patch_shape=[128, 128]))


def test_cli_train_with_yaml_and_set(tiny_data, tmp_path, capsys):
    from emseg.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"raw: ['{tiny_data}:raw']\nlabels: ['{tiny_data}:mito']\nval_roi: '10:12'\n"
                   "patch_shape: [32, 32]\nbatch_size: 2\nmodel: {features: 4, depth: 2}\nval_patches: 2\n")
    assert main(["train", str(cfg), "--set", "steps=4", "--set", "val_every=2", "--set", "target=bc",
                 "--device", "cpu", "--threads", "1", "--out-dir", str(tmp_path / "cli"), "--no-progress"]) == 0
    assert "trained 4 steps" in capsys.readouterr().out
    from emseg.models import read_model_header

    header = read_model_header(str(tmp_path / "cli" / "latest.safetensors"))
    assert header.init_args["out_channels"] == 2 and header.extra["config"]["target"] == "bc"
    assert main(["train", str(cfg), "--set", "bogus=1"]) == 2
    assert "valid keys" in capsys.readouterr().err


# ---------------------------------------------------------------- config checks (issue 12)

@pytest.mark.parametrize("key, value, expected", [
    ("val_every", 0, "val_every must be an integer >= 1"),
    ("steps", 0, "steps must be an integer >= 1"),
    ("steps", 2.5, "steps must be an integer"),
    ("steps", True, "steps must be an integer"),
    ("batch_size", 0, "batch_size must be an integer >= 1"),
    ("lr", 0, "lr must be a positive number"),
    ("lr", -1e-3, "lr must be a positive number"),
    ("lr", float("inf"), "lr must be a positive number"),
    ("lr", "fast", "lr must be a number"),
    ("lr", [1, 2], "lr must be a number"),
    ("warmup_steps", -1, "warmup_steps must be an integer >= 0"),
    ("val_fraction", 1.0, r"val_fraction must be in \[0, 1\)"),
    ("val_fraction", -0.1, r"val_fraction must be in \[0, 1\)"),
    ("foreground_fraction", 1.5, r"foreground_fraction must be in \[0, 1\]"),
    ("patch_shape", [0, 32], "patch_shape must be 2 or 3 positive ints"),
    ("patch_shape", [32], "patch_shape must be 2 or 3 positive ints"),
    ("patch_shape", 32, "patch_shape must be 2 or 3 positive ints"),
    ("max_minutes", 0, "max_minutes must be a positive number"),
    ("threads", 0, "threads must be an integer >= 1"),
    ("seed", -1, "seed must be an integer >= 0"),
    ("augment", "no", "augment must be true or false"),
    ("overwrite", 1, "overwrite must be true or false"),
    ("normalization", "zscore", "normalization must be one of"),
    ("loss", "focal", "loss must be one of"),
    ("val_roi", 612, "quote it"),
    ("val_roi", "5-6", "val_roi must be a z range"),
    ("offsets", [[0, 0, 0]], "zero offset"),
    ("voxel_size", [0, 4, 4], "voxel_size must be 2 or 3 positive numbers"),
    ("model", [4], "model must be a mapping"),
    ("raw", [3], "raw must be a path or a list of paths"),
])
def test_config_values_are_checked(key, value, expected):
    with pytest.raises(ValueError, match=expected):
        load_config(**{key: value})
    with pytest.raises(ValueError, match=f"^--set {key}=.*{expected}"):  # the message says where it came from
        load_config(overrides=[f"{key}={json.dumps(value)}"])  # JSON is YAML


def test_config_numbers_from_yaml_strings_and_losses_list():
    from emseg.train import config, losses

    assert config.LOSSES == losses.LOSSES  # kept in config without importing torch
    c = load_config(overrides=["lr=3e-4", "steps=1e3"])  # PyYAML reads 3e-4 and 1e3 as strings
    assert c.lr == 3e-4 and c.steps == 1000 and isinstance(c.steps, int)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 3\nraw: [a.h5:raw\nlabels: [b]\n")
    with pytest.raises(ValueError, match=r"bad.yaml' is not valid YAML: line 3, column 7"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- steps: 3\n")
    with pytest.raises(ValueError, match="list.yaml' holds a YAML list; a config is a mapping"):
        load_config(listed)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="is a folder"):
        load_config(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ValueError, match="not a text"):
        load_config(binary)
    ok = tmp_path / "ok.yaml"
    ok.write_text("val_every: 0\n")
    with pytest.raises(ValueError, match="ok.yaml: val_every must be an integer >= 1; got 0"):
        load_config(ok)
    with pytest.raises(ValueError, match=r"--set patch_shape=\[32,: the value is not valid YAML"):
        load_config(overrides=["patch_shape=[32,"])
    with pytest.raises(ValueError, match="--set lr.x=1: lr is 0.1, not a mapping"):
        load_config(overrides=["lr=0.1", "lr.x=1"])


def test_model_arguments_are_checked(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="model.featuers is not a UNet argument"):
        train(_config(tiny_data, tmp_path / "a", model={"featuers": 4}))
    with pytest.raises(ValueError, match=r"patch_shape \[34, 34\].*not divisible by \(4, 4\)"):
        train(_config(tiny_data, tmp_path / "b", patch_shape=[34, 34]))
    with pytest.raises(ValueError, match="features must be"):
        train(_config(tiny_data, tmp_path / "c", model={"features": -1}))
    assert not (tmp_path / "a").exists()  # nothing was written for a run that could not start


def test_diverging_loss_stops_and_names_the_step(tiny_data, tmp_path):
    with pytest.raises(ValueError, match=r"loss became nan at step \d+; check the raw data for NaN values or "
                                         r"lower lr \(now 1e\+30\)"):
        train(_config(tiny_data, tmp_path / "run", lr=1e30))


# ---------------------------------------------------------------- the run folder (issue 12)

def test_state_is_safetensors_and_json_without_pickle(tiny_data, tmp_path):
    import struct

    train(_config(tiny_data, tmp_path / "run", steps=4))
    data = (tmp_path / "run" / "latest.state.safetensors").read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    metadata = json.loads(data[8:8 + n])["__metadata__"]
    assert metadata["format"] == "emseg-train-state"
    tree = json.loads(metadata["state"])  # plain JSON: the structure; the tensors are safetensors
    assert "optimizer" in json.dumps(tree) and not (tmp_path / "run" / "latest.safetensors.state").exists()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["signature"]["options"]["lr"] == 1e-3


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other_run"])
def test_corrupt_state_names_the_file_and_the_fix(tiny_data, tmp_path, damage):
    cfg = _config(tiny_data, tmp_path / "run", steps=4)
    train(cfg)
    state = tmp_path / "run" / "latest.state.safetensors"
    if damage == "truncate":
        state.write_bytes(state.read_bytes()[:-100])
    elif damage == "garbage":
        state.write_bytes(b"\x80\x04garbage of a pickle")
    else:  # another run's state under this run's run.json
        train(_config(tiny_data, tmp_path / "other", steps=4, lr=2e-3))
        state.write_bytes((tmp_path / "other" / "latest.state.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"training state .*latest.state.safetensors.*delete the run folder or "
                                         r"pass --overwrite to start over"):
        train(_config(tiny_data, tmp_path / "run", steps=8))


def test_resume_may_change_steps_val_every_threads_but_nothing_else(tiny_data, tmp_path):
    from emseg.runs import RunMismatchError

    out = tmp_path / "run"
    train(_config(tiny_data, out, steps=8))
    again = train(_config(tiny_data, out, steps=12, val_every=2, threads=2, max_minutes=5.0, early_stopping=3))
    assert again.start_step == 8 and again.steps == 12
    with pytest.raises(RunMismatchError, match=r"options.batch_size \(was 2, now 3\).*--overwrite"):
        train(_config(tiny_data, out, steps=12, batch_size=3))
    with pytest.raises(ValueError, match="resume is false; set resume: true"):
        train(_config(tiny_data, out, steps=12, resume=False))
    fresh = train(_config(tiny_data, out, steps=4, batch_size=3, overwrite=True))
    assert fresh.start_step == 0 and len(_losses(out)) == 4


def test_latest_older_than_the_state_is_written_again(tiny_data, tmp_path):
    """A SIGKILL between the state and the model leaves latest one checkpoint behind: the rerun repairs it."""
    from emseg.models import read_model_header

    out = tmp_path / "run"
    train(_config(tiny_data, out))
    from safetensors.numpy import load_file

    finished = load_file(out / "latest.safetensors")
    (out / "latest.safetensors").write_bytes((out / "best.safetensors").read_bytes())  # an older step
    result = train(_config(tiny_data, out))
    assert result.start_step == 12 and read_model_header(str(out / "latest.safetensors")).extra["step"] == 12
    repaired = load_file(out / "latest.safetensors")
    assert all(repaired[k].tobytes() == finished[k].tobytes() for k in finished)


def test_a_second_trainer_on_the_same_folder_is_refused(tiny_data, tmp_path):
    from emseg.io.lock import output_lock

    out = tmp_path / "run"
    out.mkdir()
    with output_lock(out):  # held by this process, as a running trainer holds it
        with pytest.raises(FileExistsError, match=r"out_dir '.*run' is being written by process \d+"):
            train(_config(tiny_data, out, steps=2))
    train(_config(tiny_data, out, steps=2))  # released: it runs
