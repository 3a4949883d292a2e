"""Post-processing tuned on a prediction made from the ground truth: never worse than the defaults,
the tuned setting reproduces its score, and labels it cannot tune against are refused."""

import numpy as np
import pytest

from emseg.fit.tune import OBJECTIVES, score_segmentation, tune_postprocess
from emseg.instances.methods import segment
from emseg.synthetic import synthetic_em
from emseg.train.targets import bc_target


@pytest.fixture(scope="module")
def em():
    return synthetic_em((16, 96, 96), seed=0)


def _noisy(target, seed=0, scale=0.6, offset=0.2, noise=0.15):
    """A weak, noisy prediction: the target squeezed into [offset, offset + scale] plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    return np.clip(target * scale + offset + rng.normal(0, noise, target.shape), 0, 1).astype(np.float32)


def test_tuned_bc_scores_at_least_the_defaults_and_reproduces(em):
    gt = em.mito[10:16]
    pred = _noisy(bc_target(gt).target)
    t = tune_postprocess(pred, gt, "bc", z_filters=(0, 3))
    assert t.method == "bc" and t.objective == OBJECTIVES["instance"]
    assert t.score >= t.default_score
    assert t.score > 0.8  # the defaults' seed threshold misses the squeezed foreground; tuning finds it
    assert t.tried > 10 and t.seconds < 60
    assert set(t.scores) == {"foreground_iou", "pq", "ap50"}
    assert t.postprocess("flips") == {"method": "bc", "params": t.params, "min_size": t.min_size,
                                      "z_filter": t.z_filter, "tta": "flips"}
    seg = segment(pred, t.method, t.params, z_filter=t.z_filter, min_size=t.min_size)
    assert score_segmentation("instance", gt, seg)["objective"] == pytest.approx(t.score)


def test_a_clean_prediction_scores_perfectly(em):
    gt = em.mito[12:16]
    pred = bc_target(gt).target.astype(np.float32)
    t = tune_postprocess(pred, gt, "bc")
    assert t.score >= t.default_score and t.score == pytest.approx(1.0, abs=0.02)


def test_binary_on_a_mask_tunes_the_threshold(em):
    gt = (em.mito[12:16] > 0).astype(np.uint8)
    pred = _noisy(gt[None].astype(np.float32), scale=0.5, offset=0.1, noise=0.1)  # foreground ~0.6
    t = tune_postprocess(pred, gt, "binary")
    assert t.method == "cc" and t.objective == OBJECTIVES["semantic"]
    assert t.score >= t.default_score and t.score > 0.8


def test_the_search_budget_is_kept(em):
    gt = em.mito[12:16]
    t = tune_postprocess(_noisy(bc_target(gt).target), gt, "bc", budget_seconds=0.0)
    assert t.tried <= 3 and t.score >= t.default_score  # the defaults (and no new candidate) only


def test_labels_without_foreground_are_refused(em):
    gt = em.mito[12:16]
    pred = bc_target(gt).target
    with pytest.raises(ValueError, match="holds no labels.*--val"):
        tune_postprocess(pred, np.zeros_like(gt), "bc")


def test_a_mismatched_shape_is_refused(em):
    gt = em.mito[12:16]
    pred = bc_target(gt).target
    with pytest.raises(ValueError, match=r"shape \(3, 96, 96\).*\(4, 96, 96\)"):
        tune_postprocess(pred, gt[:3], "bc")


def test_score_segmentation_per_metric_set(em):
    gt = em.mito[12:16]
    assert score_segmentation("instance", gt, gt)["objective"] == 1.0
    assert score_segmentation("semantic", gt, gt)["objective"] == 1.0
    assert score_segmentation("neurons", em.neurons[:4], em.neurons[:4])["objective"] == pytest.approx(0.0)
    merged = (gt > 0).astype(np.uint8)  # every object merged into one
    assert score_segmentation("instance", gt, merged)["pq"] < 1.0
    assert score_segmentation("semantic", gt, merged)["foreground_iou"] == 1.0
