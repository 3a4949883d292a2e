"""``emseg fit TARGET OUT_DIR --source RAW LABELS``: trained on a labelled source, adapted to an
unlabelled target by the mean teacher; the model written for the target carries the target's
normalisation and BatchNorm statistics, and its card says nothing was measured there."""

import json

import numpy as np
import pytest
import torch

from emseg.io import open_volume, write_volume
from emseg.models import load_model
from emseg.models.reader import read_checkpoint
from emseg.normalization import fit_normalization
from emseg.synthetic import synthetic_em
from emseg.train import load_config

from conftest import run_cli as _run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit_source")
    src = synthetic_em((10, 64, 64), seed=0)
    write_volume(str(folder / "src.zarr"), src.raw, voxel_size=src.voxel_size)
    write_volume(str(folder / "src-mito.zarr"), src.mito, voxel_size=src.voxel_size)
    tgt = synthetic_em((8, 64, 64), seed=1)  # another "microscope": darker, lower contrast
    write_volume(str(folder / "tgt.zarr"), (tgt.raw * 0.4 + 30).astype(np.uint8), voxel_size=tgt.voxel_size)
    return folder


def test_a_fit_from_a_source_writes_a_model_for_the_target(data, tmp_path):
    out = tmp_path / "run"
    rc, stdout, err = _run("fit", str(data / "tgt.zarr"), str(out), "--source", str(data / "src.zarr"),
                           str(data / "src-mito.zarr"), "--minutes", "0.05", "--no-progress")
    assert rc == 0, err
    assert "the source's tuning part" in stdout
    c = load_config(str(out / "plan.yaml"))
    assert c.raw == (str(data / "src.zarr"),) and c.unlabelled == (str(data / "tgt.zarr"),) and c.semi == "mean_teacher"
    assert (out / "train" / "teacher.safetensors").exists()
    trained, model = (read_checkpoint(str(p)) for p in (out / "train" / "latest.safetensors", out / "model.safetensors"))
    with open_volume(str(data / "tgt.zarr")) as tgt, open_volume(str(data / "src.zarr")) as src:
        assert model.normalization == fit_normalization(tgt, c.normalization)
        assert trained.normalization == fit_normalization(src, c.normalization) != model.normalization
    a, b = (load_model(str(p)).state_dict() for p in (out / "train" / "latest.safetensors", out / "model.safetensors"))
    stats = [k for k in a if k.endswith("running_mean")]
    assert stats and all(not torch.equal(a[k], b[k]) for k in stats)  # AdaBN on the target
    assert all(torch.equal(a[k], b[k]) for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    card = json.loads((out / "model.json").read_text())
    assert "tgt.zarr" in card["training"]["adapted_to"] and "SOURCE" in card["metrics"]["evaluated_on"]
    rc, _, err = _run("segment", str(data / "tgt.zarr"), str(tmp_path / "seg.zarr"), "--model", str(out),
                      "--no-progress")
    assert rc == 0, err


@pytest.mark.parametrize("extra, words", [
    (["LABELS"], ["--source gives the labels", "LABELS"]),
    (["--semi", "propagate", "--sections", "2,5"], ["--source", "propagate"]),
])
def test_source_with_labels_or_propagation_is_refused_in_one_line(data, tmp_path, extra, words):
    out = tmp_path / "bad"
    args = ["fit", str(data / "tgt.zarr")]
    if extra[0] == "LABELS":
        args += [str(data / "src-mito.zarr")]
        extra = []
    rc, _, err = _run(*args, str(out), "--source", str(data / "src.zarr"), str(data / "src-mito.zarr"),
                      "--minutes", "0.05", "--no-progress", *extra)
    assert rc == 2 and err.count("\n") == 1 and all(w.replace("LABELS", "src-mito.zarr") in err or w in err
                                                    for w in words), err
    assert not out.exists()


@pytest.mark.parametrize("source, words", [(["only-one.zarr"], ["--source", "expected 2"]),
                                           (["missing.zarr", "missing-labels.zarr"], ["missing.zarr"])])
def test_a_bad_source_ends_in_one_line_naming_it_and_writes_nothing(data, tmp_path, source, words):
    out = tmp_path / "bad"
    rc, _, err = _run("fit", str(data / "tgt.zarr"), str(out), "--minutes", "0.05", "--no-progress",
                      "--source", *[str(tmp_path / s) for s in source])
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err and all(w in err for w in words), err
    assert not out.exists()
