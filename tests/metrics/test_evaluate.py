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
    with pytest.raises(ValueError, match=r"same shape; got gt \(4,\) and pred \(5,\)"):
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


def test_options_out_of_range_are_refused():
    gt = np.array([0, 1, 1, 0], np.uint8)
    with pytest.raises(ValueError, match=r"threshold=5 must lie in \(0, 1\).*integer masks and labels are compared "
                                         "as nonzero"):
        evaluate(gt, gt, threshold=5)
    with pytest.raises(ValueError, match=r"threshold=0 must lie in \(0, 1\)"):
        evaluate(gt, gt, threshold=0)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match=rf"iou_threshold={bad} must lie in \(0, 1\]"):
            evaluate(gt, gt, task="instance", iou_threshold=bad)
    with pytest.raises(ValueError, match=r"boundary_tolerance_nm=-2 must be a distance >= 0"):
        evaluate(gt, gt, task="neurons", boundary_tolerance_nm=-2)


def test_shapes_are_named_and_a_one_channel_prediction_is_its_channel():
    write_volume("gt.h5:mask", np.zeros((4, 8, 8), np.uint8))
    write_volume("p.zarr", np.zeros((2, 4, 8, 8), np.float32))
    from emseg.io import open_volume

    with pytest.raises(ValueError, match=r"got gt gt.h5:mask \(4, 8, 8\) and pred .*p.zarr.* \(2, 4, 8, 8\); "
                                         r".* has 2 channels of gt's shape: evaluate one channel"):
        evaluate(open_volume("gt.h5:mask"), open_volume("p.zarr"))
    gt = np.zeros((4, 8, 8), np.uint8)
    gt[:, 2:6, 2:6] = 255
    prob = (gt[None] / np.float32(255)) * 0.8 + 0.1
    assert evaluate(gt, prob, metrics="iou")["iou"] == 1.0


def test_raw_em_is_refused_as_pred_and_as_gt():
    from emseg.synthetic import synthetic_em

    em = synthetic_em((4, 64, 64), seed=0)
    mask = (em.mito > 0).astype(np.uint8) * 255
    with pytest.raises(ValueError, match=r"pred looks like raw EM, not a segmentation or a prediction \(\d+% of "
                                         "sampled voxels are mid-grey"):
        evaluate(mask, em.raw)
    with pytest.raises(ValueError, match="pred looks like raw EM, not probabilities"):
        evaluate(mask, em.raw / np.float32(255))
    with pytest.raises(ValueError, match=r"gt looks like raw EM, not a mask or labels \(\d+ distinct values"):
        evaluate(em.raw, mask)
    with pytest.raises(ValueError, match=r"gt looks like raw EM, not labels"):
        evaluate(em.raw, em.neurons, task="neurons")
    with pytest.raises(ValueError, match=r"pred looks like raw EM"):
        evaluate(em.neurons, em.raw, task="neurons")
    assert evaluate(mask, em.raw / np.float32(255), metrics="iou", trusted=True)["iou"] >= 0  # the caller knows


def test_uint8_probabilities_read_as_255p_and_labels_as_nonzero():
    from scipy import ndimage

    rng = np.random.default_rng(5)
    gt = np.zeros((4, 64, 64), np.uint8)
    gt[:, 10:30, 10:30] = gt[:, 40:60, 35:60] = 1
    prob = np.clip(ndimage.gaussian_filter(gt.astype(np.float32), 3) + rng.normal(0, 0.05, gt.shape), 0, 1)
    quantised = np.rint(prob * 255).astype(np.uint8)  # emseg predict --dtype uint8
    f = evaluate(gt, prob.astype(np.float32), metrics="iou,dice")
    q = evaluate(gt, quantised, metrics="iou,dice")
    assert q["iou"] == pytest.approx(f["iou"], abs=1e-3) and f["iou"] > 0.8  # not "every p >= 1/255 is foreground"
    labels = ndimage.label(gt)[0].astype(np.uint8) * 60  # ids 60 and 120: flat, nonzero is foreground
    assert evaluate(gt, labels, metrics="iou")["iou"] == 1.0


def test_a_probability_map_is_refused_where_labels_are_compared():
    gt = np.zeros((4, 64, 64), np.uint32)
    gt[:, 10:30, 10:30] = 1
    from scipy import ndimage

    prob = np.rint(ndimage.gaussian_filter(gt.astype(np.float32), 4) * 255).astype(np.uint8)
    with pytest.raises(ValueError, match=r"pred looks like a uint8 probability map \(round\(255 p\)\), not labels.*"
                                         "run emseg postprocess"):
        evaluate(gt, prob, task="neurons")
    with pytest.raises(TypeError, match="pred must hold integer label ids; got dtype float32"):
        evaluate(gt, prob / np.float32(255), task="instance")


def test_cli_evaluate_bad_values_end_in_one_line(capsys):
    gt = np.zeros((4, 32, 32), np.uint8)
    gt[:, 8:20, 8:20] = 255
    write_volume("gt.tif", gt)
    write_volume("p.zarr", gt / np.float32(255))
    assert main(["evaluate", "gt.tif", "p.zarr", "--threshold", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "threshold=5.0 must lie in (0, 1)" in err
    from emseg.synthetic import synthetic_em

    write_volume("raw.tif", synthetic_em((4, 32, 32), seed=1).raw)
    assert main(["evaluate", "gt.tif", "raw.tif"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pred raw.tif looks like raw EM" in err


def test_public_functions_take_at_most_8_parameters():
    """Options beyond that go into a config (EvaluateConfig); dataclass constructors are records, not counted."""
    import dataclasses
    import importlib
    import inspect
    import pkgutil

    import emseg.metrics

    too_many = []
    for info in pkgutil.iter_modules(emseg.metrics.__path__):
        module = importlib.import_module(f"emseg.metrics.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            functions = [(name, obj)] if inspect.isfunction(obj) else []
            if inspect.isclass(obj):
                functions += [(f"{name}.{k}", f) for k, f in vars(obj).items() if inspect.isfunction(f)
                              and (not k.startswith("_") or (k == "__init__" and not dataclasses.is_dataclass(obj)))]
            too_many += [f"{module.__name__}.{n}" for n, f in functions if len(inspect.signature(f).parameters) > 8]
    assert not too_many
