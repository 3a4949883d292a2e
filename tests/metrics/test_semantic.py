"""Semantic scores: golden values by hand, against scipy-free direct counting, masks and bad input."""

import numpy as np
import pytest

from emseg.io import write_volume, open_volume
from emseg.metrics import semantic_scores


def test_binary_golden():
    gt = np.array([[0, 0, 1, 1], [0, 1, 1, 1]])
    pred = np.array([[0, 1, 1, 0], [0, 1, 1, 1]])
    # TP = 4 (positions (0,2),(1,1),(1,2),(1,3)), FP = 1 ((0,1)), FN = 1 ((0,3)), TN = 2
    s = semantic_scores(gt, pred)
    assert (s.tp[0], s.fp[0], s.fn[0], s.tn[0]) == (4, 1, 1, 2)
    assert s.iou == pytest.approx(4 / 6) and s.dice == pytest.approx(8 / 10)
    assert s.precision == pytest.approx(0.8) and s.recall == pytest.approx(0.8)
    assert s.specificity == pytest.approx(2 / 3) and s.accuracy == pytest.approx(6 / 8)
    assert s.conformity == pytest.approx(1 - 2 / 4)
    assert s.f1 == s.dice and s.jaccard == s.iou


def test_masks_in_0_255_and_probabilities():
    gt = np.array([0, 255, 255, 0], np.uint8)
    prob = np.array([0.2, 0.8, 0.4, 0.6], np.float32)
    s = semantic_scores(gt, prob, threshold=0.5)
    assert (s.tp[0], s.fp[0], s.fn[0]) == (1, 1, 1)
    assert semantic_scores(gt, prob, threshold=0.3).recall == 1.0


def test_multiclass_and_ignore():
    rng = np.random.default_rng(0)
    gt, pred = rng.integers(0, 4, (30, 30)), rng.integers(0, 4, (30, 30))
    s = semantic_scores(gt, pred, binary=False)
    assert s.classes.tolist() == [1, 2, 3]
    for i, c in enumerate(s.classes):
        tp = np.sum((gt == c) & (pred == c))
        assert s.tp[i] == tp and s.fp[i] == np.sum((gt != c) & (pred == c)) and s.fn[i] == np.sum((gt == c) & (pred != c))
    assert s.accuracy == pytest.approx(np.mean(gt == pred))
    ig = semantic_scores(gt, pred, binary=False, ignore_label=3)
    keep = gt != 3
    assert ig.accuracy == pytest.approx(np.mean(gt[keep] == pred[keep]))
    assert "per_class" in s.as_dict()


def test_mask_argument():
    gt, pred = np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])
    s = semantic_scores(gt, pred, mask=np.array([True, False, False, True]))
    assert (s.tp[0], s.fp[0], s.fn[0], s.tn[0]) == (1, 0, 0, 1)


def test_out_of_core_probabilities():
    rng = np.random.default_rng(3)
    gt = rng.random((9, 33, 35)) > 0.7
    prob = np.clip(gt * 0.6 + rng.random(gt.shape) * 0.5, 0, 1).astype(np.float32)
    write_volume("gt.zarr", gt.astype(np.uint8), chunks=(4, 16, 16))
    write_volume("prob.zarr", prob, chunks=(4, 16, 16))
    lazy = semantic_scores(open_volume("gt.zarr"), open_volume("prob.zarr"))
    ref = semantic_scores(gt, prob)
    assert lazy.iou == ref.iou and lazy.accuracy == ref.accuracy


def test_bad_input():
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        semantic_scores(np.array([0, 1]), np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="same shape"):
        semantic_scores(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="empty"):
        semantic_scores(np.zeros((0,)), np.zeros((0,)))
    with pytest.raises(ValueError, match="no voxels"):
        semantic_scores(np.array([1, 0]), np.array([1, 1]), mask=np.zeros(2, bool))
