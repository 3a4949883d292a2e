"""infer_task and evaluate without a task: masks and probabilities -> semantic, separate objects ->
instance, dense touching ids -> neurons, on hand-built arrays, a lazy volume and the real data."""

import re

import numpy as np
import pytest

from emseg.io import open_volume, read_volume, write_volume
from emseg.metrics import (METRIC_SETS, METRICS, EvaluateConfig, TaskChoice, adapted_rand_error, average_precision,
                           evaluate, infer_task, panoptic_quality, variation_of_information)


def organelles(shape=(8, 64, 64)):
    """Six separate boxes (ids 1..6) in background: mitochondria-like instances."""
    labels = np.zeros(shape, np.uint16)
    for k, (y, x) in enumerate([(5, 5), (5, 40), (25, 20), (40, 50), (50, 8), (30, 40)]):
        labels[2:6, y:y + 8, x:x + 10] = k + 1
    return labels


def dense(shape=(8, 64, 64), seed=0):
    """Neuron-like labels: every voxel belongs to one of many 8x8 columns with random ids, all touching."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1, 65, dtype=np.uint32)).reshape(8, 8)
    return np.broadcast_to(ids.repeat(8, 0).repeat(8, 1), shape).copy()


def merged(labels):
    """``labels`` with two ids merged and one split: a different segmentation of the same volume."""
    out = labels.copy()
    ids = np.unique(labels[labels > 0])
    out[out == ids[1]] = ids[0]
    half = (out == ids[2]) & (np.arange(out.shape[-1]) < np.nonzero(out == ids[2])[-1].mean())
    out[half] = ids.max() + 1
    return out


# ------------------------------------------------------------------------------- hand-built arrays
@pytest.mark.parametrize("mask", [np.array([[0, 255], [255, 0]], np.uint8), np.array([[0, 1], [1, 1]], np.uint32),
                                  np.array([[False, True], [True, True]])])
def test_a_mask_is_semantic(mask):
    choice = infer_task(mask, mask)
    assert isinstance(choice, TaskChoice) and choice.task == "semantic" and "gt is a mask" in choice.reason


def test_probabilities_are_semantic():
    rng = np.random.default_rng(0)
    prob = rng.random((4, 32, 32)).astype(np.float32)
    assert infer_task(prob > 0.5, prob) == ("semantic", "gt is a mask (bool)")
    assert infer_task(prob, prob) == ("semantic", "gt holds probabilities (float32)")
    choice = infer_task(organelles(), rng.random((8, 64, 64)).astype(np.float32))  # ids cannot meet probabilities
    assert choice.task == "semantic" and "gt holds 6 ids; segment pred" in choice.reason


def test_separate_objects_are_instances():
    gt = organelles()
    task, reason = infer_task(gt, merged(gt))
    assert task == "instance"
    assert re.fullmatch(r"gt holds 6 separate ids covering \d% of sampled voxels: object instances", reason)


def test_dense_touching_ids_are_neurons():
    gt = dense()
    choice = infer_task(gt, merged(gt))
    assert choice == ("neurons", "gt holds 64 touching ids covering 100% of sampled voxels: dense neuron labels")


def test_gt_decides_and_pred_only_when_gt_is_ambiguous():
    assert infer_task(organelles(), dense()).task == "instance"  # gt is clear: pred's kind does not count
    assert infer_task(dense(), organelles()).task == "neurons"
    # ambiguous gt: a patch of small touching ids among much background
    gt = np.zeros((4, 64, 64), np.uint32)
    gt[:, 20:44, 20:44] = np.arange(1, 37).reshape(6, 6).repeat(4, 0).repeat(4, 1)
    assert infer_task(gt, dense(gt.shape)).task == "neurons"
    by_pred = infer_task(gt, organelles(gt.shape))
    assert by_pred.task == "instance" and "touching ids" in by_pred.reason and "separate ids" in by_pred.reason
    assert infer_task(gt, gt).task == "neurons"  # both ambiguous: gt's leaning (its ids touch)
    # dense cells separated by thin background membranes (0 between them): neurons, not instances
    cells = dense()
    cells[:, :, ::8] = cells[:, ::8, :] = 0
    choice = infer_task(cells, cells)
    assert choice.task == "neurons" and "of the background next to an id" in choice.reason
    assert infer_task(cells, organelles()).task == "instance"  # ... unless pred says otherwise


class Lazy:
    """A 16-gigavoxel label volume computed on read (never in memory), counting what is read."""

    def __init__(self, kind):
        self.shape, self.dtype, self.chunks, self.kind, self.read = (1000, 4096, 4096), np.dtype(np.uint64), \
            (64, 256, 256), kind, 0

    def __getitem__(self, key):
        z, y, x = np.ogrid[key]
        self.read += z.size * y.size * x.size
        if self.kind == "neurons":  # 32-voxel columns, ids touching everywhere
            return np.broadcast_to((y // 32) * 128 + x // 32 + 1 + 0 * z, (z.size, y.size, x.size)).astype(np.uint64)
        inside = ((y % 100) < 20) & ((x % 100) < 20) & ((z % 50) < 10)  # small separate objects
        return np.where(inside, (z // 50) * 10**4 + (y // 100) * 100 + x // 100 + 1, 0).astype(np.uint64)


@pytest.mark.parametrize("kind", ["neurons", "instance"])
def test_lazy_volumes_are_sampled_not_read(kind):
    gt, pred = Lazy(kind), Lazy(kind)
    assert infer_task(gt, pred).task == kind
    assert gt.read < 4_000_000 and pred.read < 4_000_000  # of 16.8e9 voxels


# ------------------------------------------------------------------------------- evaluate without a task
def test_evaluate_infers_neurons_on_two_dense_label_volumes(caplog):
    gt = dense()
    pred = merged(gt)
    with caplog.at_level("INFO", logger="emseg.metrics.evaluate"):
        r = evaluate(gt, pred)
    assert "task neurons: gt holds 64 touching ids" in caplog.text
    assert "iou" not in r and "dice" not in r  # not a foreground score of two segmentations
    are, voi = adapted_rand_error(gt, pred), variation_of_information(gt, pred, ignore_label=0)
    assert r["adapted_rand_error"] == are.error and r["voi_split"] == voi.split and r["voi_merge"] == voi.merge
    assert r["adapted_rand_error"] > 0 and r["voi_merge"] > 0 and r["voi_split"] > 0


def test_evaluate_infers_instance_on_organelles():
    gt = organelles()
    pred = merged(gt)
    r = evaluate(gt, pred)
    assert "iou" not in r and {"ap50", "map", "pq", "aji", "tp50"} <= set(r)
    assert r["ap50"] == average_precision(gt, pred).ap50 < 1 and r["pq"] == panoptic_quality(gt, pred).pq < 1


def test_evaluate_infers_semantic_for_a_mask():
    gt = (organelles() > 0).astype(np.uint8) * 255
    assert evaluate(gt, gt) == {k: 1.0 for k in METRIC_SETS["semantic"]}


def test_explicit_semantic_on_two_label_volumes_is_refused_unless_metrics_are_named():
    gt, pred = dense(), merged(dense())
    write_volume("gt.h5:ids", gt)
    write_volume("seg.zarr", pred)
    with pytest.raises(ValueError) as err:
        evaluate(open_volume("gt.h5:ids"), open_volume("seg.zarr"), task="semantic")
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "gt gt.h5:ids holds 64 touching ids" in message
    assert "pred" in message and "pred seg.zarr:0 holds" in message and "pass task='neurons'" in message
    with pytest.raises(ValueError, match="pass task='instance'"):
        evaluate(organelles(), merged(organelles()), task="semantic", metrics="all")  # "all" names none
    assert evaluate(gt, pred, task="semantic", metrics="iou") == {"iou": 1.0}  # named: the caller knows
    mask = (gt > 32).astype(np.uint8)
    assert evaluate(mask, pred, task="semantic")["iou"] < 1  # one side is a mask: foreground scores are the point


# ------------------------------------------------------------------------------- one configuration
def test_config_and_options_are_one_thing():
    gt, pred = dense(), merged(dense())
    cfg = EvaluateConfig(task="neurons", metrics=["VOI", "adapted_rand"])
    assert cfg.metrics == ("voi", "adapted_rand") and cfg.named_metrics
    assert evaluate(gt, pred, cfg) == evaluate(gt, pred, task="neurons", metrics="voi,adapted_rand")
    assert set(evaluate(gt, pred, cfg, metrics="rand")) == {"rand_index", "rand_error"}  # options replace fields
    with pytest.raises(TypeError, match="unknown option 'ignore_gt'; valid options: boundary_tolerance_nm, "
                                        "ignore_label, iou_threshold, metrics, task, threshold, trusted, voxel_size"):
        evaluate(gt, pred, ignore_gt=0)
    with pytest.raises(TypeError, match="config must be an EvaluateConfig; got dict"):
        evaluate(gt, pred, {"task": "neurons"})
    with pytest.raises(AttributeError):
        cfg.task = "instance"  # frozen


def test_config_is_checked_when_built():
    from emseg.config import ConfigError

    for kwargs, message in [({"task": "cells"}, "task must be one of semantic, instance, neurons, membranes"),
                            ({"metrics": "iou,bogus"}, "unknown metric(s) bogus; valid metrics: accuracy"),
                            ({"metrics": 3}, "metrics must be names"),
                            ({"ignore_label": -1}, "ignore_label must be a label id >= 0; got -1"),
                            ({"threshold": 1}, r"threshold=1 must lie in (0, 1)"),
                            ({"voxel_size": (40, 0, 4)}, "voxel_size must be positive sizes in nm"),
                            ({"boundary_tolerance_nm": "x"}, "boundary_tolerance_nm='x' must be a distance >= 0"),
                            ({"trusted": 1}, "trusted must be true or false")]:
        with pytest.raises(ConfigError) as err:
            EvaluateConfig(**kwargs)
        assert message in str(err.value) and err.value.key == next(iter(kwargs))
    cfg = EvaluateConfig(ignore_label=np.uint8(3), threshold=np.float32(0.25), voxel_size=[40, 4, 4])
    assert (cfg.ignore_label, cfg.threshold, cfg.voxel_size) == (3, 0.25, (40.0, 4.0, 4.0))


def test_metric_sets_are_the_one_vocabulary():
    assert tuple(METRIC_SETS) == ("semantic", "instance", "neurons", "membranes")
    assert set(METRICS.values()) == set(METRIC_SETS)
    assert all(METRICS[m] == task or m == "pixel_error" for task, ms in METRIC_SETS.items() for m in ms)


# ------------------------------------------------------------------------------- real data
@pytest.mark.parametrize("rel, task", [("flyem_medulla/sample2_z000-149.h5:volumes/labels/neuron_ids", "neurons"),
                                       ("gala_flyem/test-gt.lzf.h5:stack", "neurons"),
                                       ("urocell_labels/mito/instance/fib1-0-0-0.nii.gz", "instance"),
                                       ("urocell_labels/mito/binary/fib1-0-0-0.nii.gz", "semantic"),
                                       ("lucchi/training_groundtruth.tif", "semantic")])
def test_real_ground_truth(shared_data, rel, task):
    path = shared_data / rel.split(":")[0]
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with open_volume(f"{shared_data}/{rel}") as vol:  # lazy: only sampled chunks are read
        choice = infer_task(vol, vol)
    assert choice.task == task, choice.reason


def test_real_neurons_and_mitochondria_are_scored_as_such(shared_data):
    neurons = shared_data / "flyem_medulla/sample2_z000-149.h5"
    mito = shared_data / "urocell_labels/mito/instance/fib1-3-3-0.nii.gz"
    if not (neurons.exists() and mito.exists()):
        pytest.skip("FlyEM medulla or UroCell labels are absent")
    gt = read_volume(f"{neurons}:volumes/labels/neuron_ids")[:20, :120, :120].astype(np.uint32)
    r = evaluate(gt, merged(gt))
    assert "iou" not in r and r["adapted_rand_error"] == adapted_rand_error(gt, merged(gt)).error > 0
    gt = read_volume(mito)[100:160].astype(np.uint16)
    r = evaluate(gt, merged(gt))
    assert "iou" not in r and 0 < r["ap50"] < 1 and 0 < r["pq"] < 1


def test_cli_evaluate_without_task_scores_neurons_and_organelles_as_such(capsys):
    """`emseg evaluate gt.h5:labels seg.zarr` with no --task: adapted Rand/VOI for dense neuron labels,
    AP/PQ for organelle instances, and it says which task it chose; never a semantic IoU."""
    from emseg.cli import main
    from emseg.io import write_volume
    from emseg.synthetic import synthetic_em

    em = synthetic_em((8, 96, 96), seed=2)
    merged = em.neurons.copy()
    merged[merged == merged.max()] = 1  # another segmentation: two neurons merged
    write_volume("gt.h5:labels", em.neurons)
    write_volume("seg.zarr", merged)
    assert main(["evaluate", "gt.h5:labels", "seg.zarr"]) == 0
    out = capsys.readouterr().out
    assert "task: neurons" in out and "adapted_rand_error" in out and "voi " in out and "iou" not in out, out
    zz, yy, xx = np.mgrid[:16, :96, :96]
    gt_mito = np.zeros((16, 96, 96), np.uint16)  # six separate organelles among much background
    for i, (z, y, x) in enumerate([(4, 20, 20), (8, 20, 70), (12, 50, 40), (6, 75, 15), (10, 75, 75), (3, 45, 80)]):
        gt_mito[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 < 8 ** 2] = i + 1
    mito = gt_mito.copy()
    mito[mito == 1] = 0  # one mitochondrion missed
    write_volume("gt.h5:mito", gt_mito)
    write_volume("mito.zarr", mito)
    assert main(["evaluate", "gt.h5:mito", "mito.zarr"]) == 0
    out = capsys.readouterr().out
    assert "task: instance" in out and "ap50" in out and "pq " in out and "iou" not in out, out
