"""emseg measure killed with a real SIGKILL part-way resumes to the same table and measures only the blocks
not recorded; the unfinished run of other options is refused, not mixed in."""

import h5py
import numpy as np
from harness import emseg, fault_points, one_line_error, spread
from scipy import ndimage

from emseg.measure.write import read_table


def _labels(path):
    rng = np.random.default_rng(4)
    lab = ndimage.label(ndimage.gaussian_filter(rng.random((12, 40, 40)), 2.0) > 0.5)[0].astype(np.uint16)
    with h5py.File(path, "w") as f:
        f.create_dataset("labels", data=lab, chunks=(6, 20, 20)).attrs["resolution"] = (30.0, 5.0, 5.0)
    return f"{path}:labels"


def test_killed_measure_resumes_to_the_same_table(tmp_path):
    labels = _labels(tmp_path / "v.h5")
    args = ("--block-shape", "6,20,20", "--threads", "1", "--no-progress")
    r = emseg("measure", labels, tmp_path / "clean.csv", *args)
    assert r.returncode == 0, r.stderr
    clean = read_table(tmp_path / "clean.csv")
    points = fault_points("measure", labels, tmp_path / "count.csv", *args)
    assert points.count("block-recorded") == 8
    for k in spread(len(points), 3):
        out = tmp_path / f"k{k}.csv"
        r = emseg("measure", labels, out, *args, faults=f"kill:{k}")
        assert r.returncode == -9, r.stderr
        assert not out.exists()  # complete or absent
        done = points[:k].count("block-recorded")
        log = tmp_path / f"points{k}.log"
        r = emseg("measure", labels, out, *args, faults=f"count:{log}")
        assert r.returncode == 0, r.stderr
        again_points = log.read_text().split() if log.exists() else []  # no point passed: no block measured again
        assert again_points.count("block-recorded") == 8 - done  # only the blocks not recorded
        again = read_table(out)
        assert list(again) == list(clean)
        for c in clean:
            np.testing.assert_array_equal(again[c], clean[c], err_msg=c)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".emseg")) == []


def test_unfinished_run_of_other_options_is_refused(tmp_path):
    labels = _labels(tmp_path / "v.h5")
    out = tmp_path / "t.csv"
    r = emseg("measure", labels, out, "--block-shape", "6,20,20", "--threads", "1", "--no-progress", faults="kill:3")
    assert r.returncode == -9
    r = emseg("measure", labels, out, "--block-shape", "12,40,20", "--no-progress")
    one_line_error(r, "measure", "block_shape", "--overwrite")
    r = emseg("measure", labels, out, "--block-shape", "12,40,20", "--no-progress", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert out.exists()


def test_cli_bad_input_is_one_line(tmp_path):
    labels = _labels(tmp_path / "v.h5")
    with h5py.File(tmp_path / "v.h5", "a") as f:
        f.create_dataset("prob", data=np.zeros((12, 40, 40), np.float32))
        f.create_dataset("raw", data=np.zeros((12, 40, 41), np.uint8))
    one_line_error(emseg("measure", f"{tmp_path / 'v.h5'}:prob", tmp_path / "a.csv"), "measure",
                   "prob", "integer ids", "float32")
    one_line_error(emseg("measure", labels, tmp_path / "a.csv", "--raw", f"{tmp_path / 'v.h5'}:raw"), "measure",
                   "(12, 40, 41)", "(12, 40, 40)")
    one_line_error(emseg("measure", labels, tmp_path / "a.xlsx"), "measure", "a.xlsx", ".csv")
    (tmp_path / "a.csv").write_text("mine\n")
    one_line_error(emseg("measure", labels, tmp_path / "a.csv"), "measure", "a.csv already exists", "--overwrite")
    (tmp_path / "rep").write_text("a file\n")
    one_line_error(emseg("measure", labels, tmp_path / "b.csv", "--report", tmp_path / "rep"), "measure",
                   "--report", "is a file")
    assert (tmp_path / "a.csv").read_text() == "mine\n" and not (tmp_path / "b.csv").exists()
    one_line_error(emseg("measure", labels, tmp_path / "c.csv", "--voxel-size", "1,2"), "measure", "voxel")


def test_segment_measure_writes_the_table_of_its_output(tmp_path, monkeypatch):
    from test_runs import _model, _raw

    from emseg.io import open_volume, read_volume
    from emseg.measure import region_table

    monkeypatch.chdir(tmp_path)
    _raw("raw.tif")
    _model("m.safetensors")
    args = ("--block-shape", "4,24,24", "--method", "bc", "--param", "seed_threshold=0.6", "--no-progress")
    (tmp_path / "taken.csv").write_text("mine\n")
    one_line_error(emseg("segment", "raw.tif", "seg.zarr", "--model", "m.safetensors", *args, "--measure", "taken.csv"),
                   "segment", "--measure taken.csv already exists")
    assert not (tmp_path / "seg.zarr").exists()  # refused before anything was computed
    r = emseg("segment", "raw.tif", "seg.zarr", "--model", "m.safetensors", *args, "--measure", "objects.csv")
    assert r.returncode == 0, r.stderr
    seg = read_volume("seg.zarr")
    with open_volume("raw.tif") as raw:
        ref = region_table(seg, raw[:], voxel_size=raw.voxel_size)
    got = read_table("objects.csv")
    assert len(got["id"]) == len(np.unique(seg)) - 1 > 0 and "intensity_mean" in got
    for c in ref:
        np.testing.assert_allclose(np.asarray(got[c], float), np.asarray(ref[c], float), rtol=1e-12, err_msg=c)
