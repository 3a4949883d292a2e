"""Bad values of the options of measure, pyramid, mesh, view and segment's --measure/--into/--pyramid: one line
that names the option, and nothing written."""

import os

import numpy as np
import pytest
from harness import emseg_here as emseg, one_line_error

from emseg.io import write_volume


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lab = np.zeros((4, 20, 20), np.uint16)
    lab[1:3, 4:12, 4:12] = 2
    write_volume("lab.tif", lab, voxel_size=(40, 4, 4))
    write_volume("lab.zarr", lab, voxel_size=(40, 4, 4))
    return tmp_path


@pytest.mark.parametrize("args, needle", [
    (("measure", "lab.tif", "t.csv", "--block-shape", "0,4,4"), "--block-shape"),
    (("measure", "lab.tif", "t.csv", "--block-shape", "a,b"), "--block-shape"),
    (("measure", "lab.tif", "t.csv", "--threads", "0"), "--threads"),
    (("measure", "lab.tif", "t.csv", "--voxel-size", "1,-2,3"), "--voxel-size"),
    (("measure", "lab.tif", "t.csv", "--raw", "missing.tif"), "missing.tif"),
    (("pyramid", "lab.zarr", "--min-size", "0"), "--min-size"),
    (("pyramid", "lab.zarr", "--method", "median"), "--method"),
    (("pyramid", "lab.zarr", "--threads", "-1"), "--threads"),
    (("convert", "lab.tif", "o.zarr", "--pyramid", "median"), "--pyramid"),
    (("convert", "lab.tif", "o.zarr", "--pyramid", "mode", "--no-pyramid"), "--no-pyramid"),
    (("mesh", "lab.tif", "m", "--simplify", "-1"), "--simplify"),
    (("mesh", "lab.tif", "m", "--threads", "0"), "--threads"),
    (("view", "lab.tif", "--port", "70000"), "--port"),
    (("view", "lab.tif", "--bind", "no.such.host.invalid"), "--bind"),
    (("segment", "lab.zarr", "s.zarr", "--model", "m.safetensors", "--measure", "t.xlsx"), "--measure"),
    (("segment", "lab.zarr", "a/b", "--into", "lab.zarr", "--model", "m.safetensors"), "label image's name"),
])
def test_bad_values_are_one_line(files, args, needle):
    before = sorted(os.listdir(files))
    one_line_error(emseg(*args), args[0], needle)
    assert sorted(os.listdir(files)) == before  # nothing half-written


def test_existing_outputs_need_overwrite(files):
    (files / "t.csv").write_text("mine\n")
    one_line_error(emseg("measure", "lab.tif", "t.csv"), "measure", "--overwrite")
    (files / "rep").write_text("a file\n")
    one_line_error(emseg("measure", "lab.tif", "u.csv", "--report", "rep"), "measure", "--report")
    os.makedirs("m")
    one_line_error(emseg("mesh", "lab.tif", "m"), "mesh", "--overwrite")
    assert (files / "t.csv").read_text() == "mine\n" and os.listdir("m") == []
