"""evaluate() and `emseg evaluate`: one table for many metrics, snake_case JSON, clear errors."""

import json

import numpy as np
import pytest

from emseg.cli import main
from emseg.io import write_volume
from emseg.metrics import adapted_rand_error, variation_of_information
from emseg.metrics.evaluate import METRICS, evaluate


def _labels(seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.integers(1, 6, (4, 20, 20)).repeat(2, axis=1).repeat(2, axis=2).astype(np.uint32)
    pred = gt.copy()
    pred[gt == 2] = 3  # a merge
    return gt, pred


def test_neurons_values_match_the_functions():
    gt, pred = _labels()
    r = evaluate(gt, pred, task="neurons")
    are, voi = adapted_rand_error(gt, pred), variation_of_information(gt, pred)
    assert r["adapted_rand_error"] == are.error and r["voi_split"] == voi.split and r["voi_merge"] == voi.merge
    assert r["cremi_score"] == pytest.approx(np.sqrt((voi.split + voi.merge) * are.error))
    assert set(r) >= {"rand_index", "rand_error", "voi"}


def test_semantic_on_lazy_volumes():
    rng = np.random.default_rng(1)
    gt = (rng.random((5, 30, 30)) > 0.5).astype(np.uint8) * 255
    prob = rng.random((5, 30, 30)).astype(np.float32)
    write_volume("gt.h5:mask", gt)
    write_volume("prob.zarr", prob)
    from emseg.io import open_volume

    r = evaluate(open_volume("gt.h5:mask"), open_volume("prob.zarr"), metrics="iou,dice,pixel_error")
    tp = np.sum((gt > 0) & (prob > 0.5))
    fp, fn = np.sum((gt == 0) & (prob > 0.5)), np.sum((gt > 0) & (prob <= 0.5))
    assert r["iou"] == pytest.approx(tp / (tp + fp + fn)) and r["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert r["pixel_error"] == pytest.approx((fp + fn) / gt.size)


def test_unknown_metric_and_task():
    with pytest.raises(ValueError, match="unknown metric.*valid metrics: accuracy"):
        evaluate(np.zeros(4), np.zeros(4), metrics="iou,bogus")
    with pytest.raises(ValueError, match="task must be one of"):
        evaluate(np.zeros(4), np.zeros(4), task="cells")
    with pytest.raises(ValueError, match=r"same shape; got \(4,\) and \(5,\)"):
        evaluate(np.zeros(4), np.zeros(5))


def test_cli_evaluate_writes_json(capsys):
    gt, pred = _labels()
    write_volume("gt.h5:ids", gt)
    write_volume("seg.zarr", pred)
    assert main(["evaluate", "gt.h5:ids", "seg.zarr", "--task", "neurons", "--metrics", "voi,adapted_rand",
                 "--json", "out.json"]) == 0
    table = capsys.readouterr().out
    data = json.load(open("out.json"))
    assert data["voi_merge"] > 0 and data["voi_split"] == 0 and "voi_merge" in table
    assert main(["evaluate", "gt.h5:ids", "seg.zarr", "--metrics", "nope"]) == 2
    assert "valid metrics" in capsys.readouterr().err


def test_metric_names_are_snake_case():
    assert all(m == m.lower() and " " not in m for m in METRICS)


def test_instance_task():
    gt, pred = _labels()
    from scipy import ndimage

    gt_inst = ndimage.label(gt == 1)[0].astype(np.uint32)
    r = evaluate(gt_inst, gt_inst, task="instance")
    assert r["ap50"] == 1.0 and r["map"] == 1.0 and r["pq"] == 1.0 and r["aji"] == 1.0 and r["fp50"] == 0
    r2 = evaluate(gt_inst, np.zeros_like(gt_inst), task="instance", metrics="matching,pq")
    assert r2["tp50"] == 0 and r2["fn50"] == int(gt_inst.max()) and r2["pq"] == 0


def test_membranes_task_on_isbi(shared_data):
    """ISBI 2012 labels scored against themselves and against a membrane probability map."""
    from emseg.io import read_volume

    cells = read_volume(shared_data / "isbi2012/train-labels.tif")[:2]  # 255 = cell, 0 = membrane
    perfect = evaluate(cells, cells, task="membranes")
    assert perfect == {"v_rand": 1.0, "v_info": 1.0, "pixel_error": 0.0, "warping_error": 0.0}
    prob = np.where(cells > 0, 0.2, 0.9).astype(np.float32)  # membrane probability
    r = evaluate(cells, prob, task="membranes")
    assert r["v_rand"] == pytest.approx(1.0) and r["pixel_error"] == 0.0
