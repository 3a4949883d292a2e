"""Bad values end in a one-line error that names the culprit: the one rule for reading probabilities,
raw EM where probabilities or labels belong (synthetic always, the real datasets when present),
non-finite inputs, network outputs and weights, out-of-range thresholds and tiles."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from emseg.synthetic import synthetic_em
from emseg.io import open_volume, write_volume
from emseg.probabilities import (as_probabilities, check_finite, check_probability_source, check_raw_source,
                                 is_prediction, sample_stats)


def _one_line(excinfo, *names):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for n in names:
        assert n in msg, (n, msg)
    return msg


# -- the one rule ---------------------------------------------------------------------------------------------

def test_the_rule_by_dtype():
    np.testing.assert_array_equal(as_probabilities(np.array([0, 51, 255], np.uint8)), np.float32([0, 0.2, 1]))
    np.testing.assert_array_equal(as_probabilities(np.array([True, False])), [1, 0])
    for dt in (np.float16, np.float32, np.float64):
        got = as_probabilities(np.array([0, 0.25, 1], dt))
        assert got.dtype == np.float32 and got[1] == 0.25
    f = np.zeros(4, np.float32)
    assert as_probabilities(f) is f  # float32 is not copied


@pytest.mark.parametrize("data,pieces", [
    (np.array([0.2, 1.5, 3.0]), ["block 7", "probabilities in [0, 1]", "found values in [0.2, 3]",
                                 "2 of 3 values outside [0, 1]", "values above 1"]),
    (np.array([-4.0, 0.5]), ["block 7", "found values in [-4, 0.5]", "logits? apply a sigmoid"]),
    (np.array([0.5, np.nan, np.nan, np.inf], np.float32), ["block 7", "2 NaN", "1 infinite"]),
    (np.array([1, 7], np.uint32), ["block 7", "integer values (dtype uint32, e.g. a label volume)"]),
    (np.array([1, 7], np.int16), ["block 7", "dtype int16"]),
    (np.array([1, 7], np.uint64), ["block 7", "dtype uint64"]),
])
def test_what_the_rule_refuses(data, pieces):
    with pytest.raises(ValueError) as e:
        as_probabilities(data, "block 7")
    _one_line(e, *pieces)


def test_a_dtype_that_is_no_number():
    with pytest.raises(TypeError, match="block 7 has dtype complex128"):
        as_probabilities(np.array([1j]), "block 7")


def test_non_finite_values_are_counted_and_named():
    check_finite(np.zeros(3, np.float32), "x")
    check_finite(np.zeros(3, np.uint8), "x")  # integers are always finite
    bad = np.zeros((4, 16, 16), np.float32)
    bad[0, :8, :8] = np.nan
    bad[1, 0, 0] = -np.inf
    with pytest.raises(ValueError) as e:
        check_finite(bad, "the network output of block 3")
    _one_line(e, "the network output of block 3 holds 64 NaN and 1 infinite values (of 1024)", "checkpoint")


# -- whole volumes: sampled at entry ---------------------------------------------------------------------------

def _blurred(mask, sigma):
    return ndi.gaussian_filter(mask.astype(np.float32), sigma).clip(0, 1)


def test_synthetic_raw_em_is_refused_and_its_probability_maps_accepted():
    em = synthetic_em((16, 96, 96), seed=3)
    for raw, name in ((em.raw, "raw.tif"), (em.raw / np.float32(255), "raw.zarr")):
        with pytest.raises(ValueError) as e:
            check_probability_source(raw, name)
        msg = _one_line(e, f"{name} looks like raw EM, not probabilities", "mid-grey", "emseg predict")
        assert int(msg.split("(")[1].split("%")[0]) > 85
        check_probability_source(raw, name, trusted=True)  # the caller knows
    for sigma in (1, 2, 4):
        check_probability_source(_blurred(em.mito > 0, sigma), "mito")
        check_probability_source(_blurred(em.membranes, sigma), "membranes")
        check_probability_source(1 - _blurred(em.membranes, sigma), "cells")
        check_probability_source(np.rint(_blurred(em.membranes, sigma) * 255).astype(np.uint8), "membranes uint8")
    from emseg.train.targets import bc_target

    check_probability_source(ndi.gaussian_filter(bc_target(em.mito).target, (0, 0, 1, 1)), "bc")


def test_a_uint8_0_1_mask_is_ambiguous_even_when_sparse():
    mask = np.zeros((32, 256, 256), np.uint8)
    mask[20:24, 200:210, 30:40] = 1  # not in the first sampled chunks
    write_volume("mask.zarr", mask, chunks=(16, 64, 64))
    with pytest.raises(ValueError) as e:
        check_probability_source(open_volume("mask.zarr"), "mask.zarr")
    _one_line(e, "mask.zarr is a uint8 volume holding only 0 and 1", "store the mask as bool or as 0/255")
    check_probability_source(mask * np.uint8(255), "mask 0/255")
    check_probability_source(mask.astype(bool), "mask bool")
    check_probability_source(np.zeros((4, 8, 8), np.uint8), "empty")  # nothing to misread


def test_a_uint8_label_volume_is_not_probabilities():
    em = synthetic_em((8, 96, 96), seed=1)
    ids = ((em.neurons.astype(np.int64) * 37) % 200 + 30).astype(np.uint8)  # ids 30..229: mid-range, flat
    with pytest.raises(ValueError) as e:
        check_probability_source(ids, "cells.tif")
    _one_line(e, "cells.tif looks like a label volume, not probabilities")
    with pytest.raises(ValueError) as e:
        check_probability_source(em.neurons.astype(np.uint32), "cells.h5:ids")
    _one_line(e, "cells.h5:ids holds integer values (dtype uint32, e.g. a label volume)")


def test_emseg_prediction_marker_is_trusted():
    import zarr

    raw = synthetic_em((8, 64, 64), seed=2).raw / np.float32(255)
    write_volume("p.zarr", raw[None])
    vol = open_volume("p.zarr")
    assert not is_prediction(vol)
    with pytest.raises(ValueError, match="looks like raw EM"):
        check_probability_source(vol, "p.zarr")
    zarr.open("p.zarr", mode="r+")["0"].attrs["emseg"] = {"kind": "prediction", "channels": 1}
    vol = open_volume("p.zarr")
    assert is_prediction(vol)
    check_probability_source(vol, "p.zarr")


def test_labels_and_predictions_given_as_raw_are_refused():
    em = synthetic_em((8, 64, 64), seed=4)
    check_raw_source(em.raw, "raw.tif")
    check_raw_source(em.raw.astype(np.float32), "raw.tif")
    for labels in (em.neurons, (em.mito > 0).astype(np.uint8) * 255, em.mito.astype(np.uint32)):
        with pytest.raises(ValueError) as e:
            check_raw_source(labels, "gt.tif")
        _one_line(e, "gt.tif looks like a mask or label volume, not raw EM")


def test_sampling_reads_a_few_chunks_only():
    class Counting:
        def __init__(self, a):
            self.a, self.shape, self.dtype, self.chunks, self.reads = a, a.shape, a.dtype, (16, 64, 64), 0

        def __getitem__(self, key):
            self.reads += 1
            return self.a[key]

    vol = Counting(np.zeros((256, 1024, 1024), np.uint8))  # a 256 MB volume, read as 8 + 24 boxes at most
    s = sample_stats(vol)
    assert vol.reads <= 32 and s.n <= 32 * 4 * 64 * 64


# -- the real datasets (skipped when ../shared/data is absent) ---------------------------------------------------

RAW = ["lucchi/training.tif", "isbi2012/train-volume.tif", "isbi2012/test-volume.tif",
       "flyem_medulla/sample2_z000-149.h5:volumes/raw", "cdeep3m_mito/training/images",
       "cdeep3m_mito/validation/images", "gala_flyem/train-image.h5:stack"]


@pytest.mark.parametrize("path", RAW)
def test_real_raw_em_is_refused_as_probabilities(shared_data, path):
    vol = open_volume(f"{shared_data}/{path}")
    with pytest.raises(ValueError) as e:
        check_probability_source(vol, path)
    _one_line(e, f"{path} looks like raw EM")
    check_raw_source(vol, path)
    as_float = np.asarray(vol[:8, :256, :256]) / np.float32(255)
    with pytest.raises(ValueError, match="looks like raw EM"):
        check_probability_source(as_float, path)
    s = sample_stats(vol)
    assert s.mid > 0.9 and s.bins >= 7 and s.flat < 0.1  # the margins the thresholds rest on (0.85, 4, 0.8)


def _boundaries(labels):
    b = np.zeros(labels.shape, bool)
    for a in range(labels.ndim):
        d = np.diff(labels, axis=a) != 0
        lo, hi = [slice(None)] * labels.ndim, [slice(None)] * labels.ndim
        lo[a], hi[a] = slice(0, -1), slice(1, None)
        b[tuple(lo)] |= d
        b[tuple(hi)] |= d
    return b


def test_real_probability_maps_are_accepted(shared_data):
    """Ground-truth masks and boundaries of the real datasets, blurred as a network's output would be."""
    d = shared_data
    lucchi = np.asarray(open_volume(f"{d}/lucchi/training_groundtruth.tif")[60:76, :512, :512]) > 0
    isbi = np.asarray(open_volume(f"{d}/isbi2012/train-labels.tif")[:8]) == 0  # 0 = membrane
    flyem = np.asarray(open_volume(f"{d}/flyem_medulla/sample2_z000-149.h5:volumes/labels/neuron_ids")[:32])
    cdeep = np.asarray(open_volume(f"{d}/cdeep3m_mito/training/labels")[:8, :512, :512]) > 0
    maps = {"lucchi mito": (lucchi, 1), "isbi membranes": (isbi, (0, 1, 1)),
            "flyem boundaries": (_boundaries(flyem), 1), "cdeep3m mito": (cdeep, (0, 1, 1))}
    for name, (mask, unit) in maps.items():
        for sigma in (1, 2, 4, 8):
            p = _blurred(mask, np.multiply(unit, sigma))
            for m in (p, 1 - p, np.rint(p * 255).astype(np.uint8)):
                check_probability_source(m, f"{name} sigma {sigma}")
                assert sample_stats(m).mid < 0.8
    from emseg.train.targets import bc_target

    check_probability_source(ndi.gaussian_filter(bc_target(ndi.label(lucchi)[0]).target, (0, 0, 1, 1)), "bc")
    with pytest.raises(ValueError, match="cdeep3m_mito/training/labels is a uint8 volume holding only 0 and 1"):
        check_probability_source(open_volume(f"{d}/cdeep3m_mito/training/labels"), "cdeep3m_mito/training/labels")


@pytest.mark.parametrize("model,path,roi", [
    ("mito-fibsem", "lucchi/training.tif", (slice(140, 142), slice(0, 256), slice(0, 256))),
    ("membrane-sstem", "isbi2012/train-volume.tif", (slice(25, 27), slice(0, 256), slice(0, 256))),
    ("neurons-fibsem", "flyem_medulla/sample2_z000-149.h5:volumes/raw", (slice(110, 142), slice(0, 96), slice(0, 96))),
])
def test_shipped_models_outputs_on_real_data_are_accepted(shared_data, model, path, roi):
    from emseg.predict import as_predictor, predict_blockwise

    raw = np.asarray(open_volume(f"{shared_data}/{path}")[roi])
    out = np.zeros((as_predictor(model).out_channels,) + raw.shape, np.float32)
    predict_blockwise(raw, model, out, workers=1)
    for pred in (out, np.rint(out * 255).astype(np.uint8)):
        check_probability_source(pred, model)
        assert sample_stats(pred).mid < 0.3


# -- in memory: instances read uint8 one way ----------------------------------------------------------------------

def test_instances_read_uint8_one_way():
    from emseg.instances import connected_components, segment

    m = np.zeros((1, 4, 16, 16), np.uint8)
    m[0, :, 2:6, 2:6] = m[0, :, 9:14, 9:14] = 1
    assert connected_components(m[0]).max() == 2  # a mask: nonzero
    with pytest.raises(ValueError) as e:
        segment(m, "cc")  # probabilities: a 0/1 uint8 would be p <= 1/255, so it is refused
    _one_line(e, "pred is a uint8 volume holding only 0 and 1")
    assert segment(m * np.uint8(255), "cc").max() == connected_components(m[0] * 255).max() == 2


# -- network outputs and weights ------------------------------------------------------------------------------------

def test_nan_weights_are_refused_when_the_checkpoint_loads():
    import torch

    from emseg.models import UNet, save_model
    from emseg.predict import as_predictor

    torch.manual_seed(0)
    net = UNet(ndim=2, features=4, depth=1)
    with torch.no_grad():
        next(net.parameters())[0].fill_(float("nan"))
    save_model(net, "nan.safetensors")
    with pytest.raises(ValueError) as e:
        as_predictor("nan.safetensors", cache=False)
    _one_line(e, "nan.safetensors", "NaN")
    with pytest.raises(ValueError, match=r"model UNet: 1 weight tensor\(s\) hold NaN or infinite values"):
        as_predictor(net)


class _Broken:
    """A stand-in network whose output is NaN in one corner."""

    ndim, in_channels, out_channels = 2, 1, 1

    def __call__(self, x):
        y = x.copy()
        y[..., :2, :2] = np.nan
        return y


def test_nan_network_output_is_an_error_naming_the_block():
    raw = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    with pytest.raises(ValueError, match=r"the network output of block \d+ holds \d+ NaN values"):
        from emseg.predict import predict_blockwise

        predict_blockwise(raw, _Broken(), np.zeros((1, 2, 32, 32), np.float32), block_shape=(1, 32, 32), workers=1)


def test_bad_model_geometry_is_named():
    from emseg.predict import as_predictor

    class Net:
        ndim, halo = 4, (0,) * 4

        def __call__(self, x):
            return x

    with pytest.raises(ValueError, match="model Net: ndim must be 2 or 3"):
        as_predictor(Net())
    Net.ndim, Net.halo, Net.divisor = 2, (1, -1), (1, 1)
    with pytest.raises(ValueError, match=r"model Net: halo must be 2 integers >= 0 \(one per axis, zyx\); "
                                         r"got \(1, -1\)"):
        as_predictor(Net())
