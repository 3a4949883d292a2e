"""``emseg fit --sections ... --semi propagate`` (4S): rounds that pseudo-label the neighbours of the
labelled sections with the last round's network — never with the labels of unlabelled sections
(poisoned here: none of them reaches a pseudo-label or a round's run) — and reach every section by the last."""

import contextlib
import io
import json

import numpy as np
import pytest

from emseg.cli import main
from emseg.fit.propagate import ROUNDS, pseudo_labels, round_sections
from emseg.fit.tune_stage import predict_sections, read_sections
from emseg.io import open_volume

from conftest import write_poisoned_em  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SECTIONS = (3, 9)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit_propagate")
    return folder, write_poisoned_em(folder, (14, 80, 80), 5, SECTIONS)


def _fit(data, labels, out):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["fit", str(data / "raw.zarr"), str(data / labels), str(out), "--minutes", "0.05", "--no-progress",
                   "--sections", ",".join(map(str, SECTIONS)), "--semi", "propagate", "--seed", "1"])
    assert rc == 0, stderr.getvalue()
    return stdout.getvalue()


def test_propagation_pseudo_labels_with_its_network_and_never_reads_unlabelled_sections(data, tmp_path, monkeypatch):
    import emseg.fit.propagate as propagate

    monkeypatch.setattr(propagate, "CONFIDENCE", 0.5)  # a few seconds of training are sure of nothing: keep every decision
    folder, em = data
    out = tmp_path / "run"
    stdout = _fit(folder, "poisoned.zarr", out)
    assert f"round {ROUNDS}/{ROUNDS}" in stdout
    rounds = json.loads((out / "fit.json").read_text())["stages"]["train"]["propagation"]
    assert [r["round"] for r in rounds] == list(range(ROUNDS)) and rounds[0]["pseudo"] == 0
    assert rounds[-1]["pseudo"] == 14 - len(SECTIONS)  # the last round reaches every section
    with open_volume(str(folder / "raw.zarr")) as raw:
        full = (slice(0, 14), slice(0, 80), slice(0, 80))
        for r in range(ROUNDS - 1):
            labels, known = (open_volume(str(out / "propagate" / f"{n}-{r}.zarr"))[...] for n in ("labels", "known"))
            for z in SECTIONS:  # the real labels, copied in
                assert np.array_equal(labels[z], em.mito[z]) and known[z].all()
            pseudo = json.loads((out / "propagate" / f"pseudo-{r}.json").read_text())
            zs = pseudo["sections"]
            assert zs == round_sections(SECTIONS, (0, 14), r) and pseudo["kept"] == zs
            assert pseudo["known_fraction"] > 0.2
            # the rest is the round's network's confident decisions, never the (poisoned) labels there
            checkpoint = str(out / "propagate" / f"round-{r}" / "latest.safetensors")
            for z in zs:
                prob = predict_sections([read_sections(raw, z, z + 1, full, 0)], checkpoint, 2, 1, dict(device="cpu"))[:, 0]
                want, want_known = pseudo_labels(prob, "bc", confidence=0.5)
                assert np.array_equal(labels[z] > 0, want > 0) and np.array_equal(known[z] > 0, want_known), (r, z)
            untouched = [z for z in range(14) if z not in SECTIONS and z not in zs]
            assert not labels[untouched].any() and not known[untouched].any()
            # and the next round learns from these volumes, starting from this round's weights
            nxt = out / ("train" if r == ROUNDS - 2 else f"propagate/round-{r + 1}")
            run = json.loads((nxt / "run.json").read_text())
            text = json.dumps(run)
            assert f"labels-{r}.zarr" in text and f"known-{r}.zarr" in text and "poisoned.zarr" not in text
    assert 0 < len(round_sections(SECTIONS, (0, 14), 0)) < 14 - len(SECTIONS)


def test_a_rerun_keeps_finished_rounds_even_when_a_rounds_folder_trained_on(data, tmp_path, monkeypatch):
    """The next round starts from the round's frozen weights (init-r), not its folder's latest: a round that
    trained on after it was recorded finished (a rerun continuing a time-limited run) changes nothing."""
    import shutil

    import emseg.fit.propagate as propagate
    from emseg.train import load_config

    monkeypatch.setattr(propagate, "CONFIDENCE", 0.5)
    folder, _ = data
    out = tmp_path / "run"
    _fit(folder, "poisoned.zarr", out)
    shutil.copy(out / "train" / "latest.safetensors", out / "propagate" / "round-0" / "latest.safetensors")
    pseudo = (out / "propagate" / "pseudo-0.json").read_text()
    said = []
    c = load_config(str(out / "plan.yaml"), [f"out_dir={out / 'train'}"])
    result, rounds = propagate.propagate_train(c, str(folder / "raw.zarr"), str(folder / "poisoned.zarr"), said.append)
    assert sum("finished before, kept" in s for s in said) == ROUNDS - 1 and not any("pseudo-labelling" in s for s in said)
    assert result.start_step > 0  # the last round resumed where it stopped (its budget may have cut it short)
    assert (out / "propagate" / "pseudo-0.json").read_text() == pseudo and len(rounds) == ROUNDS


def test_pseudo_labels_keep_confident_decisions_and_split_on_the_contour():
    prob = np.zeros((2, 1, 7), np.float32)
    prob[0] = [[0.97, 0.97, 0.97, 0.97, 0.97, 0.6, 0.03]]
    prob[1] = [[0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1]]
    labels, known = pseudo_labels(prob, "bc", first_id=5)
    assert labels.tolist() == [[5, 5, 0, 6, 6, 0, 0]]
    assert known.tolist() == [[True, True, False, True, True, False, True]]
    labels, _ = pseudo_labels(prob, "binary")  # no contour channel: one object
    assert labels.tolist() == [[1, 1, 1, 1, 1, 0, 0]]
