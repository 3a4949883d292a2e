"""Sliding-window tiles: checked against the network (dimensionality, divisor, halo), equal to the
untiled prediction, and stoppable between tiles (a real SIGINT lands within one tile's time)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from emseg.predict import PredictConfig, predict_blockwise
from emseg.predict.tiling import check_tile_shape, predict_region


def _unet(ndim, seed=0):
    import torch

    from emseg.models import UNet

    torch.manual_seed(seed)
    return UNet(ndim=ndim, features=4, depth=2, norm="batch").eval()  # halo 23, divisor 4


def _predictor(ndim):
    from emseg.predict import as_predictor

    return as_predictor(_unet(ndim))


@pytest.mark.parametrize("ndim,shape,tile,overlap", [(2, (2, 100, 90), (64, 72), 0.25), (2, (1, 97, 61), (56, 56), 0.0),
                                                     (3, (40, 61, 50), (52, 56, 52), 0.5)])
def test_tiles_with_the_halo_equal_the_untiled_prediction(ndim, shape, tile, overlap):
    p = _predictor(ndim)
    raw = np.random.default_rng(0).random((1,) + shape).astype(np.float32)
    ref = predict_region([p.fn], raw, spatial_ndim=ndim, divisor=p.divisor)
    got = predict_region([p.fn], raw, spatial_ndim=ndim, divisor=p.divisor, halo=p.halo,
                         config=PredictConfig(tile_shape=tile, overlap=overlap))
    np.testing.assert_allclose(got, ref, atol=1e-5)  # every kept voxel saw its whole receptive field


def test_tiles_without_the_halo_are_close_away_from_borders():
    p = _predictor(2)
    raw = np.random.default_rng(1).random((1, 3, 96, 96)).astype(np.float32)
    ref = predict_region([p.fn], raw, spatial_ndim=2, divisor=p.divisor)
    got = predict_region([p.fn], raw, spatial_ndim=2, divisor=p.divisor,
                         config=PredictConfig(tile_shape=(48, 48), overlap=0.5))
    assert np.abs(got - ref)[..., 8:-8, 8:-8].max() < 1e-2  # Gaussian blending over whole tiles


def test_a_tile_as_large_as_the_region_is_exact():
    p = _predictor(2)
    raw = np.random.default_rng(2).random((1, 2, 60, 70)).astype(np.float32)
    ref = predict_region([p.fn], raw, spatial_ndim=2, divisor=p.divisor)
    got = predict_region([p.fn], raw, spatial_ndim=2, divisor=p.divisor, halo=p.halo,
                         config=PredictConfig(tile_shape=(64, 128)))
    np.testing.assert_array_equal(got, ref)


def test_2d_model_on_a_stack_takes_yx_or_1_y_x():
    p = _predictor(2)
    raw = np.random.default_rng(3).random((1, 3, 80, 80)).astype(np.float32)
    kw = dict(spatial_ndim=2, divisor=p.divisor, halo=p.halo)
    a = predict_region([p.fn], raw, config=PredictConfig(tile_shape=(64, 64)), **kw)
    b = predict_region([p.fn], raw, config=PredictConfig(tile_shape=(1, 64, 64)), **kw)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"tile_shape \(4, 56, 56\): the 2D model predicts one section at a time.*"
                                         r"give y,x \(e.g. 56,56\)"):
        predict_region([p.fn], raw, config=PredictConfig(tile_shape=(4, 56, 56)), **kw)


def test_predict_blockwise_with_tiles_matches_untiled():
    model = _unet(2)
    raw = np.random.default_rng(4).random((2, 100, 100)).astype(np.float32)
    ref = predict_blockwise(raw, model, np.zeros((1, 2, 100, 100), np.float32), block_shape=(1, 64, 64)).out
    got = predict_blockwise(raw, model, np.zeros((1, 2, 100, 100), np.float32), block_shape=(1, 64, 64),
                            tile_shape=(1, 56, 56)).out
    assert np.abs(got - ref)[..., 8:-8, 8:-8].max() < 1e-2


@pytest.mark.parametrize("args,message", [
    (((1, 100, 100), 3, 2, (16, 16), (24, 24)),
     r"tile_shape \(1, 100, 100\): 100 is not a multiple of the network's input divisor 16 along axis y; "
     r"use \(1, 112, 112\)"),
    (((1, 8, 8), 3, 3, (1, 8, 8), (1, 24, 24)),
     r"tile_shape \(1, 8, 8\): a tile is read with the halo \(1, 24, 24\) \(z,y,x\) as context on each side.*"
     r"use \(3, 56, 56\) or larger"),
    (((64, 64, 64), 3, 3, (8, 8, 8), (16, 16, 16), 1.0), r"overlap=1.0 must be a fraction in \[0, 1\)"),
    (((64, 64), 3, 3, (8, 8, 8), (16, 16, 16)), r"tile_shape \(64, 64\) must have 3 entries \(z,y,x\)"),
    (((64, 0), 2, 2, (8, 8), (0, 0)), r"tile_shape \(64, 0\) must hold positive integers"),
    (((64.5, 64), 2, 2, (8, 8), (0, 0)), r"tile_shape \(64.5, 64\) must hold positive integers"),
])
def test_bad_tile_shapes_are_refused_with_the_fix(args, message):
    with pytest.raises(ValueError, match=message):
        check_tile_shape(*args)


def test_valid_tile_shapes():
    assert check_tile_shape(None, 3, 2, (16, 16), (122, 122)) is None
    assert check_tile_shape((1, 512, 512), 3, 2, (1, 16, 16), (0, 128, 128)) == (512, 512)
    assert check_tile_shape((64, 64, 64), 3, 3, (8, 8, 8), (24, 24, 24)) == (64, 64, 64)


def test_should_stop_is_checked_between_tiles():
    calls = []

    def fn(x):
        calls.append(x.shape)
        return x

    fn.ndim = 2
    raw = np.zeros((1, 1, 256, 256), np.float32)
    with pytest.raises(KeyboardInterrupt):
        predict_region([fn], raw, spatial_ndim=2, divisor=(1, 1), config=PredictConfig(tile_shape=(32, 32)),
                       should_stop=lambda: len(calls) >= 3)
    assert len(calls) == 3  # not the 100 tiles of the region


_CHILD = r"""
import signal, sys, threading, time
import numpy as np
from emseg.predict import PredictConfig
from emseg.predict.tiling import predict_region

stop = threading.Event()
signal.signal(signal.SIGINT, lambda *a: stop.set())

def slow(x):
    time.sleep(0.05)  # one tile
    return x

out = {}
def work():
    try:
        predict_region([slow], np.zeros((1, 1, 1024, 1024), np.float32), spatial_ndim=2, divisor=(1, 1),
                       config=PredictConfig(tile_shape=(64, 64), overlap=0.5),
                       should_stop=stop.is_set)  # ~900 tiles, 45 s
        out["r"] = "finished"
    except KeyboardInterrupt:
        out["r"] = "stopped"

t = threading.Thread(target=work)  # a worker thread, as in the block executor: SIGINT reaches the main thread only
t.start()
print("started", flush=True)
while t.is_alive():
    t.join(0.05)
print(out["r"], flush=True)
"""


def test_real_sigint_stops_a_tiled_prediction_in_a_worker_thread():
    proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == "stopped" and time.monotonic() - t0 < 2.0
