"""Fine-tuning (``init`` + ``freeze``, ``init_lr_scale``, ``adabn_batches``): frozen parts keep their
weights and BatchNorm statistics, loaded tensors get their own learning rate, AdaBN replaces the
statistics by their average over the new data, and a fine-tuning run resumes exactly."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from emseg.config import ConfigError
from emseg.io import write_volume
from emseg.synthetic import synthetic_em
from emseg.train import load_config, train
from emseg.train.finetune import adapt_batchnorm, param_groups


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny volume and a tiny model trained on it for 2 steps (the 'pretrained' model)."""
    tmp = tmp_path_factory.mktemp("finetune")
    em = synthetic_em((8, 64, 64), seed=5)
    write_volume(f"{tmp}/em.h5:raw", em.raw, voxel_size=em.voxel_size)
    write_volume(f"{tmp}/em.h5:mito", em.mito, voxel_size=em.voxel_size)
    data = f"{tmp}/em.h5"
    result = train(_config(data, f"{tmp}/source", steps=2))
    return data, result.latest, tmp


def _config(data, out, **kw):
    base = dict(raw=[f"{data}:raw"], labels=[f"{data}:mito"], patch_shape=[32, 32], batch_size=2, val_fraction=0.0,
                model={"features": 4, "depth": 2}, steps=4, val_every=2, threads=1, out_dir=str(out), warmup_steps=1,
                device="cpu", lr=1e-2)
    base.update(kw)
    return load_config(**base)


@pytest.mark.parametrize("freeze,fixed", [("encoder", ("encoder.", "pools.", "bottleneck.")),
                                          ("all_but_head", ("encoder.", "bottleneck.", "upsamplers.", "decoder."))])
def test_frozen_parts_keep_their_weights_and_statistics(source, freeze, fixed):
    data, init, tmp = source
    result = train(_config(data, tmp / f"ft-{freeze}", init=init, freeze=freeze))
    before, after = load_file(init), load_file(result.latest)
    for k in before:
        same = torch.equal(before[k], after[k])
        if k.startswith(fixed):
            assert same, k  # weights and running_mean / running_var
        elif k.startswith("head.") and k.endswith("weight"):
            assert not same, k  # the head trains in every case


def test_loaded_tensors_get_init_lr_scale_times_the_learning_rate():
    from emseg.models import UNet

    net = UNet(1, 2, ndim=2, depth=2, features=4)
    loaded = {n for n, _ in net.named_parameters() if not n.startswith("head.")}
    groups = param_groups(net, loaded, 1e-3, 0.1)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in net.head.parameters()}


def test_adabn_statistics_are_the_average_over_the_new_batches():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3))
    batches = [torch.randn(2, 1, 8, 8) * (i + 1) + i for i in range(4)]
    weight = net[1].weight.clone()
    assert adapt_batchnorm(net, batches) == 1
    with torch.no_grad():
        feats = [net[0](x) for x in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    assert torch.allclose(net[1].running_mean, mean, atol=1e-5)
    assert torch.allclose(net[1].running_var, var, rtol=1e-4)
    assert torch.equal(net[1].weight, weight) and net[1].momentum == 0.1


def test_a_fine_tuning_run_resumes_exactly(source, crash_after_checkpoint):
    """A run that dies after its step-2 checkpoint and is resumed ends with the weights of one never stopped."""
    data, init, tmp = source
    kw = dict(init=init, freeze="encoder", init_lr_scale=0.1, adabn_batches=2)
    whole = train(_config(data, tmp / "whole", **kw))
    crash_after_checkpoint.crash()
    with pytest.raises(crash_after_checkpoint.Crash):
        train(_config(data, tmp / "parts", **kw))
    crash_after_checkpoint.resume()
    parts = train(_config(data, tmp / "parts", **kw))
    assert parts.start_step == 2
    a, b = load_file(whole.latest), load_file(parts.latest)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_adabn_changes_the_statistics_and_nothing_else(source):
    data, init, tmp = source
    from emseg.models import load_model

    # lr so small that one step leaves the weights where they were, to compare statistics alone
    result = train(_config(data, tmp / "adabn", init=init, adabn_batches=3, steps=1, lr=1e-12, warmup_steps=0))
    before, after = load_file(init), load_file(result.latest)
    stats = [k for k in before if k.endswith("running_mean")]
    assert stats and all(not torch.equal(before[k], after[k]) for k in stats)
    assert np.isfinite(load_model(result.latest)(torch.zeros(1, 1, 32, 32)).detach().numpy()).all()


def test_fine_tuning_options_need_init():
    with pytest.raises(ConfigError, match="freeze applies to the weights of init"):
        load_config(freeze="encoder")
    with pytest.raises(ConfigError, match="freeze must be one of"):
        load_config(init="mito-fibsem", freeze="decoder")
    with pytest.raises(ConfigError, match="init_lr_scale must be a positive number"):
        load_config(init="mito-fibsem", init_lr_scale=0)
