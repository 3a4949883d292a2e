"""Blockwise prediction: exact stand-in results, equality with a whole-volume forward pass, Dask
equals threads, kill-and-resume, and clear errors."""

import numpy as np
import pytest
from conftest import kill_when_recorded

from emseg.io import open_volume, read_volume, write_volume
from emseg.predict import predict_blockwise


class Double:
    """A stand-in model whose output is exactly twice its input."""

    in_channels, out_channels = 1, 1

    def __init__(self, ndim, halo=2, divisor=1):
        self.ndim, self.halo, self.divisor = ndim, (halo,) * ndim, (divisor,) * ndim

    def __call__(self, x):
        return 2 * x


@pytest.mark.parametrize("tta", [None, "flips", "d4"])
@pytest.mark.parametrize("shape,model,block", [((21, 45, 50), Double(3), (8, 16, 16)),
                                               ((21, 45, 50), Double(2), (4, 16, 16)),
                                               ((45, 50), Double(2, divisor=4), (16, 16))])
def test_stand_in_doubles_exactly(shape, model, block, tta):
    raw = np.random.default_rng(0).random(shape).astype(np.float32)
    r = predict_blockwise(raw, model, "out.zarr", block_shape=block, dtype="float32", tta=tta)
    assert r.n_computed == r.n_blocks > 1
    np.testing.assert_array_equal(read_volume("out.zarr")[0], 2 * raw)


def _unet(ndim, seed=0, **kw):
    import torch

    from emseg.models import UNet

    torch.manual_seed(seed)
    return UNet(ndim=ndim, features=4, depth=2, norm="batch", **kw).eval()


def _whole(model, raw):
    import torch

    div = model.input_divisor
    pad = [(0, (-n) % d) for n, d in zip(raw.shape[-model.ndim:], div)]
    x = np.pad(raw, [(0, 0)] * (raw.ndim - model.ndim) + pad)
    with torch.inference_mode():
        if model.ndim == raw.ndim:
            y = torch.sigmoid(model(torch.from_numpy(x[None, None])))[0, 0].numpy()
        else:
            y = torch.sigmoid(model(torch.from_numpy(x[:, None])))[:, 0].numpy()
    return y[tuple(slice(0, n) for n in raw.shape)]


@pytest.mark.parametrize("ndim,shape,block", [(3, (30, 50, 60), (24, 24, 24)), (2, (6, 70, 90), (2, 32, 32))])
def test_blockwise_equals_whole_volume_forward(ndim, shape, block):
    model = _unet(ndim)
    raw = np.random.default_rng(1).random(shape).astype(np.float32)
    predict_blockwise(raw, model, "p.zarr", block_shape=block, dtype="float32")
    np.testing.assert_allclose(read_volume("p.zarr")[0], _whole(model, raw), atol=1e-5)


def test_gaussian_tiles_close_to_whole_volume():
    model = _unet(2)
    raw = np.random.default_rng(2).random((2, 96, 96)).astype(np.float32)
    predict_blockwise(raw, model, "t.zarr", block_shape=(1, 64, 64), tile_shape=(56, 56), overlap=0.5, dtype="float32")
    diff = np.abs(read_volume("t.zarr")[0] - _whole(model, raw))
    assert diff.max() < 1e-4, diff.max()  # tiles keep only what lies a halo inside their edges


def test_uint8_output_and_roi_skips_blocks():
    raw = np.full((8, 32, 32), 0.25, np.float32)
    r = predict_blockwise(raw, Double(3), "q.zarr", block_shape=(8, 16, 16), dtype="uint8",
                          roi=(slice(0, 8), slice(0, 10), slice(0, 10)))
    out = read_volume("q.zarr")[0]
    assert r.n_computed == 1 and r.n_skipped == 3
    assert out.dtype == np.uint8 and out[0, 0, 0] == 128 and out[0, 20, 20] == 0


def test_dask_local_cluster_equals_threads():
    pytest.importorskip("distributed")
    from emseg.models import save_model

    model = _unet(3)
    save_model(model, "m.safetensors")
    raw = np.random.default_rng(3).random((24, 48, 48)).astype(np.float32)
    write_volume("raw.zarr", raw)
    predict_blockwise("raw.zarr", "m.safetensors", "threads.zarr", block_shape=(24, 24, 24), dtype="float32")
    predict_blockwise("raw.zarr", "m.safetensors", "dask.zarr", block_shape=(24, 24, 24), dtype="float32",
                      scheduler="local", workers=2)
    np.testing.assert_array_equal(read_volume("dask.zarr"), read_volume("threads.zarr"))


def test_killed_prediction_resumes(tmp_path):
    from emseg.models import save_model

    save_model(_unet(2), "m.safetensors")
    raw = np.random.default_rng(4).random((32, 64, 64)).astype(np.float32)
    write_volume("raw.zarr", raw)
    # one worker and one torch thread everywhere: the threads differ between this process (other tests set
    # them) and a child (as many as cores), and with them the last bit of a sum
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _killed_prediction_resumes()
    finally:
        torch.set_num_threads(threads)


def _killed_prediction_resumes():
    predict_blockwise("raw.zarr", "m.safetensors", "ref.zarr", block_shape=(4, 32, 32), dtype="float32", workers=1)
    code = ("import time, torch, emseg.predict.blocks as b\n"
            "torch.set_num_threads(1)\n"
            "orig = b._run_block\n"
            "def slow(*a, **k):\n    time.sleep(0.2)\n    return orig(*a, **k)\n"
            "b._run_block = slow\n"
            "b.predict_blockwise('raw.zarr', 'm.safetensors', 'out.zarr', block_shape=(4, 32, 32), dtype='float32', workers=1)\n")
    done = kill_when_recorded(code, ".emseg-run-out.zarr.jsonl", 5)
    assert 0 < done < 32, done
    r = predict_blockwise("raw.zarr", "m.safetensors", "out.zarr", block_shape=(4, 32, 32), dtype="float32", workers=1)
    assert r.n_computed == 32 - done
    np.testing.assert_array_equal(read_volume("out.zarr"), read_volume("ref.zarr"))


def test_bad_input():
    raw = np.zeros((8, 32, 32), np.float32)

    class TwoChannels(Double):
        in_channels = 2

    with pytest.raises(ValueError, match="takes 2 input channels"):
        predict_blockwise(raw, TwoChannels(3), "a.zarr")
    with pytest.raises(ValueError, match="a 3D model cannot predict a 2D volume"):
        predict_blockwise(raw[0], Double(3), "a.zarr")
    with pytest.raises(ValueError, match=r"not a multiple of the network's input divisor \(4, 4, 4\); use \(8, 8, 12\)"):
        predict_blockwise(raw, Double(3, divisor=4), "a.zarr", block_shape=(8, 8, 10))
    with pytest.raises(ValueError, match="smaller than the halo"):
        predict_blockwise(raw, Double(3, halo=8), "a.zarr", block_shape=(4, 4, 4))
    from emseg.models import save_model

    save_model(_unet(3), "m.safetensors")
    write_volume("r.zarr", raw)
    with pytest.raises(ValueError, match="cannot reach a Dask scheduler"):
        predict_blockwise("r.zarr", "m.safetensors", "a.zarr", scheduler="tcp://127.0.0.1:9")


def test_cli_predict(capsys):
    from emseg.cli import main
    from emseg.models import save_model

    save_model(_unet(2), "m.safetensors")
    write_volume("raw.h5:raw", np.random.default_rng(5).random((4, 64, 64)).astype(np.float32))
    assert main(["predict", "raw.h5:raw", "pred.zarr", "--model", "m.safetensors", "--block-shape", "2,32,32",
                 "--tta", "flips", "--no-progress"]) == 0
    assert "predicted 8 of 8 blocks" in capsys.readouterr().out
    with open_volume("pred.zarr") as vol:
        assert vol.shape == (1, 4, 64, 64) and vol.axes == "czyx" and vol.dtype == np.float16
    assert main(["predict", "raw.h5:raw", "p2.zarr", "--model", "nope.safetensors"]) == 2


def test_multi_slice_2_5d_model():
    """A 2D model with 3 input channels sees sections z-1, z, z+1; here it sums them."""

    class SumNeighbours:
        ndim, in_channels, out_channels, halo, divisor = 2, 3, 1, (1, 1), (1, 1)

        def __call__(self, x):
            return x.sum(axis=1, keepdims=True)

    raw = np.random.default_rng(6).random((9, 20, 20)).astype(np.float32)
    predict_blockwise(raw, SumNeighbours(), "s.zarr", block_shape=(2, 20, 20), dtype="float32")
    padded = np.concatenate([raw[:1], raw, raw[-1:]])
    np.testing.assert_allclose(read_volume("s.zarr")[0], padded[:-2] + padded[1:-1] + padded[2:], rtol=1e-6)


def test_trained_model_blockwise_equals_whole_volume(tmp_path):
    """A model trained by emseg (a few steps on synthetic EM) predicts blockwise exactly as in one pass."""
    from emseg.synthetic import synthetic_em
    from emseg.models import load_model
    from emseg.train import load_config, train

    em = synthetic_em((8, 96, 96), seed=7)
    write_volume(tmp_path / "em.h5:raw", em.raw, voxel_size=em.voxel_size)
    write_volume(tmp_path / "em.h5:mito", em.mito, voxel_size=em.voxel_size)
    result = train(load_config(raw=[f"{tmp_path}/em.h5:raw"], labels=[f"{tmp_path}/em.h5:mito"], val_roi="6:8",
                               patch_shape=[32, 32], batch_size=2, model={"features": 4, "depth": 2}, steps=6,
                               val_every=3, val_patches=1, threads=1, device="cpu", out_dir=str(tmp_path / "run")))
    predict_blockwise(f"{tmp_path}/em.h5:raw", result.best, "pred.zarr", block_shape=(2, 32, 32), dtype="float32")
    model = load_model(result.best)
    from emseg.models import read_model_header
    from emseg.normalization import Normalization

    norm = Normalization(**read_model_header(result.best).extra["normalization"])
    whole = _whole(model, norm(em.raw))
    np.testing.assert_allclose(read_volume("pred.zarr")[0], whole, atol=1e-3)


def test_volume_smaller_than_one_block():
    raw = np.random.default_rng(8).random((3, 10, 12)).astype(np.float32)
    r = predict_blockwise(raw, Double(3, divisor=4), "small.zarr", block_shape=(8, 16, 16), dtype="float32")
    assert r.n_blocks == 1
    np.testing.assert_array_equal(read_volume("small.zarr")[0], 2 * raw)
