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

from emseg.data.synthetic import synthetic_em
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
            "import emseg.train.trainer as t\n"
            "orig = t._save\n"
            "def slow(path, *a, **k):\n    orig(path, *a, **k)\n"
            "    if path.endswith('latest.safetensors'):\n        import time; time.sleep(30)\n"  # stall: kill it here
            "t._save = slow\n"
            "train(c)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "c.json")])
    state = tmp_path / "killed" / "latest.safetensors.state"
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
