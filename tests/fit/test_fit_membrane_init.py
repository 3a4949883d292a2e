"""``emseg fit RAW NEURON_IDS OUT --init membrane-sstem``: a membrane model fine-tuned on dense neuron ids
keeps its boundary output (the boundaries between the ids), its output layer loads, the tuning scores
the watershed's neurons by VOI, and ``emseg segment --model OUT`` cuts neurons with it."""

import json

import numpy as np
import pytest

from emseg.io import read_volume, write_volume
from emseg.models.reader import read_checkpoint
from emseg.synthetic import synthetic_em
from emseg.tasks import get_task
from emseg.train import load_config
from emseg.train.boundary_targets import boundary_target

from conftest import run_cli as _run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_boundary_target_of_object_ids_is_the_boundaries_between_them():
    ids = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    t = get_task("boundary").target(ids, {"convention": "instances"}, None, None)
    assert np.array_equal(t.target, boundary_target(ids, convention="instances").target)
    assert t.target[0, :, 1:3].all() and not t.target[0, :, [0, 3]].any()
    isbi = get_task("boundary").target(np.array([[255, 0, 255]], np.uint8), {"convention": "isbi"}, None, None)
    assert isbi.target[0].tolist() == [[0.0, 1.0, 0.0]]


def test_a_membrane_model_fine_tuned_on_neuron_ids_keeps_its_output(tmp_path, monkeypatch):
    import emseg.train.trainer as trainer

    reports, init_weights = [], trainer.init_weights
    monkeypatch.setattr(trainer, "init_weights", lambda model, init: reports.append(init_weights(model, init))
                        or reports[-1])
    em = synthetic_em((10, 96, 96), seed=3)
    write_volume(str(tmp_path / "raw.zarr"), em.raw, voxel_size=em.voxel_size)
    write_volume(str(tmp_path / "neurons.zarr"), em.neurons, voxel_size=em.voxel_size)
    out = tmp_path / "run"
    rc, _, err = _run("fit", str(tmp_path / "raw.zarr"), str(tmp_path / "neurons.zarr"), str(out), "--minutes",
                      "0.05", "--no-progress", "--init", "membrane-sstem", "--sections", "2,5,8")
    assert rc == 0, err
    c = load_config(str(out / "plan.yaml"))
    assert c.target == "boundary" and c.target_params == {"convention": "instances"}
    assert "convention: instances" in (out / "plan.yaml").read_text()
    info = read_checkpoint(str(out / "train" / "latest.safetensors"))
    assert info.task == "boundary" and info.task_params == {"convention": "instances"}
    assert reports and all(r.skipped == [] and "head.weight" in r.names for r in reports)  # its head too
    assert json.loads((out / "tuning.json").read_text())["objective"] == "-VOI"  # the neurons' score
    rc, _, err = _run("segment", str(tmp_path / "raw.zarr"), str(tmp_path / "seg.zarr"), "--model", str(out),
                      "--no-progress")
    assert rc == 0, err
    seg = read_volume(str(tmp_path / "seg.zarr"))
    assert seg.shape == em.neurons.shape and seg.dtype.kind in "iu"  # neuron ids (a 3-second model: any number)
