"""Fault injection for the long-running commands, with real processes, real signals and real files.

For ``convert``, ``predict``, ``segment`` and ``postprocess``: a clean run lists the fault points
it passes (blocks written, blocks recorded, the commit); the run is then SIGKILLed at three of them
(the first, the middle and the commit), and the rerun of the same command must give output bit-identical to the
clean run. After each kill, the requested output is either absent or already complete.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from emseg.config import ExecutionConfig
from emseg.io import open_volume, read_volume, write_volume

from conftest import tiny_bc_model
from harness import emseg, fault_points, one_line_error, spread, tree

SHAPE = (12, 48, 48)


_model = tiny_bc_model  # random weights, but outputs spread over [0, 1] so the watershed finds objects


def _raw(path, seed=0):
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(np.random.default_rng(seed).random(SHAPE), (1, 3, 3))
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    write_volume(path, (smooth * 255).astype(np.uint8), voxel_size=(30, 8, 8),
                 execution=ExecutionConfig(overwrite=True))


def _prob(path, seed=0):
    """A two-channel BC prediction of blob-shaped objects (foreground, contour), so the watershed finds objects."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.random(SHAPE), (1, 3, 3)) > 0.5
    contour = mask & ~ndimage.binary_erosion(mask)
    fg = np.where(mask, 0.9, 0.05) + rng.random(SHAPE) * 0.05
    write_volume(path, np.stack([fg, np.where(contour, 0.8, 0.05)]).astype(np.float32), chunks=(2, 4, 24, 24))


COMMANDS = {
    "convert": lambda out: ["convert", "raw.tif", out, "--chunks", "4,16,16", "--max-block-mb", "0.01"],
    "predict": lambda out: ["predict", "raw.tif", out, "--model", "m.safetensors", "--block-shape", "4,24,24",
                            "--dtype", "float32", "--threads", "2"],
    "segment": lambda out: ["segment", "raw.tif", out, "--model", "m.safetensors", "--block-shape", "4,24,24",
                            "--method", "bc", "--param", "seed_threshold=0.6", "--param", "min_seed_size=4", "--threads", "2"],
    "postprocess": lambda out: ["postprocess", "prob.zarr", out, "--method", "bc", "--block-shape", "4,24,24", "--halo", "2,8,8",
                                "--threads", "2"],
}


@pytest.fixture
def inputs(tmp_path):
    _raw("raw.tif")
    _model("m.safetensors")
    _prob("prob.zarr")
    return tmp_path


def _visible(folder):
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_sigkill_at_fault_points_then_rerun_is_bit_identical(inputs, command):
    args = COMMANDS[command]
    points = fault_points(*args("ref.zarr"))
    assert len(points) >= 5 and "commit" in points, points
    ref = read_volume("ref.zarr")
    if command in ("segment", "postprocess"):
        assert ref.max() > 1, ref.max()  # objects were found (a comparison of empty volumes proves little)
    for n in sorted({1, (len(points) + 1) // 2, points.index("commit") + 1}):
        out = f"out{n}.zarr"
        r = emseg(*args(out), faults=f"kill:{n}")
        assert r.returncode == -9, (n, points[n - 1], r.stderr)
        if os.path.exists(out):  # only once the output is complete may it stand at its path
            assert points[n - 1] == "committed", (n, points[n - 1])
            np.testing.assert_array_equal(read_volume(out), ref)
        r = emseg(*args(out))
        assert r.returncode == 0, (n, points[n - 1], r.stderr)
        got = read_volume(out)
        assert got.dtype == ref.dtype
        np.testing.assert_array_equal(got, ref, err_msg=f"killed at point {n} ({points[n - 1]})")
        shutil.rmtree(out)
    assert _visible(".") == sorted(["m.safetensors", "prob.zarr", "raw.tif", "ref.zarr"])  # no litter
    assert not [n for n in os.listdir(".") if n.startswith(".emseg-")], os.listdir(".")


@pytest.mark.parametrize("command", ["predict", "segment", "postprocess"])
def test_rerun_of_a_finished_run_does_nothing_and_changes_are_refused(inputs, command):
    args = COMMANDS[command]
    assert emseg(*args("out.zarr")).returncode == 0
    before = tree("out.zarr")
    r = emseg(*args("out.zarr"))
    assert r.returncode == 0 and "nothing to do" in r.stdout, (r.stdout, r.stderr)
    assert tree("out.zarr") == before
    if command == "postprocess":
        one_line_error(emseg(*args("out.zarr"), "--min-size", "5"), command, "options.min_size")
        shutil.rmtree("prob.zarr")
        _prob("prob.zarr", seed=1)
        one_line_error(emseg(*args("out.zarr")), command, "out.zarr", "inputs.pred", "--overwrite")
    else:
        _raw("raw.tif", seed=1)  # another volume of the same shape
        one_line_error(emseg(*args("out.zarr")), command, "out.zarr", "inputs.raw", "--overwrite")
        _raw("raw.tif", seed=0)
        _model("m.safetensors", seed=1)  # another model of the same architecture
        one_line_error(emseg(*args("out.zarr")), command, "models")
        _model("m.safetensors")
        one_line_error(emseg(*args("out.zarr"), "--tta", "flips"), command, "tta")
    assert tree("out.zarr") == before
    r = emseg(*args("out.zarr"), "--overwrite", *(["--tta", "flips"] if command != "postprocess" else []))
    assert r.returncode == 0, r.stderr
    assert tree("out.zarr") != before


def test_killed_run_resumes_only_the_same_run(inputs):
    args = COMMANDS["predict"]
    points = fault_points(*args("ref.zarr"))
    r = emseg(*args("out.zarr"), faults=f"kill:{len(points) // 2}")
    assert r.returncode == -9 and not os.path.exists("out.zarr")
    r = emseg("info", "out.zarr")
    one_line_error(r, "info", "incomplete output of an interrupted run", "rerun the same command")
    one_line_error(emseg(*args("out.zarr"), "--tta", "flips"), "predict", "options.tta", "incomplete output")
    st = os.stat("raw.tif")
    _raw("raw.tif", seed=1)
    one_line_error(emseg(*args("out.zarr")), "predict", "inputs.raw")
    _raw("raw.tif", seed=0)  # the same bytes again: only the modification time differs, and is refused
    one_line_error(emseg(*args("out.zarr")), "predict", "inputs.raw.mtime_ns")
    os.utime("raw.tif", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert emseg(*args("out.zarr")).returncode == 0
    np.testing.assert_array_equal(read_volume("out.zarr"), read_volume("ref.zarr"))


def test_existing_data_is_never_adopted(inputs):
    write_volume("mine.zarr", np.full((2,) + SHAPE, 7, np.float32))  # the user's own array, right shape
    before = tree("mine.zarr")
    one_line_error(emseg(*COMMANDS["predict"]("mine.zarr")), "predict", "mine.zarr", "already exists", "--overwrite")
    one_line_error(emseg(*COMMANDS["convert"]("mine.zarr")), "convert", "mine.zarr", "--overwrite")
    one_line_error(emseg(*COMMANDS["postprocess"]("mine.zarr")), "postprocess", "mine.zarr", "--overwrite")
    assert tree("mine.zarr") == before
    assert emseg(*COMMANDS["predict"]("mine.zarr"), "--overwrite").returncode == 0
    assert read_volume("mine.zarr").max() <= 1.0  # probabilities replaced the user's 7s, once asked to


@pytest.mark.parametrize("command", ["convert", "predict", "postprocess"])
def test_keys_that_leave_the_container_are_refused(inputs, command):
    os.makedirs("victim")
    with open("victim/precious.txt", "w") as f:
        f.write("keep me")
    write_volume("out.zarr:inside", np.zeros((2, 4, 4), np.uint8))
    os.symlink(os.path.abspath("victim"), "out.zarr/link")
    os.symlink("inside", "out.zarr/alias")  # a link to a dataset of the same container
    before, container = tree("victim"), tree("out.zarr")
    args = COMMANDS[command]
    for key in ("../victim", "a/../../victim", "/tmp/victim", "./x", "link", "alias", "alias/0"):
        r = emseg(*args(f"out.zarr:{key}"), "--overwrite")
        assert r.returncode == 2, (key, r.stderr)
        assert "Traceback" not in r.stderr and any(w in r.stderr for w in ("not allowed", "outside the container",
                                                                            "symbolic link")), (key, r.stderr)
    assert tree("victim") == before and tree("out.zarr") == container


def test_nothing_outside_the_output_is_touched(inputs):
    with open("notes.txt", "w") as f:
        f.write("mine")
    before = {n: tree(n) if os.path.isdir(n) else open(n, "rb").read() for n in os.listdir(".")}
    for command, args in COMMANDS.items():
        assert emseg(*args(f"{command}.zarr")).returncode == 0
    after = {n: tree(n) if os.path.isdir(n) else open(n, "rb").read() for n in before}
    assert after == before
    assert sorted(os.listdir(".")) == sorted(list(before) + [f"{c}.zarr" for c in COMMANDS])


def test_segment_into_a_dataset_of_a_container(inputs):
    write_volume("out.h5:raw", np.zeros(SHAPE, np.uint8))
    assert emseg(*COMMANDS["postprocess"]("out.h5:seg/cells")).returncode == 0
    assert emseg(*COMMANDS["postprocess"]("out.n5:seg")).returncode == 0
    a, b = read_volume("out.h5:seg/cells"), read_volume("out.n5:seg")
    np.testing.assert_array_equal(a, b)
    assert read_volume("out.h5:raw").shape == SHAPE and a.max() > 1
    with open_volume("out.h5:seg/cells") as vol:
        assert vol.shape == SHAPE


def test_hdf5_outputs_survive_sigkill_and_live_beside_their_input(inputs):
    write_volume("p.h5:pred", read_volume("prob.zarr"))
    args = ["postprocess", "p.h5:pred", "p.h5:seg", "--method", "bc", "--block-shape", "4,24,24", "--halo", "2,8,8"]
    points = fault_points(*args)  # input and output in one HDF5 file
    ref = read_volume("p.h5:seg")
    assert ref.max() > 1
    write_volume("q.h5:pred", read_volume("prob.zarr"))
    for n in spread(len(points)):
        shutil.copy("q.h5", f"q{n}.h5")
        qargs = [a.replace("p.h5", f"q{n}.h5") for a in args]
        assert emseg(*qargs, faults=f"kill:{n}").returncode == -9
        r = emseg(*qargs)
        assert r.returncode == 0, (n, points[n - 1], r.stderr)
        np.testing.assert_array_equal(read_volume(f"q{n}.h5:seg"), ref, err_msg=f"killed at {points[n - 1]}")
        np.testing.assert_array_equal(read_volume(f"q{n}.h5:pred"), read_volume("prob.zarr"))  # the input kept


def test_a_changed_chunk_of_a_zarr_input_is_a_different_input(tmp_path):
    import zarr

    from emseg.runs import differences, input_identity

    write_volume("r.zarr", np.zeros((64, 256, 256), np.uint8), chunks=(16, 64, 64))
    before = input_identity("r.zarr")
    arr = zarr.open("r.zarr/0", mode="r+")
    arr[48:64, 128:192, 192:256] = 7  # a chunk none of the content samples reads
    assert differences(before, input_identity("r.zarr")), "an edited chunk went unnoticed"


def test_two_callables_that_differ_only_in_what_they_capture_are_two_models():
    from emseg.runs import model_identity

    def make(scale):
        def model(x):
            return x * scale
        model.ndim = 3
        return model

    a, b = make(0.1), make(0.9)
    assert model_identity(a) != model_identity(b)
    assert model_identity(a) == model_identity(make(0.1))
