"""The ``emseg`` command: fast start, info and convert, clean errors, atomic interrupted converts."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from emseg.cli import main
from emseg.io import StorageConfig, open_volume, write_volume

HEAVY = ("torch", "dask", "distributed", "zarr", "h5py", "tifffile", "scipy", "skimage", "nibabel", "mrcfile")


def test_import_and_help_load_no_heavy_modules():
    """`import emseg` and `emseg --help` must stay fast: no heavy library may be imported for them."""
    code = ("import sys, emseg, emseg.cli, emseg.io\n"
            "try:\n    emseg.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_info_table(capsys):
    write_volume("a.h5:volumes/raw", np.arange(60, dtype=np.uint8).reshape(3, 4, 5), voxel_size=(40, 4, 4))
    assert main(["info", "a.h5:volumes/raw"]) == 0
    out = capsys.readouterr().out
    assert "3 x 4 x 5  (zyx)" in out and "40 x 4 x 4 nm" in out and "min 0, max 59" in out


def test_info_lists_every_dataset_of_a_container(capsys):
    write_volume("c.h5:raw", np.zeros((2, 2, 2), np.uint8))
    write_volume("c.h5:labels", np.ones((2, 2, 2), np.uint32))
    assert main(["info", "c.h5", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["key"] for i in infos] == ["labels", "raw"]
    assert infos[0]["sample"]["n_ids"] == 1


def test_convert_with_chunks_and_voxel_size(capsys):
    data = np.random.default_rng(0).integers(0, 255, (9, 70, 50), dtype=np.uint8)
    write_volume("in.tif", data)
    assert main(["convert", "in.tif", "out.zarr", "--chunks", "4,32,32", "--voxel-size", "30,4,4",
                 "--no-progress"]) == 0
    with open_volume("out.zarr") as vol:
        assert vol.chunks == (4, 32, 32) and vol.voxel_size == (30.0, 4.0, 4.0)
        np.testing.assert_array_equal(vol[...], data)


@pytest.mark.parametrize("argv,message", [
    (["info", "missing.tif"], "missing.tif: no such file"),
    (["convert", "in.tif", "o.zarr", "--voxel-size", "30,0,4"], "voxel_size must be 3 positive"),
    (["convert", "in.tif", "o.zarr", "--chunks", "4,x,4"], "expected comma-separated integers"),
    (["convert", "in.tif", "o.xyz"], "unsupported file type '.xyz'"),
    (["convert", "in.tif", "o.zarr", "--compression", "brotli"], "brotli"),
])
def test_cli_errors_are_one_clear_line(argv, message, capsys):
    write_volume("in.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(SystemExit) if "--chunks" in argv or "--voxel-size" in argv else _no_raise():
        code = main(argv)
        assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not os.path.exists("o.zarr") and not os.path.exists("o.xyz")


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_convert_leaves_no_output(sig, tmp_path):
    """Kill a conversion halfway: nothing at the output path, nothing that looks complete."""
    print("SIGINT in the test process:", signal.getsignal(signal.SIGINT))
    # big enough that the conversion takes seconds after its partial output appears (64 slices finished
    # within the 0.5 s below on a fast, idle machine, and the interrupt came too late)
    write_volume("big.h5:raw", np.random.default_rng(0).integers(0, 255, (256, 512, 512), dtype=np.uint8),
                 chunks=(8, 512, 512), storage=StorageConfig(compression=None))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # a child inherits an ignored SIGINT (Python then installs no KeyboardInterrupt handler), and the test
    # process may have it ignored by then: give the child the default disposition, as in a shell
    proc = subprocess.Popen([sys.executable, "-m", "emseg", "convert", "big.h5:raw", "out.zarr", "--chunks",
                             "1,64,64", "--max-block-mb", "1", "--compression", "zlib"],
                            stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not any(".emseg-partial-" in n for n in os.listdir(".")):
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "conversion finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not os.path.exists("out.zarr")
    if sig == signal.SIGINT:
        assert b"interrupted" in err
        assert not any(".emseg-partial-" in n for n in os.listdir("."))  # cleaned up too
    # a second run succeeds and the (stale, hidden) partial output does not get in its way
    subprocess.run([sys.executable, "-m", "emseg", "convert", "big.h5:raw", "out.zarr", "--no-progress"],
                   check=True)
    with open_volume("out.zarr") as vol:
        assert vol.shape == (256, 512, 512)
