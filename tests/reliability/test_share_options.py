"""Bad values of export's, datasets' and --runtime's options: one line that names the option, and nothing written."""

import os

import numpy as np
import pytest
from harness import emseg_here as emseg, one_line_error

from conftest import tiny_bc_model
from emseg.io import write_volume


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_volume("raw.tif", (np.arange(4 * 64 * 64) % 251).astype(np.uint8).reshape(4, 64, 64))
    tiny_bc_model(str(tmp_path / "m.safetensors"))
    return tmp_path


@pytest.mark.parametrize("args, needle", [
    (("export", "m.safetensors", "m.zip"), "--license"),  # its card (none) names no SPDX licence
    (("export", "m.safetensors", "m.txt"), "--format"),
    (("export", "m.safetensors", "m.zip", "--format", "keras"), "--format"),
    (("export", "m.safetensors", "m.onnx", "--license", "MIT"), "--license"),
    (("export", "m.safetensors", "m.zip", "--license", "MIT", "--cite", "no-reference"), "--cite"),
    (("export", "m.safetensors", "m.zip", "--license", "MIT", "--sample", "missing.tif"), "missing.tif"),
    (("export", "no-such-model", "m.onnx"), "no-such-model"),
    (("predict", "raw.tif", "p.zarr", "--model", "m.safetensors", "--runtime", "tensorrt"), "--runtime"),
    (("segment", "raw.tif", "s.zarr", "--model", "m.safetensors", "--runtime", "jax"), "--runtime"),
    (("predict", "raw.tif", "p.zarr", "--model", "missing.zip"), "missing.zip"),
    (("datasets", "info", "lucci"), "did you mean 'lucchi'"),
    (("datasets", "fetch", "no-such-dataset", "--to", "d"), "no-such-dataset"),
])
def test_bad_values_are_one_line(files, args, needle):
    before = sorted(os.listdir(files))
    one_line_error(emseg(*args), args[0], needle)
    assert sorted(os.listdir(files)) == before  # nothing half-written


def test_export_needs_overwrite_for_an_existing_output(files):
    (files / "m.onnx").write_text("mine\n")
    one_line_error(emseg("export", "m.safetensors", "m.onnx" ), "export", "--overwrite")
    assert (files / "m.onnx").read_text() == "mine\n"
