"""The SDT task (emseg.tasks.sdt): target values, post-processing, and train -> predict -> instances end to end."""

import numpy as np
import pytest
from scipy import ndimage

from emseg.io import read_volume, write_volume
from emseg.synthetic import synthetic_em
from emseg.tasks import TASKS, get_task, task_params
from emseg.tasks.sdt import sdt_target, sdt_watershed


def test_target_is_the_tanh_signed_distance_encoded_in_0_1():
    labels = np.zeros((1, 9), np.uint16)
    labels[0, 2:7] = 4
    t = sdt_target(labels, scale=2.0)
    # inside: distance to the nearest other label (background) is 1, 2, 3, 2, 1; outside 2, 1 and 1, 2
    signed = np.array([-2, -1, 1, 2, 3, 2, 1, -1, -2], np.float32)
    np.testing.assert_allclose(t.target[0, 0], (1 + np.tanh(signed / 2)) / 2, rtol=1e-6)
    assert t.mask.min() == 1 and t.target.shape == (1, 1, 9)


def test_target_respects_voxel_size_and_ignore_label():
    labels = np.zeros((5, 5, 5), np.uint8)
    labels[:, 2, 2] = 1  # a rod along z: 1 voxel from background in y/x
    near = sdt_target(labels, scale=10.0, voxel_size=(1, 1, 1)).target[0, 2, 2, 2]
    far = sdt_target(labels, scale=10.0, voxel_size=(1, 4, 4)).target[0, 2, 2, 2]
    assert far > near > 0.5  # the same voxel steps count 4 nm in y/x
    labels[0] = 9
    t = sdt_target(labels, scale=10.0, ignore_label=9)
    assert t.mask[0, 0].max() == 0 and t.target[0, 0].max() == 0
    # a distance counts where the ignored section is farther than the nearest border: the rod (1 voxel to
    # background in-plane) from z 2, every voxel (at most 2.8 in-plane) from z 3; not the rod at z 1 (1 = 1)
    assert t.mask[0, 2:, 2, 2].min() == 1 and t.mask[0, 3:].min() == 1 and t.mask[0, 1, 2, 2] == 0


def test_watershed_separates_touching_objects_along_the_distance_valley():
    labels = np.zeros((40, 80), np.uint8)
    yy, xx = np.mgrid[:40, :80]
    labels[(yy - 20) ** 2 + (xx - 25) ** 2 < 15 ** 2] = 1
    labels[(yy - 20) ** 2 + (xx - 52) ** 2 < 15 ** 2] = 2  # overlaps the first: two touching discs
    seg = sdt_watershed(sdt_target(labels, scale=4.0).target[0])
    assert len(np.unique(seg)) == 3  # two objects and background; one connected mask would give one
    inside = labels > 0
    assert (seg[inside] > 0).mean() > 0.97 and (seg[~inside] == 0).mean() > 0.97


def test_sdt_is_one_registry_entry():
    task = get_task("sdt")
    assert task.channels(task_params("sdt")) == 1 and task.method({}) == ("sdt", {}) and task.metrics == "instance"
    from emseg.instances import METHODS

    assert "sdt" in METHODS and "sdt" in TASKS
    with pytest.raises(ValueError, match="scale=-1"):
        task_params("sdt", {"scale": -1})


def test_sdt_trains_predicts_and_segments_end_to_end(tmp_path):
    from emseg.metrics import evaluate
    from emseg.models.reader import read_checkpoint
    from emseg.train import load_config, train
    from emseg.workflows import segment_volume

    em = synthetic_em((8, 96, 96), seed=5)
    write_volume(tmp_path / "em.h5:raw", em.raw, voxel_size=em.voxel_size)
    write_volume(tmp_path / "em.h5:mito", em.mito, voxel_size=em.voxel_size)
    config = load_config(raw=[f"{tmp_path}/em.h5:raw"], labels=[f"{tmp_path}/em.h5:mito"], target="sdt",
                         target_params={"scale": 20.0}, val_roi="6:8", patch_shape=[64, 64], batch_size=4,
                         foreground_fraction=0.5, model={"features": 8, "depth": 2}, lr=3e-3, steps=60, val_every=30,
                         val_patches=2, threads=1, out_dir=str(tmp_path / "run"), warmup_steps=5, device="cpu",
                         amp=False)
    result = train(config)
    info = read_checkpoint(result.latest)
    assert info.task == "sdt" and info.task_params == {"scale": 20.0} and info.activations == ("sigmoid",)
    assert info.postprocess().method == "sdt"
    out = segment_volume(f"{tmp_path}/em.h5:raw", str(tmp_path / "seg.zarr"), result.latest,
                         probabilities=str(tmp_path / "prob.zarr"), block_shape=(4, 96, 96), workers=1)
    prob = read_volume(str(tmp_path / "prob.zarr"))
    assert prob.shape == (1,) + em.raw.shape and 0 <= prob.min() and prob.max() <= 1
    seg = read_volume(str(tmp_path / "seg.zarr"))
    assert out.segment.n_objects == len(np.unique(seg)) - 1 > 0
    # after a minute of training the map already tells mitochondria from the rest: better than chance
    iou = evaluate(em.mito > 0, seg > 0, task="semantic", metrics="iou")["iou"]
    assert iou > 0.2, iou
    assert ndimage.label(seg > 0)[1] >= 1
