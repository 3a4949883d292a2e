"""measure_volume: a label volume on disk measured block by block equals region_table in memory, on threads
and on a real Dask LocalCluster; the table reads back as written (CSV and Parquet)."""

import h5py
import numpy as np
import pytest
from scipy import ndimage

from emseg.config import ExecutionConfig
from emseg.measure import region_table
from emseg.measure.run import measure_volume
from emseg.measure.write import read_table


def blobs(shape, seed):
    rng = np.random.default_rng(seed)
    return ndimage.label(ndimage.gaussian_filter(rng.random(shape), 2.0) > 0.5)[0].astype(np.uint32)


@pytest.fixture
def volume(tmp_path):
    lab = blobs((19, 41, 37), 0)
    raw = np.random.default_rng(1).random(lab.shape).astype(np.float32)
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("labels", data=lab, chunks=(8, 16, 16)).attrs["resolution"] = (40.0, 4.0, 4.0)
        f.create_dataset("raw", data=raw, chunks=(8, 16, 16))
    return path, lab, raw


def assert_same(a, b):
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k], float), np.asarray(b[k], float), rtol=1e-12, atol=1e-9,
                                   err_msg=k)


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_file_blockwise_equals_in_memory(volume, tmp_path, ext):
    path, lab, raw = volume
    out = tmp_path / f"objects{ext}"
    r = measure_volume(f"{path}:labels", out, f"{path}:raw", block_shape=(8, 16, 13),
                       execution=ExecutionConfig(workers=2))
    assert r.n_blocks == 3 * 3 * 3 and r.voxel_size == (40.0, 4.0, 4.0) and r.voxel_size_known
    ref = region_table(lab, raw, voxel_size=(40.0, 4.0, 4.0))
    assert_same(r.columns, ref)
    assert_same(read_table(out), ref)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["v.h5", f"objects{ext}"])  # no scratch left


def test_dask_local_cluster_equals_threads(volume, tmp_path):
    path, lab, _ = volume
    r = measure_volume(f"{path}:labels", tmp_path / "dask.csv", block_shape=(7, 20, 20),
                       execution=ExecutionConfig(workers=2, scheduler="local"))
    assert_same(r.columns, region_table(lab, voxel_size=(40.0, 4.0, 4.0)))


def test_refuses_existing_output_and_overwrites(volume, tmp_path):
    path, lab, _ = volume
    out = tmp_path / "t.csv"
    out.write_text("keep me\n")
    with pytest.raises(FileExistsError, match="t.csv already exists; pass --overwrite"):
        measure_volume(f"{path}:labels", out)
    assert out.read_text() == "keep me\n"
    measure_volume(f"{path}:labels", out, execution=ExecutionConfig(overwrite=True))
    assert len(read_table(out)["id"]) == len(np.unique(lab)) - 1


def test_bad_inputs(volume, tmp_path):
    path, _, _ = volume
    with h5py.File(path, "a") as f:
        f.create_dataset("prob", data=np.zeros((19, 41, 37), np.float32))
        f.create_dataset("small", data=np.zeros((19, 41, 36), np.uint8))
    with pytest.raises(ValueError, match="prob: labels must be integer ids.*float32"):
        measure_volume(f"{path}:prob", tmp_path / "a.csv")
    with pytest.raises(ValueError, match=r"raw has shape \(19, 41, 36\).*\(19, 41, 37\)"):
        measure_volume(f"{path}:labels", tmp_path / "a.csv", f"{path}:small")
    with pytest.raises(ValueError, match="unsupported table extension '.xlsx'"):
        measure_volume(f"{path}:labels", tmp_path / "a.xlsx")
    with pytest.raises(FileNotFoundError, match="output folder"):
        measure_volume(f"{path}:labels", tmp_path / "nowhere" / "a.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.h5"]
