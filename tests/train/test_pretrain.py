"""Self-supervised pretraining (``emseg pretrain``, ``pretrain: masked``): the network learns to restore
masked blocks of unlabelled patches from several volumes, and its weights but the head start a run."""

import csv
import os

import numpy as np
import pytest
import torch

from emseg.cli import main
from emseg.config import ConfigError
from emseg.io import write_volume
from emseg.models import UNet
from emseg.models.checkpoint import read_model_header
from emseg.synthetic import synthetic_em
from emseg.train import load_config, train
from emseg.train.build import init_weights
from emseg.train.pretrain import block_mask


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrain")
    a, b = synthetic_em((6, 64, 64), seed=8), synthetic_em((4, 48, 48), seed=9)
    write_volume(str(tmp / "a.zarr"), a.raw, voxel_size=a.voxel_size)
    write_volume(str(tmp / "b.h5:raw"), b.raw, voxel_size=b.voxel_size)
    return tmp, [str(tmp / "a.zarr"), str(tmp / "b.h5:raw")]


def test_block_masks_cover_the_ratio_in_blocks():
    rng = np.random.default_rng(0)
    m = np.stack([block_mask((8, 64, 64), rng) for _ in range(50)])
    assert 0.45 < m.mean() < 0.55
    first = m[0]
    assert (first[:2] == first[0]).all()  # z blocks of a quarter of the depth
    assert (first[:, :8, :8] == first[:, :1, :1]).all()  # in-plane blocks of an eighth


def test_the_restoration_loss_falls_and_the_weights_start_a_run(volumes):
    tmp, raws = volumes
    config = load_config(raw=[], labels=[], unlabelled=raws, pretrain="masked", patch_shape=[32, 32], batch_size=4,
                         model={"features": 4, "depth": 2}, steps=80, warmup_steps=5, lr=3e-3, val_every=80,
                         threads=1, device="cpu", out_dir=str(tmp / "pre"))
    result = train(config)
    with open(tmp / "pre" / "log.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert np.mean(losses[-15:]) < 0.7 * np.mean(losses[:15])
    assert read_model_header(result.latest).extra["pretrain"] == "masked"
    torch.manual_seed(3)
    net = UNet(1, 1, ndim=2, depth=2, features=4)  # the same shapes, head included
    head = net.head.weight.clone()
    report = init_weights(net, result.latest)
    assert torch.equal(net.head.weight, head) and all(k.startswith("head.") for k in report.skipped)
    assert report.loaded == len(net.state_dict()) - 2  # every tensor but head.weight and head.bias


def test_emseg_pretrain_on_two_volumes(volumes, capsys):
    tmp, raws = volumes
    out = tmp / "cli"
    rc = main(["pretrain", *raws, str(out), "--minutes", "0.02", "--patch", "32,32", "--features", "4", "--depth",
               "2", "--batch-size", "2", "--no-progress", "--device", "cpu"])
    assert rc == 0
    assert "start a fit from it with `emseg fit RAW LABELS OUT_DIR --init" in capsys.readouterr().out
    assert os.path.exists(out / "latest.safetensors")


def test_pretraining_takes_unlabelled_volumes_only():
    with pytest.raises(ConfigError, match="learns from unlabelled volumes alone"):
        load_config(raw=["r.zarr"], labels=["l.zarr"], unlabelled=["u.zarr"], pretrain="masked")
    with pytest.raises(ConfigError, match="learns from unlabelled volumes alone"):
        load_config(pretrain="masked")
