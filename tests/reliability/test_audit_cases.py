"""Cases a user audit found silently wrong or unclear, each now a one-line error naming the culprit."""

from __future__ import annotations

import os

import numpy as np
import pytest
from harness import emseg, one_line_error, tree
from test_runs import SHAPE, inputs  # noqa: F401 - the fixture

from emseg.io import read_volume, write_volume


def test_prediction_inputs_that_would_give_garbage(inputs):
    raw = read_volume("raw.tif").astype(np.float32)
    write_volume("float01.tif", raw / 255)  # the model was trained on 0-255 data: refused, with the way out
    from emseg.models import UNet, save_model

    save_model(UNet(1, 2, ndim=2, depth=1, features=4), "n.safetensors",
               extra={"target": "bc", "normalization": {"mode": "percentile", "low": 20.0, "high": 230.0}})
    one_line_error(emseg("predict", "float01.tif", "o.zarr", "--model", "n.safetensors"), "predict", "float01.tif",
                   "--normalize data")
    assert emseg("predict", "float01.tif", "o.zarr", "--model", "n.safetensors", "--normalize", "data").returncode == 0
    write_volume("self.h5:raw", raw.astype(np.uint8))
    before = tree(".")["self.h5"]
    one_line_error(emseg("predict", "self.h5:raw", "self.h5:raw", "--model", "m.safetensors", "--overwrite"),
                   "predict", "also this run's input")
    assert tree(".")["self.h5"] == before
    one_line_error(emseg("predict", "raw.tif", "out.tif", "--model", "m.safetensors"), "predict", "out.tif",
                   "chunked volume")
    one_line_error(emseg("predict", "raw.tif", "o.n5:a", "--model", "m.safetensors"), "predict", "float16",
                   "--dtype float32")
    one_line_error(emseg("segment", "raw.tif", "s.zarr", "--model", "m.safetensors", "--keep-probabilities", "s.zarr"),
                   "segment", "--keep-probabilities")
    one_line_error(emseg("segment", "raw.tif", "s.zarr", "--model", "m.safetensors", "--param", "seed_threshold=2"),
                   "segment", "seed_threshold")
    assert not [n for n in os.listdir(".") if n.startswith(".emseg-")], os.listdir(".")  # refused before any work


def test_postprocess_inputs_that_would_give_garbage(inputs):
    write_volume("p3d.zarr", read_volume("prob.zarr")[0])  # one channel without its axis, for a 2-channel method
    one_line_error(emseg("postprocess", "p3d.zarr", "o.zarr", "--method", "bc"), "postprocess", "2 channel")
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:6, 5:20, 5:20], labels[6:10, 25:40, 25:40] = 1, 2
    write_volume("labels.zarr", labels)  # instance ids, not probabilities
    one_line_error(emseg("postprocess", "labels.zarr", "o.zarr", "--method", "cc"), "postprocess", "labels.zarr",
                   "label volume")
    write_volume("half.zarr", np.zeros((2,) + SHAPE, np.float32))
    os.rename("half.zarr", ".emseg-partial-half.zarr")
    one_line_error(emseg("convert", ".emseg-partial-half.zarr", "c.zarr"), "convert", "incomplete output")
    one_line_error(emseg("postprocess", ".emseg-partial-half.zarr", "c.zarr", "--method", "bc"), "postprocess",
                   "incomplete output")


def test_raw_and_labels_swapped_for_training(tmp_path, shared_data):
    from emseg.train.patches import load_train_volume

    raw, labels = shared_data / "lucchi" / "training.tif", shared_data / "lucchi" / "training_groundtruth.tif"
    with pytest.raises(ValueError, match="swapped"):
        load_train_volume(str(labels), str(raw))
    with pytest.raises(ValueError, match="swapped"):
        load_train_volume(str(raw), str(raw))
