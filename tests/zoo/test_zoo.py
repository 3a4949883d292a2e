"""The shipped models: cards, weights, loading by name, and each model on held-out real data."""

import hashlib
import json
import os

import numpy as np
import pytest

from emseg.cli import main as emseg
from emseg.instances.methods import METHODS
from emseg.tasks import OBJECTS, TASKS
from emseg.zoo import model_card, model_names, model_path, resolve_model

NAMES = ["membrane-sstem", "mito-fibsem", "mito-sbem", "neurons-fibsem"]


def test_the_four_models_ship():
    assert model_names() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_card_describes_the_model(name):
    from emseg.models import read_model_header

    card = model_card(name)
    for key in ("summary", "purpose", "objects", "modality", "target", "architecture", "license"):
        assert isinstance(card[key], str) and card[key], key
    assert card["objects"] in OBJECTS and card["target"] in TASKS  # a kind of objects; the registry's task
    assert card["postprocess"]["method"] in METHODS
    assert card["training"]["data"] and card["training"]["data_license"] and card["training"]["steps"] > 0
    assert os.path.exists(os.path.join(os.path.dirname(__file__), "..", "..", card["training"]["config"]))
    assert card["metrics"]["evaluated_on"], "run benchmarks/accuracy.py --update-cards"
    path = model_path(name)
    assert os.path.getsize(path) < 10 * 2**20 and os.path.getsize(path) == card["weights"]["bytes"]
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == card["weights"]["sha256"]
    header = read_model_header(path)
    assert header.extra["target"] == card["target"]
    if card["target"] == "affinities":
        assert header.extra["offsets"] == card["offsets"]


@pytest.mark.parametrize("name", NAMES)
def test_loads_by_name_and_predicts_probabilities(name):
    from emseg.predict.model import as_predictor

    p = as_predictor(name)
    assert p.checkpoint.card["name"] == name and p.checkpoint.path == model_path(name)
    shape = (1, 1) + ((16, 64, 64) if p.ndim == 3 else (64, 64))
    y = p.fn(np.random.default_rng(0).random(shape, dtype=np.float32))
    assert y.shape == (1, p.out_channels) + shape[2:] and 0 <= y.min() and y.max() <= 1


def test_unknown_name_and_existing_file():
    from emseg.predict.model import as_predictor

    with pytest.raises(FileNotFoundError, match="nor a shipped model.*mito-fibsem"):
        as_predictor("mito-fibsm")
    with pytest.raises(ValueError, match="unknown model 'nope'; shipped models: membrane-sstem"):
        model_card("nope")
    open("mito-fibsem", "w").close()  # a file of that name in the working directory wins over the zoo
    assert resolve_model("mito-fibsem") == ("mito-fibsem", None)


def test_cli_models_list_and_info(capsys):
    assert emseg(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES) and "Lucchi" in out
    assert emseg(["models", "info", "neurons-fibsem", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["target"] == "affinities" and len(card["offsets"]) == 9 and card["path"].endswith(".safetensors")
    assert emseg(["models", "info", "mito-fibsem"]) == 0
    out = capsys.readouterr().out
    assert "EPFL" in out and "postprocess:" in out
    assert emseg(["models", "info", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert emseg(["models", "info"]) == 2


def test_card_postprocessing_unless_a_kind_of_objects_is_given():
    from emseg.models.reader import PostprocessDefaults, postprocess_defaults

    offsets = [[-1, 0, 0], [0, -9, 0]]
    card = {"postprocess": {"method": "agglomerate", "params": {"threshold": 0.3}, "min_size": 7}}
    assert postprocess_defaults("affinities", {"offsets": offsets}, card) == \
        PostprocessDefaults("agglomerate", {"threshold": 0.3}, offsets, 7)
    named = postprocess_defaults("affinities", {"offsets": offsets}, card, objects="neurons")
    assert named.method == "mws"  # a kind of objects named: the task's method, that kind's size filter
    assert named.min_size == OBJECTS["neurons"]["min_size"]


def test_segment_by_name_warns_about_another_voxel_size(caplog):
    from emseg.io import read_volume, write_volume

    raw = (np.random.default_rng(0).random((4, 96, 96)) * 255).astype(np.uint8)
    write_volume("raw.zarr", raw, voxel_size=(5, 12, 12))
    assert emseg(["segment", "raw.zarr", "seg.zarr", "--model", "mito-fibsem", "--tta", "none", "--no-progress"]) == 0
    assert "model mito-fibsem was trained at 5x5x5 nm" in caplog.text
    assert read_volume("seg.zarr").shape == raw.shape
    caplog.clear()
    write_volume("raw5.zarr", raw, voxel_size=(5, 5, 5))
    assert emseg(["segment", "raw5.zarr", "seg5.zarr", "--model", "mito-fibsem", "--no-progress"]) == 0
    assert "trained at" not in caplog.text
