"""``emseg fit RAW OUT_DIR --init MODEL``: a model adapted to a volume without labels — the plan keeps
its architecture and target, the card its post-processing and says no labels measured it, and
``segment --model OUT_DIR`` uses the adapted weights; options that need labels are refused."""

import contextlib
import io
import json

import numpy as np
import pytest

from emseg.cli import main
from emseg.io import read_volume, write_volume
from emseg.synthetic import synthetic_em
from emseg.train import load_config, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit_adapt")
    src = synthetic_em((8, 64, 64), seed=1)
    write_volume(str(folder / "src.h5:raw"), src.raw, voxel_size=src.voxel_size)
    write_volume(str(folder / "src.h5:mito"), src.mito, voxel_size=src.voxel_size)
    tgt = synthetic_em((8, 64, 64), seed=2)
    write_volume(str(folder / "target.zarr"), (tgt.raw * 0.6 + 50).astype(np.uint8), voxel_size=tgt.voxel_size)
    source = train(load_config(raw=[str(folder / "src.h5:raw")], labels=[str(folder / "src.h5:mito")],
                               patch_shape=[32, 32], batch_size=2, model={"features": 4, "depth": 2}, steps=2,
                               val_fraction=0.0, threads=1, device="cpu", target="bc", out_dir=str(folder / "src")))
    return folder, source.latest


def _fit(*argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            rc = main(["fit", *map(str, argv), "--no-progress"])
        except SystemExit as e:
            rc = e.code
    return rc, stdout.getvalue(), stderr.getvalue()


def test_a_model_is_adapted_without_labels_and_segments(data, tmp_path):
    folder, source = data
    out = tmp_path / "adapted"
    rc, stdout, err = _fit(folder / "target.zarr", out, "--init", source, "--minutes", "0.05")
    assert rc == 0, err
    assert "no labels: adapting" in stdout and "the init model's post-processing is kept" in stdout
    c = load_config(str(out / "plan.yaml"))
    assert c.semi == "mean_teacher" and c.unlabelled == (str(folder / "target.zarr"),) and not c.raw
    assert c.target == "bc" and c.adabn_batches > 0 and c.init == source
    card = json.loads((out / "model.json").read_text())
    assert card["made_by"] == "emseg fit (adapted without labels)" and card["postprocess"]["method"] == "bc"
    assert "no labels" in card["metrics"]["evaluated_on"]
    seg = tmp_path / "seg.zarr"
    assert main(["segment", str(folder / "target.zarr"), str(seg), "--model", str(out), "--no-progress"]) == 0
    assert read_volume(str(seg)).shape == (8, 64, 64)
    rc, stdout, _ = _fit(folder / "target.zarr", out, "--init", source, "--minutes", "0.05")  # the same run: kept
    assert rc == 0 and stdout.count("finished before, kept") == 4


@pytest.mark.parametrize("args, message", [
    ([], "give --init MODEL"),
    (["--init", "mito-fibsem", "--sections", "1,2"], "--sections needs LABELS"),
    (["--init", "mito-fibsem", "--semi", "mean_teacher"], "--semi needs LABELS"),
    (["--init", "mito-fibsem", "--adabn", "4"], "--adabn needs LABELS"),
    (["--init", "mito-fibsem", "--tune-minutes", "1"], "--tune-minutes needs LABELS"),
], ids=["no-init", "sections", "semi", "adabn", "tune-minutes"])
def test_options_that_need_labels_are_refused(data, tmp_path, args, message):
    folder, _ = data
    rc, _, err = _fit(folder / "target.zarr", tmp_path / "out", *args)
    assert rc == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_too_many_paths_are_refused(data, tmp_path):
    folder, _ = data
    rc, _, err = _fit(folder / "target.zarr", folder / "target.zarr", tmp_path / "a", tmp_path / "b")
    assert rc == 2 and "RAW [LABELS] OUT_DIR" in err and err.count("\n") == 1, err
