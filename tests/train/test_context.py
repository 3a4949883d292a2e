"""2.5D training (``context``: a 2D network that sees the k sections above and below as input channels):
the patches hold the right sections in the order prediction gives them (read from the volume, also
beyond the training region), the labels of the centre section alone; a trained 2.5D checkpoint
predicts a volume exactly as its network computes the stacked sections; bad values are refused."""

import numpy as np
import pytest
import torch

from emseg.config import ConfigError
from emseg.io import write_volume
from emseg.synthetic import synthetic_em
from emseg.train import load_config, train
from emseg.train.patches import load_train_volume, sample_patch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def em(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("context")
    em = synthetic_em((8, 64, 64), seed=3)
    write_volume(f"{tmp}/em.h5:raw", em.raw, voxel_size=em.voxel_size)
    write_volume(f"{tmp}/em.h5:mito", em.mito, voxel_size=em.voxel_size)
    return f"{tmp}/em.h5", em


@pytest.fixture
def stamped(tmp_path):
    """A volume whose every section is its z (raw z*10 + noise; labels: z + 1 everywhere)."""
    rng = np.random.default_rng(0)
    raw = (np.arange(8)[:, None, None] * 10 + rng.random((8, 16, 16)) * 5).astype(np.float32)
    labels = np.broadcast_to(np.arange(1, 9)[:, None, None], raw.shape).astype(np.uint8)
    write_volume(f"{tmp_path}/s.h5:raw", raw)
    write_volume(f"{tmp_path}/s.h5:lab", labels)
    return f"{tmp_path}/s.h5", raw


def test_a_patch_holds_the_sections_around_its_labels_in_prediction_order(stamped):
    path, raw = stamped
    vol = load_train_volume(f"{path}:raw", f"{path}:lab").train
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(40):
        p = sample_patch([vol], (16, 16), rng, foreground_fraction=0.0, context=2)
        assert p.raw.shape == (5, 16, 16) and p.labels.shape == (16, 16)
        z = int(p.labels[0, 0]) - 1
        assert (p.labels == z + 1).all()
        seen.add(z)
        for c in range(5):  # channel c is section z - 2 + c (the volume's ends repeated), as predict_blockwise reads
            assert np.array_equal(p.raw[c], raw[min(max(z - 2 + c, 0), 7)])
    assert {0, 7} <= seen


def test_sections_beyond_a_training_region_are_read_from_the_volume_their_labels_never(stamped):
    path, raw = stamped
    split = load_train_volume(f"{path}:raw", f"{path}:lab", val_roi="6:8")
    rng = np.random.default_rng(2)
    seen = set()
    for _ in range(40):
        p = sample_patch([split.train], (16, 16), rng, context=3)
        z = int(p.labels[0, 0]) - 1
        assert z < 6 and (p.labels == z + 1).all()  # labels: the training region's only
        seen.add(z)
        for c in range(7):  # raw: the volume's neighbours, as prediction reads them
            assert np.array_equal(p.raw[c], raw[min(max(z - 3 + c, 0), 7)])
    assert 5 in seen
    v = sample_patch([split.validation], (16, 16), rng, context=3)
    assert len({float(v.raw[c].mean()) for c in range(7)}) > 2  # a one-part validation patch is not one section repeated


def test_a_trained_2_5d_checkpoint_predicts_what_its_network_computes_on_the_stacked_sections(em, tmp_path):
    from emseg.models.checkpoint import load_model
    from emseg.predict import predict_blockwise

    path, data = em
    config = load_config(raw=[f"{path}:raw"], labels=[f"{path}:mito"], patch_shape=[32, 32], batch_size=2,
                         context=1, model={"features": 4, "depth": 2}, steps=3, val_every=3, val_patches=2,
                         val_fraction=0.25, warmup_steps=1, threads=1, device="cpu", out_dir=str(tmp_path / "run"))
    train(config, progress=False)
    model = load_model(str(tmp_path / "run" / "latest.safetensors"))
    assert model.in_channels == 3
    out = predict_blockwise(f"{path}:raw", str(tmp_path / "run" / "latest.safetensors"), str(tmp_path / "p.zarr"),
                            block_shape=(2, 64, 64), dtype="float32", workers=1).out
    from emseg.models.reader import read_checkpoint

    x = read_checkpoint(str(tmp_path / "run" / "latest.safetensors")).normalization(data.raw.astype(np.float32))
    for z in (0, 4, 7):
        stack = np.stack([x[min(max(z + d, 0), 7)] for d in (-1, 0, 1)])[None]
        with torch.no_grad():
            want = torch.sigmoid(model.eval()(torch.from_numpy(stack)))[0, 0].numpy()
        assert np.allclose(np.asarray(out[0, z]), want, atol=1e-4), z


def test_a_semi_supervised_2_5d_run_trains_on_stacked_unlabelled_sections(em, tmp_path):
    path, _ = em
    config = load_config(raw=[f"{path}:raw"], labels=[f"{path}:mito"], patch_shape=[32, 32], batch_size=2,
                         context=1, sections=[2, 5], semi="mean_teacher", model={"features": 4, "depth": 2}, steps=2,
                         val_fraction=0.0, warmup_steps=1, threads=1, device="cpu", out_dir=str(tmp_path / "semi"),
                         consistency_rampup=0.0, confidence=0.5)
    train(config, progress=False)
    from emseg.models.checkpoint import load_model

    assert load_model(str(tmp_path / "semi" / "teacher.safetensors")).in_channels == 3


def test_fine_tuning_a_one_section_model_with_context_gives_it_a_new_first_layer(em, tmp_path):
    path, _ = em
    base = dict(raw=[f"{path}:raw"], labels=[f"{path}:mito"], patch_shape=[32, 32], batch_size=2,
                model={"features": 4, "depth": 2}, steps=1, val_fraction=0.0, warmup_steps=0, threads=1, device="cpu")
    train(load_config(**base, out_dir=str(tmp_path / "one")), progress=False)
    train(load_config(**base, context=2, init=str(tmp_path / "one" / "latest.safetensors"),
                      out_dir=str(tmp_path / "five")), progress=False)
    from emseg.models.checkpoint import load_model

    one = load_model(str(tmp_path / "one" / "latest.safetensors")).state_dict()
    five = load_model(str(tmp_path / "five" / "latest.safetensors")).state_dict()
    first = [k for k in one if one[k].shape != five[k].shape]
    assert len(first) == 1 and five[first[0]].shape[1] == 5, first


@pytest.mark.parametrize("kw, words", [
    (dict(context=1, patch_shape=[8, 16, 16]), ["context 1", "2D", "[8, 16, 16]"]),
    (dict(context=-1), ["context", "0-8", "-1"]),
    (dict(context=9), ["context", "0-8", "9"]),
    (dict(context=1, pretrain="masked", unlabelled=["x.h5:raw"], raw=[], labels=[]), ["context 1", "pretrain"]),
])
def test_bad_context_values_are_refused_naming_them(kw, words):
    with pytest.raises(ConfigError) as err:
        load_config(**kw)
    text = str(err.value)
    assert all(w in text for w in words), text


def test_context_on_an_image_says_it_needs_a_volume(tmp_path):
    em = synthetic_em((1, 48, 48), seed=4)
    write_volume(f"{tmp_path}/i.h5:raw", em.raw[0])
    write_volume(f"{tmp_path}/i.h5:mito", em.mito[0])
    config = load_config(raw=[f"{tmp_path}/i.h5:raw"], labels=[f"{tmp_path}/i.h5:mito"], patch_shape=[32, 32],
                         context=1, model={"features": 4, "depth": 2}, steps=1, val_fraction=0.0, threads=1,
                         device="cpu", out_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"context 1 \(2\.5D\) needs a 2D patch_shape on a volume"):
        train(config, progress=False)
