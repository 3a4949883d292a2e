"""Each stage's configuration filled from YAML (--config) and --set, as TrainConfig is, through the command line."""

import numpy as np

from emseg.cli import main
from emseg.io import read_volume, write_volume


def _raw():
    raw = (np.random.default_rng(0).random((2, 64, 64)) * 200 + 30).astype(np.uint8)
    write_volume("raw.zarr", raw, voxel_size=(5, 5, 5))


def test_predict_config_file_then_options_then_set(tmp_path, capsys):
    _raw()
    (tmp_path / "p.yaml").write_text("dtype: uint8\nblock_shape: [1, 64, 64]\nworkers: 1\n")
    assert main(["predict", "raw.zarr", "a.zarr", "--model", "mito-fibsem", "--config", str(tmp_path / "p.yaml"),
                 "--no-progress"]) == 0
    assert read_volume("a.zarr").dtype == np.uint8  # from the file
    assert main(["predict", "raw.zarr", "b.zarr", "--model", "mito-fibsem", "--config", str(tmp_path / "p.yaml"),
                 "--dtype", "float32", "--no-progress"]) == 0
    assert read_volume("b.zarr").dtype == np.float32  # the option wins over the file
    assert main(["predict", "raw.zarr", "c.zarr", "--model", "mito-fibsem", "--config", str(tmp_path / "p.yaml"),
                 "--dtype", "float32", "--set", "dtype=float16", "--no-progress"]) == 0
    assert read_volume("c.zarr").dtype == np.float16  # --set wins over both
    capsys.readouterr()
    assert main(["predict", "raw.zarr", "d.zarr", "--model", "mito-fibsem", "--set", "overlap=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "emseg predict: error: --set overlap=2: overlap must be in [0, 1); got 2.0", err


def test_postprocess_method_from_the_config_file(tmp_path, capsys):
    p = np.zeros((1, 2, 32, 32), np.float32)
    p[0, :, 2:10, 2:10] = p[0, :, 20:22, 20:22] = 0.9
    write_volume("p.zarr", p)
    (tmp_path / "post.yaml").write_text("method: cc\nmin_size: 20\n")
    assert main(["postprocess", "p.zarr", "l.zarr", "--config", str(tmp_path / "post.yaml"), "--no-progress"]) == 0
    assert read_volume("l.zarr").max() == 1  # the 8-voxel object fell under min_size 20
    (tmp_path / "bad.yaml").write_text("min_size: -1\n")
    assert main(["postprocess", "p.zarr", "m.zarr", "--method", "cc", "--config", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.yaml: min_size must be an integer >= 0" in err[0], err


def test_segment_sections_and_a_shared_field_at_the_top(tmp_path, capsys):
    _raw()
    (tmp_path / "s.yaml").write_text("halo: [0, 8, 8]\n")
    assert main(["segment", "raw.zarr", "s.zarr", "--model", "mito-fibsem", "--config", str(tmp_path / "s.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "halo is an option of predict and postprocess: put it under one of them" in err, err
    (tmp_path / "s.yaml").write_text("predict:\n  tta: null\npostprocess:\n  min_size: 5\n")
    assert main(["segment", "raw.zarr", "s.zarr", "--model", "mito-fibsem", "--config", str(tmp_path / "s.yaml"),
                 "--set", "postprocess.z_filter=0", "--no-progress"]) == 0
    assert read_volume("s.zarr").shape == (2, 64, 64)


def test_evaluate_config_file(tmp_path, capsys):
    gt = np.zeros((2, 32, 32), np.uint16)
    gt[:, 2:10, 2:10], gt[:, 20:30, 20:30] = 1, 2
    write_volume("gt.zarr", gt)
    write_volume("seg.zarr", gt)
    (tmp_path / "e.yaml").write_text("task: instance\nmetrics: [pq]\n")
    assert main(["evaluate", "gt.zarr", "seg.zarr", "--config", str(tmp_path / "e.yaml")]) == 0
    out = capsys.readouterr().out
    assert "pq " in out and "task:" not in out  # the task came from the file: nothing inferred


def test_bad_config_set_and_objects_are_one_line_naming_the_option_and_write_nothing(tmp_path, capsys):
    import os

    _raw()
    cases = [
        (["predict", "raw.zarr", "o.zarr", "--model", "mito-fibsem", "--config", "nope.yaml"], "nope.yaml"),
        (["predict", "raw.zarr", "o.zarr", "--model", "mito-fibsem", "--set", "colour=red"], "--set colour=red"),
        (["predict", "raw.zarr", "o.zarr", "--model", "mito-fibsem", "--set", "dtype"], "--set"),
        (["segment", "raw.zarr", "o.zarr", "--model", "mito-fibsem", "--objects", "cells"], "--objects"),
        (["segment", "raw.zarr", "o.zarr", "--model", "mito-fibsem", "--set", "postprocess.min_size=-3"],
         "--set min_size=-3"),
        (["evaluate", "raw.zarr", "raw.zarr", "--set", "threshold=2"], "--set threshold=2"),
    ]
    for argv, named in cases:
        try:
            rc = main(argv)
        except SystemExit as stop:  # argparse refuses a bad choice itself, with the same one-line form
            rc = stop.code
        assert rc == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and named in err[0], (argv, err)
        assert not os.path.exists("o.zarr") and not [f for f in os.listdir(".") if f.startswith(".emseg")], argv
