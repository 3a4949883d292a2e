"""Sparse and partial labels (``sections``, ``label_mask``, ``ignore_label`` + ``background_label``):
unknown voxels give no loss and no gradient for every target, a run never sees the labels of
unlabelled sections (poisoned labels there change nothing), patches are drawn where labels are
known, and bad sparse input fails with one line."""

import csv
import os

import numpy as np
import pytest
import torch

from emseg.io import write_volume
from emseg.synthetic import synthetic_em
from emseg.tasks import TASKS
from emseg.train import load_config, train
from emseg.train.batches import load_training_data, make_target
from emseg.train.losses import task_loss
from emseg.train.patches import sample_patch
from emseg.train.sparse import UNKNOWN, Known, known_labels

TARGETS = sorted(TASKS)


@pytest.mark.parametrize("target", TARGETS)
def test_a_fully_unknown_patch_gives_exactly_zero_loss_and_zero_gradients(target):
    config = load_config(target=target, sections=[0], patch_shape=[4, 16, 16],
                         offsets=[[-1, 0, 0], [0, -3, 0], [0, 0, -3]])
    labels = np.full((4, 16, 16), UNKNOWN, np.int64)
    t, m = make_target(labels, config, voxel_size=[10, 4, 4])
    assert not m.any()
    torch.manual_seed(0)
    logits = torch.randn((1,) + t.shape, requires_grad=True)
    loss = task_loss(config, logits, torch.from_numpy(t[None]), torch.from_numpy(m[None]), pos_weight=3.0)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize("target", ["bc", "affinities", "boundary"])
def test_contours_and_affinities_that_touch_unknown_voxels_give_no_loss(target):
    config = load_config(target=target, sections=[0], patch_shape=[16, 16], offsets=[[0, -1], [-1, 0]])
    labels = np.zeros((16, 16), np.int64)
    labels[4:12, 4:12] = 1
    labels[:, 8:] = UNKNOWN  # the right half: unknown (a stroke's edge through the object)
    t, m = make_target(labels, config, voxel_size=[4, 4])
    assert not m[:, :, 8:].any()  # nothing unknown counts, nor an affinity to an unknown voxel (stored at x = 8)
    if target == "bc":
        assert not m[1, :, 7].any() and m[0, :, 7].all()  # a contour next to an unknown voxel is unknown too
    assert m[:, 1:, 1:7].all()  # the known part does count (x = 0 / y = 0: affinities leaving the patch)


def _volume(tmp_path, poison):
    em = synthetic_em((10, 64, 64), seed=4)
    labels = em.mito.astype(np.uint8)
    if poison is not None:
        other = np.setdiff1d(np.arange(10), [2, 6])
        labels[other] = np.random.default_rng(poison).integers(0, 2, (len(other), 64, 64))
    path = tmp_path / f"em-{poison}.h5"
    write_volume(f"{path}:raw", em.raw, voxel_size=em.voxel_size)
    write_volume(f"{path}:mito", labels, voxel_size=em.voxel_size)
    return str(path)


def _run(data, out, **kw):
    config = load_config(raw=[f"{data}:raw"], labels=[f"{data}:mito"], patch_shape=kw.pop("patch_shape", [32, 32]),
                         batch_size=2, model={"features": 4, "depth": 2}, steps=6, val_every=3, val_fraction=0.0,
                         threads=1, out_dir=str(out), warmup_steps=1, device="cpu", sections=[2, 6], **kw)
    result = train(config)
    with open(os.path.join(out, "log.csv")) as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    from safetensors.torch import load_file

    return losses, load_file(result.latest), config


@pytest.mark.parametrize("patch_shape,target", [([32, 32], "binary"), ([4, 32, 32], "bc")])
def test_a_run_never_sees_the_labels_of_unlabelled_sections(tmp_path, patch_shape, target):
    """Two volumes that differ only in (random, poisoned) labels outside sections 2 and 6 train identically."""
    a, b = _volume(tmp_path, poison=1), _volume(tmp_path, poison=2)
    la, wa, _ = _run(a, tmp_path / "a", patch_shape=patch_shape, target=target)
    lb, wb, _ = _run(b, tmp_path / "b", patch_shape=patch_shape, target=target)
    assert la == lb and all(np.isfinite(la))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    clean = _volume(tmp_path, poison=None)
    lc, _, _ = _run(clean, tmp_path / "c", patch_shape=patch_shape, target=target)
    assert lc == la  # and the true labels of the other sections are not used either


def test_2d_patches_come_from_the_labelled_sections_only(tmp_path):
    data = _volume(tmp_path, poison=None)
    config = load_config(raw=[f"{data}:raw"], labels=[f"{data}:mito"], patch_shape=[16, 16], val_fraction=0.0,
                         sections=[2, 6], foreground_fraction=0.5)
    vol = load_training_data(config).volumes[0]
    assert set(vol.known_coords[:, 0]) == {2, 6} and set(vol.foreground[:, 0]) <= {2, 6}
    rng = np.random.default_rng(0)
    for _ in range(50):
        patch = sample_patch([vol], (16, 16), rng, 0.5)
        assert (patch.labels != UNKNOWN).all()


def test_a_label_mask_and_painted_values_mark_what_is_known():
    labels = np.array([[[0, 1, 2, 2], [0, 1, 3, 0]]])
    mask = np.array([[[1, 1, 1, 0], [1, 1, 1, 1]]])
    roi = (slice(0, 1), slice(0, 2), slice(0, 4))
    out = known_labels(labels, roi, Known(mask=mask, ignore_label=0, background_label=1))
    assert out.tolist() == [[[-1, 0, 2, -1], [-1, 0, 3, -1]]]


def test_bad_sparse_input_is_refused_with_one_line(tmp_path):
    data = _volume(tmp_path, poison=None)
    base = dict(raw=[f"{data}:raw"], labels=[f"{data}:mito"], patch_shape=[16, 16], val_fraction=0.0)
    with pytest.raises(ValueError, match=r"sections: 12 outside labels .* \(10 sections, z 0-9\)"):
        load_training_data(load_config(**base, sections=[2, 12]))
    empty = tmp_path / "empty.h5"
    em = synthetic_em((10, 64, 64), seed=4)
    labels = em.mito.astype(np.uint8)
    labels[[3, 5]] = 0
    write_volume(f"{empty}:raw", em.raw)
    write_volume(f"{empty}:mito", labels)
    with pytest.raises(ValueError, match=r"sections: 3, 5 of labels .* hold no labels"):
        load_training_data(load_config(**{**base, "raw": [f"{empty}:raw"], "labels": [f"{empty}:mito"]},
                                       sections=[2, 3, 5]))
    write_volume(tmp_path / "mask.h5:m", np.ones((10, 64, 60), np.uint8))
    with pytest.raises(ValueError, match=r"label_mask .* has shape \(10, 64, 60\) but labels .* \(10, 64, 64\)"):
        load_training_data(load_config(**base, label_mask=[str(tmp_path / "mask.h5:m")]))
    write_volume(tmp_path / "zero.h5:m", np.zeros((10, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="holds no known labels"):
        load_training_data(load_config(**base, label_mask=[str(tmp_path / "zero.h5:m")]))


@pytest.mark.parametrize("target", ["bcd", "sdt"])
def test_distances_that_unknown_voxels_could_change_give_no_loss(target):
    """An object cut by unknown voxels may go on there: its distances are unknown (bcd: the whole object,
    its peak is unknown; sdt: where the nearest unknown voxel is nearer than the nearest boundary)."""
    config = load_config(target=target, sections=[0], patch_shape=[1, 12])
    labels = np.array([[0, 1, 1, 1, 0, 0, 2, 2, 2, 2, UNKNOWN, UNKNOWN]])
    t, m = make_target(labels, config, voxel_size=[4, 4])
    dist = 2 if target == "bcd" else 0
    cut = 6 if target == "bcd" else 8  # sdt: voxels 6-7 are nearer to object 2's known left border
    assert not m[dist, 0, cut:].any() and m[dist, 0, :cut].all()
    assert m[dist, 0, 1:4].all()  # object 1 is known whole
    dense = make_target(np.array([[0, 1, 1, 1, 0, 0, 2, 2, 2, 2, 0, 0]]), load_config(target=target,
                        patch_shape=[1, 12]), voxel_size=[4, 4])
    np.testing.assert_allclose(t[dist, 0, :4], dense.target[dist, 0, :4], atol=1e-6)  # the same where known


def test_a_section_painted_as_background_only_is_annotated(tmp_path):
    data = _volume(tmp_path, poison=None)
    em = synthetic_em((10, 64, 64), seed=4)
    painted = (em.mito.astype(np.uint8) + 1)  # 1 = painted background, 2 = mitochondria
    painted[3] = 1  # section 3: painted, all background
    write_volume(tmp_path / "painted.h5:p", painted)
    config = load_config(raw=[f"{data}:raw"], labels=[str(tmp_path / "painted.h5:p")], patch_shape=[16, 16],
                         val_fraction=0.0, sections=[2, 3], ignore_label=0, background_label=1)
    vol = load_training_data(config).volumes[0]
    assert set(vol.known_coords[:, 0]) == {2, 3} and set(vol.foreground[:, 0]) == {2}
