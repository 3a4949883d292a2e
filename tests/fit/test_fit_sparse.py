"""``emseg fit --sections``: a fit on a few labelled sections of a volume whose other sections hold
poisoned labels — the fingerprint, the plan and the tuning never see them."""

import contextlib
import io
import json

import pytest

from emseg.cli import main
from emseg.fit.fingerprint import fingerprint
from emseg.fit.split import labelled_only
from emseg.io import open_volume
from emseg.train import load_config

from conftest import write_poisoned_em  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SECTIONS = (2, 6, 10, 13)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit_sparse")
    write_poisoned_em(folder, (16, 96, 96), 0, SECTIONS)
    return folder


def test_the_fingerprint_sees_only_the_labelled_sections(data):
    prints = []
    for name in ("mito.zarr", "poisoned.zarr"):
        with open_volume(str(data / "raw.zarr")) as raw, open_volume(str(data / name)) as labels:
            prints.append(fingerprint(raw, labelled_only(labels, SECTIONS)).as_dict())
    assert prints[0] == prints[1]
    assert [list(r) for r in prints[0]["labelled_sections"]] == [[z, z + 1] for z in SECTIONS]


@pytest.mark.parametrize("semi", ["none", "mean_teacher"])
def test_fit_on_labelled_sections_plans_trains_and_tunes_on_them_only(data, tmp_path, semi):
    out = tmp_path / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["fit", str(data / "raw.zarr"), str(data / "poisoned.zarr"), str(out), "--minutes", "0.05",
                   "--no-progress", "--sections", ",".join(map(str, SECTIONS)), "--semi", semi])
    assert rc == 0, stderr.getvalue()
    c = load_config(str(out / "plan.yaml"))
    assert c.sections == SECTIONS and c.val_roi == "13:14" and len(c.patch_shape) == 2
    assert c.semi == semi and (out / "train" / "teacher.safetensors").exists() == (semi == "mean_teacher")
    assert "# only these sections are labelled" in (out / "plan.yaml").read_text()
    tuning = json.loads((out / "tuning.json").read_text())
    assert tuning["roi"][0] == [13, 14]
    card = json.loads((out / "model.json").read_text())
    assert card["made_by"] == "emseg fit"


def test_two_labelled_sections_train_on_both_and_tune_on_them(data, tmp_path):
    out = tmp_path / "two"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["fit", str(data / "raw.zarr"), str(data / "poisoned.zarr"), str(out), "--minutes", "0.05",
                   "--no-progress", "--sections", "6,13"])
    assert rc == 0, stderr.getvalue()
    c = load_config(str(out / "plan.yaml"))
    assert c.sections == (6, 13) and c.val_roi is None and c.val_fraction == 0.0
    tuning = json.loads((out / "tuning.json").read_text())
    assert tuning["sections"] == [6, 13] and "nothing was held out" in tuning["note"]
    card = json.loads((out / "model.json").read_text())
    assert "the labelled training sections 6, 13" in card["metrics"]["evaluated_on"]
