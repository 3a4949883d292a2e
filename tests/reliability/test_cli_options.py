"""Every option added for issue 12: a bad value ends in one line naming the option, and nothing is written."""

from __future__ import annotations

import os

import numpy as np
import pytest
from harness import emseg_here as emseg, one_line_error

from emseg.io import write_volume

CASES = [
    (None, ["--debug=yes", "info", "raw.tif"], "--debug"),  # a top-level option: "emseg: error: ..."
    ("predict", ["predict", "raw.tif", "o.zarr", "--model", "m.safetensors", "--halo", "-1,0,0"], "--halo"),
    ("predict", ["predict", "raw.tif", "o.zarr", "--model", "m.safetensors", "--halo", "a,b"], "--halo"),
    ("postprocess", ["postprocess", "p.zarr", "o.zarr", "--method", "cc", "--halo", "0,-2,0"], "--halo"),
    ("convert", ["convert", "raw.tif", "o.zarr", "--max-block-mb", "0"], "--max-block-mb"),
    ("convert", ["convert", "raw.tif", "o.zarr", "--max-block-mb", "nan"], "--max-block-mb"),
    ("predict", ["predict", "raw.tif", "o.zarr", "--model", "m.safetensors", "--normalize", "minmax"], "--normalize"),
    ("segment", ["segment", "raw.tif", "o.zarr", "--model", "m.safetensors", "--normalize", "x"], "--normalize"),
    ("convert", ["convert", "raw.tif", "o.zarr", "--overwrite=1"], "--overwrite"),
    ("predict", ["predict", "raw.tif", "o.zarr", "--model", "m.safetensors", "--threads", "0"], "--threads"),
    ("postprocess", ["postprocess", "p.zarr", "o.zarr", "--method", "cc", "--threads", "-3"], "--threads"),
    ("predict", ["predict", "raw.tif", "o.zarr", "--model", "m.safetensors", "--workers", "0"], "--workers"),
    ("segment", ["segment", "raw.tif", "o.zarr", "--model", "m.safetensors", "--workers", "two"], "--workers"),
]


@pytest.mark.parametrize("command,args,option", CASES, ids=[f"{c[0] or 'emseg'}{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_a_bad_option_value_is_one_line_naming_it(tmp_path, command, args, option):
    write_volume("raw.tif", np.zeros((2, 16, 16), np.uint8))
    write_volume("p.zarr", np.zeros((1, 2, 16, 16), np.float32))
    open("m.safetensors", "wb").close()  # never read: the arguments are refused first
    before = sorted(os.listdir("."))
    r = emseg(*args)
    if command is None:
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("emseg: error: "), r.stderr
        assert option in r.stderr
    else:
        one_line_error(r, command, option)
    assert sorted(os.listdir(".")) == before  # nothing half-written, no lock or record left
