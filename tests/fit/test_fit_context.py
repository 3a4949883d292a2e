"""``emseg fit --context K`` (2.5D): the plan says it with its reason, the network takes 2k+1 sections,
the tuning predicts exactly what ``emseg segment`` will (each section with its real neighbours), an
``--init`` 2.5D model keeps its context, and a context the plan cannot use is refused."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from emseg.fit.planner import plan_training
from emseg.fit.tune_stage import predict_sections, read_sections
from emseg.io import write_volume
from emseg.models import UNet
from emseg.models.reader import read_checkpoint
from emseg.predict import predict_blockwise
from emseg.synthetic import synthetic_em
from emseg.train import load_config

from conftest import run_cli as _run
from test_planner import ISO, fingerprint, neurons  # noqa: E402 - the made-up fingerprints, one home

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit_context")
    em = synthetic_em((12, 96, 96), seed=1)
    write_volume(str(folder / "raw.zarr"), em.raw, voxel_size=em.voxel_size)
    write_volume(str(folder / "mito.zarr"), em.mito, voxel_size=em.voxel_size)
    return folder


def test_a_2_5d_fit_plans_trains_tunes_and_segments_with_its_context(data, tmp_path):
    out = tmp_path / "run"
    rc, _, err = _run("fit", str(data / "raw.zarr"), str(data / "mito.zarr"), str(out), "--minutes", "0.05",
                      "--no-progress", "--context", "1", "--sections", "2,5,9")
    assert rc == 0, err
    c = load_config(str(out / "plan.yaml"))
    assert c.context == 1 and len(c.patch_shape) == 2
    assert "context: 1  # the 1 section(s) above and below" in (out / "plan.yaml").read_text()
    assert read_checkpoint(str(out / "train" / "latest.safetensors")).context == 1
    assert json.loads((out / "tuning.json").read_text())["tuned"] is not None
    rc, _, err = _run("segment", str(data / "raw.zarr"), str(tmp_path / "seg.zarr"), "--model", str(out),
                      "--no-progress")
    assert rc == 0, err
    # a fit from it keeps the init model's 2.5D input
    rc, _, err = _run("fit", str(data / "raw.zarr"), str(data / "mito.zarr"), str(tmp_path / "again"), "--minutes",
                      "0.05", "--no-progress", "--init", str(out / "train" / "latest.safetensors"))
    assert rc == 0, err
    assert load_config(str(tmp_path / "again" / "plan.yaml")).context == 1
    # and so does adapting it without labels
    rc, _, err = _run("fit", str(data / "raw.zarr"), str(tmp_path / "adapted"), "--minutes", "0.05", "--no-progress",
                      "--init", str(out / "train" / "latest.safetensors"))
    assert rc == 0, err
    assert "context: 1" in (tmp_path / "adapted" / "plan.yaml").read_text()
    assert read_checkpoint(str(tmp_path / "adapted" / "model.safetensors")).context == 1


def test_the_tuning_prediction_of_a_2_5d_model_is_the_whole_volumes_at_those_sections(data):
    torch.manual_seed(0)
    model = UNet(5, 1, ndim=2, features=4, depth=2).eval()
    raw = np.asarray(synthetic_em((12, 64, 64), seed=2).raw, np.float32) / 255
    whole = np.zeros((1,) + raw.shape, np.float32)
    predict_blockwise(raw, model, whole, block_shape=(12, 64, 64), workers=1)
    roi = (slice(0, 12), slice(0, 64), slice(0, 64))
    for parts, zs in (([read_sections(raw, z, z + 1, roi, 2) for z in (0, 5, 11)], [0, 5, 11]),  # labelled sections
                      ([read_sections(raw, 4, 9, roi, 2)], list(range(4, 9)))):  # a held-out part
        got = predict_sections(parts, model, 1, len(zs), dict(workers=1))
        assert np.allclose(got, whole[:, zs], atol=1e-5)


def test_context_makes_the_plan_2d_and_is_refused_on_an_image_or_with_a_3d_init_model():
    plan = plan_training(neurons(), context=1)  # the planner's choice would be anisotropic 3D
    assert len(plan.config.patch_shape) == 2 and plan.config.context == 1
    assert plan.reasons["dims"].startswith("2D on sections: --context 1") and "anisotropic 3D" in plan.reasons["dims"]
    model3d = {"ndim": 3, "features": 4, "depth": 2}
    with pytest.raises(ValueError, match=r"--context 1 \(or the --init model's\): .* but the plan is anisotropic 3D"):
        plan_training(neurons(), context=1, model=model3d, init="x.safetensors")
    with pytest.raises(ValueError, match="but the raw is an image"):
        plan_training(dataclasses.replace(fingerprint(ISO, shape=(1, 256, 256)), ndim=2), context=1)
    plan = plan_training(fingerprint(), context=2)
    assert plan.config.context == 2 and "5 channels" in plan.reasons["context"]
    assert plan_training(fingerprint(), context=0).config.context == 0
