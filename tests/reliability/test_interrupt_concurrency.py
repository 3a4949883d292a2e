"""SIGINT, concurrent writers and unreachable schedulers, with real processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time

import numpy as np
import pytest

from emseg.io import read_volume, write_volume
from emseg.io.lock import lock_path

from harness import emseg, one_line_error, start, tree, wait_for
from test_runs import COMMANDS, _model, _raw

BIG = (12, 96, 96)
BLOCKS = 6 * 4 * 4  # of 2,24,24 blocks


@pytest.fixture
def slow_inputs(tmp_path):
    """A volume of many small blocks, so a run lasts long enough to be interrupted."""
    rng = np.random.default_rng(0)
    write_volume("raw.tif", (rng.random(BIG) * 255).astype(np.uint8), voxel_size=(30, 8, 8))
    _model("m.safetensors")
    return tmp_path


def _record_lines(path):
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return len([line for line in f.read().splitlines()[1:] if line.strip().isdigit()])


@pytest.mark.parametrize("threads", [1, 2])
def test_sigint_stops_within_a_block_and_tells_the_truth(slow_inputs, threads):
    args = ["predict", "raw.tif", "out.zarr", "--model", "m.safetensors", "--block-shape", "2,24,24",
            "--dtype", "float32", "--threads", str(threads), "--tta", "flips"]
    record = os.path.abspath(".emseg-run-out.zarr.jsonl")
    proc = start(*args)
    wait_for(lambda: _record_lines(record) >= 2, what="two recorded blocks")
    t = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    stopped = time.time() - t
    assert proc.returncode == 130, err
    assert stopped < 10, stopped
    done = _record_lines(record)
    assert f"interrupted after {done} of {BLOCKS} blocks" in err, (done, err)
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert not os.path.exists("out.zarr")
    r = emseg(*args)
    assert r.returncode == 0, r.stderr
    assert f"predicted {BLOCKS - done} of {BLOCKS} blocks" in r.stdout
    ref = emseg(*[a if a != "out.zarr" else "ref.zarr" for a in args])
    assert ref.returncode == 0
    np.testing.assert_array_equal(read_volume("out.zarr"), read_volume("ref.zarr"))


@pytest.mark.parametrize("command", ["predict", "convert"])
def test_a_second_writer_of_the_same_output_is_refused(slow_inputs, command):
    rng = np.random.default_rng(1)
    write_volume("big.tif", rng.integers(0, 255, (64, 256, 256), dtype=np.uint8))  # long enough to overlap
    args = [a if a != "raw.tif" else "big.tif" for a in COMMANDS[command]("out.zarr")]
    if command == "predict":
        args += ["--tta", "flips", "--threads", "1"]
    first = start(*args)
    wait_for(lambda: os.path.exists(lock_path("out.zarr")), what="the first writer's lock")
    second = emseg(*args)
    assert first.poll() is None, "the first run ended before the second tried: make it longer"
    line = one_line_error(second, command, "out.zarr", "is being written by process", str(first.pid))
    assert "wait for that run to finish" in line
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not os.path.exists("out.zarr")


def test_a_stale_lock_of_a_killed_run_is_taken_over(slow_inputs):
    args = ["predict", "raw.tif", "out.zarr", "--model", "m.safetensors", "--block-shape", "2,24,24",
            "--tta", "flips"]
    first = start(*args)
    wait_for(lambda: _record_lines(os.path.abspath(".emseg-run-out.zarr.jsonl")) >= 1, what="a recorded block")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert os.path.exists(lock_path("out.zarr"))  # left behind, but no longer held
    r = emseg(*args)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("container", ["h5", "zarr", "n5"])
def test_writers_of_different_keys_of_a_new_container_keep_both(tmp_path, container):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_volume(f"{name}.tif", rng.integers(0, 255, (16, 128, 128), dtype=np.uint8))
    procs = [start("convert", f"{name}.tif", f"out.{container}:group/{name}", "--chunks", "4,32,32",
                   "--max-block-mb", "0.05") for name in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    for name in ("a", "b"):
        np.testing.assert_array_equal(read_volume(f"out.{container}:group/{name}"), read_volume(f"{name}.tif"))


def test_overwrite_replaces_only_that_dataset(tmp_path):
    write_volume("out.zarr:keep", np.ones((2, 4, 4), np.uint8))
    write_volume("out.zarr:x", np.zeros((2, 4, 4), np.uint8))
    write_volume("src.tif", np.full((2, 4, 4), 5, np.uint8))
    keep = tree("out.zarr/keep")
    assert emseg("convert", "src.tif", "out.zarr:x", "--overwrite").returncode == 0
    assert read_volume("out.zarr:x").min() == 5 and tree("out.zarr/keep") == keep


def test_scheduler_that_is_not_dask_fails_fast(slow_inputs):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    t = time.time()
    r = emseg("predict", "raw.tif", "out.zarr", "--model", "m.safetensors", "--scheduler", f"tcp://127.0.0.1:{port}")
    assert time.time() - t < 20
    one_line_error(r, "predict", f"127.0.0.1:{port}", "Dask scheduler")
    assert not os.path.exists("out.zarr") and not [n for n in os.listdir(".") if n.startswith(".emseg-partial")]
    server.close()


def test_demo_never_replaces_a_users_files(tmp_path):
    os.makedirs("mine")
    with open("mine/report.html", "w") as f:
        f.write("my report")
    r = emseg("demo", "--out", "mine", "--steps", "1")
    one_line_error(r, "demo", "mine", "not an emseg demo's")
    assert open("mine/report.html").read() == "my report" and os.listdir("mine") == ["report.html"]


def test_non_finite_raw_is_an_error_naming_the_block(tmp_path):
    raw = np.random.default_rng(0).random((8, 48, 48)).astype(np.float32)
    raw[5, 30:34, 30:34] = np.nan
    write_volume("raw.zarr", raw)
    _model("m.safetensors")
    r = emseg("predict", "raw.zarr", "out.zarr", "--model", "m.safetensors", "--block-shape", "4,24,24")
    line = one_line_error(r, "predict", "raw.zarr", "block", "NaN")
    assert "[4:8" in line, line
    assert not os.path.exists("out.zarr")
    _raw("ok.tif")
    assert emseg("predict", "ok.tif", "ok.zarr", "--model", "m.safetensors").returncode == 0


def test_dask_run_killed_resumes_bit_identical(tmp_path):
    from harness import fault_points, spread

    _raw("raw.tif")
    _model("m.safetensors")
    args = ["predict", "raw.tif", "out.zarr", "--model", "m.safetensors", "--block-shape", "4,24,24",
            "--dtype", "float32", "--workers", "2"]
    ref = emseg(*[a if a != "out.zarr" else "ref.zarr" for a in args[:-2]], "--threads", "1")
    assert ref.returncode == 0, ref.stderr
    points = fault_points(*args)
    os.rename("out.zarr", "clean.zarr")
    n = spread(len(points), 3)[1]  # in the middle of the run: the driver dies, its cluster with it
    r = emseg(*args, faults=f"kill:{n}")
    assert r.returncode == -9 and not os.path.exists("out.zarr")
    r = emseg(*args)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(read_volume("out.zarr"), read_volume("clean.zarr"))  # the same execution
    # Dask workers run torch with their own thread count: the float32 sums may differ in the last bit
    np.testing.assert_allclose(read_volume("clean.zarr"), read_volume("ref.zarr"), atol=1e-6)


def test_overwrite_killed_between_old_and_new_keeps_a_complete_result(tmp_path):
    from harness import fault_points

    _raw("raw.tif")
    _model("m.safetensors")
    args = COMMANDS["predict"]("out.zarr")
    assert emseg(*args).returncode == 0
    points = fault_points(*args, "--overwrite", "--tta", "flips")
    assert "moved-old" in points
    shutil.rmtree("out.zarr")
    assert emseg(*args).returncode == 0
    before = tree("out.zarr")
    r = emseg(*args, "--overwrite", "--tta", "flips", faults=f"kill:{points.index('moved-old') + 1}")
    assert r.returncode == -9 and not os.path.exists("out.zarr")  # the old one moved aside, the new one complete
    # the next run puts the old one back first: without --overwrite it is refused, and kept
    one_line_error(emseg(*args, "--tta", "flips"), "predict", "out.zarr", "--overwrite")
    assert tree("out.zarr") == before
    r = emseg(*args, "--overwrite", "--tta", "flips")  # the same run: its finished partial output is committed
    assert r.returncode == 0 and "predicted 0 of" in r.stdout, (r.stdout, r.stderr)
    assert not [n for n in os.listdir(".") if n.startswith(".emseg-")], os.listdir(".")
    assert emseg(*args, "--tta", "flips").returncode == 0  # finished: nothing to do
    one_line_error(emseg(*args), "predict", "options.tta")


def test_a_conversion_killed_while_replacing_never_loses_the_old_output(tmp_path):
    from harness import fault_points

    write_volume("src.tif", np.full((4, 32, 32), 1, np.uint8))
    write_volume("new.tif", np.full((4, 32, 32), 2, np.uint8))
    write_volume("other.tif", np.full((4, 32, 32), 3, np.uint8))
    assert emseg("convert", "src.tif", "u.zarr").returncode == 0
    before = tree("u.zarr")
    points = fault_points("convert", "new.tif", "v.zarr", "--overwrite")
    assert "moved-old" not in points  # v.zarr did not exist: nothing to move aside
    points = fault_points("convert", "new.tif", "v.zarr", "--overwrite")
    r = emseg("convert", "new.tif", "u.zarr", "--overwrite", faults=f"kill:{points.index('moved-old') + 1}")
    assert r.returncode == -9 and not os.path.exists("u.zarr")
    one_line_error(emseg("convert", "other.tif", "u.zarr"), "convert", "u.zarr", "--overwrite")
    assert tree("u.zarr") == before  # put back, not deleted
    assert emseg("convert", "new.tif", "u.zarr", "--overwrite").returncode == 0
    assert read_volume("u.zarr").min() == 2
    assert not [n for n in os.listdir(".") if n.startswith(".emseg-")], os.listdir(".")
