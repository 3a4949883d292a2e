import numpy as np
import pytest

from emseg.io import write_volume
from emseg.normalization import fit_normalization
from emseg.train.patches import (load_train_volume, sample_patch, split_region,
                              validation_patches)


def test_split_region():
    train, val = split_region((100, 8, 8), val_roi="80:100")
    assert train[0] == slice(0, 80) and val[0] == slice(80, 100)
    train, val = split_region((100, 8, 8), val_roi="0:10")
    assert train[0] == slice(10, 100)
    train, val = split_region((10, 8, 8), val_fraction=0.2)
    assert train[0] == slice(0, 8) and val[0] == slice(8, 10)
    assert split_region((10, 8, 8))[1] is None
    with pytest.raises(ValueError, match="val_roi"):
        split_region((10, 8, 8), val_roi="5:50")


def test_normalization_modes():
    raw = np.arange(1000, dtype=np.uint8).reshape(10, 10, 10)
    n = fit_normalization(raw, "percentile", percentiles=(0, 100))
    assert n(raw).min() == 0 and n(raw).max() == 1
    f = fit_normalization(raw, "fixed")
    assert (f.low, f.high) == (0, 255)
    with pytest.raises(ValueError, match="normalization mode"):
        fit_normalization(raw, "zscore")


def test_sampling_respects_region_and_foreground(tmp_path):
    raw = np.arange(20 * 32 * 32, dtype=np.float32).reshape(20, 32, 32)
    labels = np.zeros((20, 32, 32), np.uint8)
    labels[5, 10:12, 10:12] = 1
    write_volume(tmp_path / "d.h5:raw", raw)
    write_volume(tmp_path / "d.h5:lab", labels)
    train, val = load_train_volume(f"{tmp_path}/d.h5:raw", f"{tmp_path}/d.h5:lab", val_roi="16:20")
    rng = np.random.default_rng(0)
    for _ in range(50):
        r, lab = sample_patch([train], (8, 8), rng, foreground_fraction=1.0)
        assert r.shape == (8, 8) and lab.any()  # always centred on the only foreground
        z = int(r[0, 0] // (32 * 32))
        assert z == 5
    zs = {int(sample_patch([train], (4, 8, 8), rng, 0.0)[0][0, 0, 0] // 1024) for _ in range(200)}
    assert max(zs) <= 16 - 4 and min(zs) >= 0  # never reaches into the validation sections
    vp = validation_patches(val, (8, 8), 5, seed=1)
    assert all(int(p[0][0, 0] // 1024) >= 16 for p in vp)
    assert [p[0].tobytes() for p in vp] == [p[0].tobytes() for p in validation_patches(val, (8, 8), 5, seed=1)]


def test_results_are_named(tmp_path):
    raw = np.arange(10 * 16 * 16, dtype=np.float32).reshape(10, 16, 16)
    write_volume(tmp_path / "d.h5:raw", raw)
    write_volume(tmp_path / "d.h5:lab", (raw % 7 == 0).astype(np.uint8))
    split = load_train_volume(f"{tmp_path}/d.h5:raw", f"{tmp_path}/d.h5:lab", val_roi="8:10")
    assert split.train.region[0] == slice(0, 8) and split.validation.region[0] == slice(8, 10)
    assert load_train_volume(f"{tmp_path}/d.h5:raw", f"{tmp_path}/d.h5:lab").validation is None
    regions = split_region((10, 16, 16), val_fraction=0.2)
    assert regions.train[0] == slice(0, 8) and regions.validation[0] == slice(8, 10)
    patch = sample_patch([split.train], (4, 4), np.random.default_rng(0))
    assert patch.raw.shape == patch.labels.shape == (4, 4)


def test_lazy_sampling_equals_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (10, 40, 40), dtype=np.uint8)
    labels = (rng.random((10, 40, 40)) > 0.9).astype(np.uint8)
    write_volume(tmp_path / "d.zarr:raw", raw, chunks=(2, 16, 16))
    write_volume(tmp_path / "d.zarr:lab", labels, chunks=(2, 16, 16))
    a, _ = load_train_volume(f"{tmp_path}/d.zarr:raw", f"{tmp_path}/d.zarr:lab", in_memory=True)
    b, _ = load_train_volume(f"{tmp_path}/d.zarr:raw", f"{tmp_path}/d.zarr:lab", in_memory=False)
    pa = sample_patch([a], (4, 16, 16), np.random.default_rng(3))
    pb = sample_patch([b], (4, 16, 16), np.random.default_rng(3))
    np.testing.assert_array_equal(pa[0], pb[0])
    np.testing.assert_array_equal(pa[1], pb[1])
