"""Starting weights (``TrainConfig.init``): every tensor whose name and shape match is loaded, a new
output head keeps its initialisation, another architecture or an unknown name is refused."""

import numpy as np
import pytest
import torch

from emseg.models import UNet, load_model, save_model
from emseg.train.build import init_weights


def _saved(tmp_path, out_channels=2, **kw):
    torch.manual_seed(1)
    net = UNet(1, out_channels, ndim=2, depth=2, features=4, **kw)
    path = tmp_path / f"init-{out_channels}.safetensors"
    save_model(net, path)
    return net, str(path)


def test_matching_tensors_are_loaded_and_a_new_head_is_kept(tmp_path):
    source, path = _saved(tmp_path, out_channels=2)
    torch.manual_seed(2)
    target = UNet(1, 3, ndim=2, depth=2, features=4)  # another target: 3 output channels
    head_before = {k: v.clone() for k, v in target.state_dict().items()}
    report = init_weights(target, path)
    src, dst = source.state_dict(), target.state_dict()
    changed_shape = [k for k in dst if k in src and src[k].shape != dst[k].shape]
    assert changed_shape and set(changed_shape) <= set(report.skipped)  # the head: left as initialised
    for k in changed_shape:
        assert torch.equal(dst[k], head_before[k])
    same = [k for k in dst if k in src and src[k].shape == dst[k].shape]
    assert report.loaded == len(same) > 10
    for k in same:
        assert torch.equal(dst[k], src[k])


def test_a_shipped_model_name_is_accepted():
    from emseg.models.reader import read_checkpoint

    args = dict(read_checkpoint("mito-fibsem").init_args)
    net = UNet(**{**args, "out_channels": 1})
    report = init_weights(net, "mito-fibsem")
    assert report.loaded > 0 and report.skipped  # all but the 1-channel head
    x = torch.randn(1, 1, 64, 64)
    shipped = load_model(read_checkpoint("mito-fibsem").path)
    net.eval(), shipped.eval()
    with torch.no_grad():
        assert net(x).shape == (1, 1, 64, 64) and np.isfinite(shipped(x).numpy()).all()


def test_another_architecture_or_an_unknown_name_is_refused(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(ValueError, match="a 2D model, but this run trains a 3D one"):
        init_weights(UNet(1, 2, ndim=3, depth=2, features=4), path)
    with pytest.raises(ValueError, match="none of its convolutions fits"):
        init_weights(UNet(1, 2, ndim=2, depth=2, features=6), path)  # other widths: only shapes of norms agree
    with pytest.raises(FileNotFoundError, match="mito-fibsem"):
        init_weights(UNet(1, 2, ndim=2, depth=2, features=4), "no-such-model")


def test_a_training_run_starts_from_init(tmp_path):
    """A run with init starts from the given weights: its first loss is that of the init model."""
    from emseg.io import write_volume
    from emseg.synthetic import synthetic_em
    from emseg.train import load_config, train

    em = synthetic_em((8, 64, 64), seed=0)
    data = str(tmp_path / "em.h5")
    write_volume(data + ":raw", em.raw, voxel_size=em.voxel_size)
    write_volume(data + ":mito", em.mito, voxel_size=em.voxel_size)
    base = dict(raw=[data + ":raw"], labels=[data + ":mito"], val_roi="6:8", patch_shape=[32, 32], batch_size=2,
                target="bc", model={"features": 4, "depth": 2}, warmup_steps=1, val_every=100, val_patches=0,
                threads=1, device="cpu", amp=False)
    first = train(load_config(**base, steps=30, out_dir=str(tmp_path / "a")))
    again = train(load_config(**base, steps=1, lr=1e-12, init=first.latest, out_dir=str(tmp_path / "b")))
    a, b = load_model(first.latest).state_dict(), load_model(again.latest).state_dict()
    weights = [k for k in a if "running" not in k and "num_batches" not in k]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in weights)  # lr ~ 0: one step leaves the init weights
