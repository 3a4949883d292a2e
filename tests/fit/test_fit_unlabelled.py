"""``emseg fit RAW LABELS OUT --semi mean_teacher --unlabelled MORE``: the mean teacher learns from RAW
whole and the other raw volumes (the sections to be segmented, say); the model keeps RAW's
normalisation, the card names the volumes, and a rerun with other volumes is another run."""

import json

import numpy as np
import pytest

from emseg.io import open_volume, write_volume
from emseg.models.reader import read_checkpoint
from emseg.normalization import fit_normalization
from emseg.synthetic import synthetic_em
from emseg.train import load_config
from emseg.train.batches import load_training_data
from emseg.train.semi import load_unlabelled

from conftest import run_cli as _run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit_unlabelled")
    vol = synthetic_em((12, 64, 64), seed=0)
    write_volume(str(folder / "raw.zarr"), vol.raw, voxel_size=vol.voxel_size)
    write_volume(str(folder / "mito.zarr"), vol.mito, voxel_size=vol.voxel_size)
    more = synthetic_em((6, 64, 64), seed=1)
    write_volume(str(folder / "more.zarr"), (more.raw * 0.5 + 40).astype(np.uint8), voxel_size=more.voxel_size)
    write_volume(str(folder / "image.zarr"), more.raw[0], voxel_size=more.voxel_size[1:])
    return folder


def _fit(data, out, *extra):
    return _run("fit", str(data / "raw.zarr"), str(data / "mito.zarr"), str(out), "--sections", "1,4", "--minutes",
                "0.05", "--tune-minutes", "0.2", "--no-progress", "--semi", "mean_teacher", *extra)


def test_the_mean_teacher_learns_from_raw_and_the_volumes_given(data, tmp_path):
    out = tmp_path / "run"
    rc, _, err = _fit(data, out, "--unlabelled", str(data / "more.zarr"))
    assert rc == 0, err
    c = load_config(str(out / "plan.yaml"))
    assert c.unlabelled == (str(data / "raw.zarr"), str(data / "more.zarr")) and c.semi == "mean_teacher"
    sources = load_unlabelled(c, load_training_data(c))
    with open_volume(str(data / "more.zarr")) as more, open_volume(str(data / "raw.zarr")) as raw:
        assert [v[0].shape for v in sources.volumes] == [raw.shape, more.shape]
        assert sources.volumes[1][2] == fit_normalization(more, c.normalization)  # each normalised on its own
        model = read_checkpoint(str(out / "model.safetensors"))
        assert model.normalization == fit_normalization(raw, c.normalization) != sources.volumes[1][2]
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["unlabelled"] == [str(data / "raw.zarr"), str(data / "more.zarr")]
    rc, _, err = _fit(data, out)  # the same folder without the volume: another run, refused
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert (out / "model.safetensors").exists()


@pytest.mark.parametrize("extra, words", [
    (["--semi", "none", "--unlabelled", "more.zarr"], ["--unlabelled", "--semi mean_teacher", "none"]),
    (["--unlabelled", "image.zarr"], ["--unlabelled", "image.zarr", "(64, 64)", "3 dimensions"]),
    (["--unlabelled", "missing.zarr"], ["--unlabelled", "missing.zarr", "no such"]),
])
def test_bad_unlabelled_volumes_end_in_one_line_naming_them(data, tmp_path, extra, words):
    extra = [str(data / e) if e.endswith(".zarr") else e for e in extra]
    rc, _, err = _fit(data, tmp_path / "bad", *extra)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err and all(w in err for w in words), err
    assert not (tmp_path / "bad" / "train").exists()
