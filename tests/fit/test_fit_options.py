"""Every option of `emseg plan` and `emseg fit` given a bad value: one line naming the option, nothing written."""

import os

import pytest

from emseg.cli import main
from emseg.io import write_volume
from emseg.synthetic import synthetic_em


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("options")
    em = synthetic_em((12, 64, 64), seed=0)
    write_volume(str(d / "raw.zarr"), em.raw, voxel_size=em.voxel_size)
    write_volume(str(d / "mito.zarr"), em.mito, voxel_size=em.voxel_size)
    part = em.mito.copy()
    part[5] = 0
    write_volume(str(d / "part.zarr"), part, voxel_size=em.voxel_size)
    return d


def _fails(capsys, argv, option):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own checks (types, choices) exit from the parser
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert option in err, (option, err)
    return err


FIT_CASES = [
    ("--minutes", ["--minutes", "-1"]), ("--minutes", ["--minutes", "abc"]), ("--minutes", ["--minutes", "0"]),
    ("--tune-minutes", ["--tune-minutes", "0"]), ("--seed", ["--seed", "-1"]), ("--seed", ["--seed", "x"]),
    ("--device", ["--device", "gpu"]), ("--voxel-size", ["--voxel-size", "0,4,4"]),
    ("--voxel-size", ["--voxel-size", "4,4"]), ("--val", ["--val", "abc"]), ("--val", ["--val", "5:2"]),
    ("--init", ["--init", "no-such-model"]), ("--sections", ["--sections", "3,3"]),
    ("--sections", ["--sections", "x"]), ("--sections", ["--sections", "2,40"]),
    ("--freeze", ["--freeze", "encoder"]), ("--freeze", ["--init", "mito-fibsem", "--freeze", "decoder"]),
    ("--init-lr-scale", ["--init-lr-scale", "0"]), ("--init-lr-scale", ["--init-lr-scale", "0.1"]),
    ("--adabn", ["--adabn", "-1"]), ("--semi", ["--semi", "fixmatch"]),
    ("--context", ["--context", "-1"]), ("--context", ["--context", "x"]), ("--context", ["--context", "9"]),
    ("--context", ["--init", "neurons-fibsem", "--context", "1"]),
    ("--semi propagate", ["--semi", "propagate"]),
    ("--semi propagate", ["--sections", "2,6", "--init", "neurons-fibsem", "--semi", "propagate"]),
]


@pytest.mark.parametrize("option, args", FIT_CASES, ids=[" ".join(a) for _, a in FIT_CASES])
def test_fit_bad_option_values(data, tmp_path, capsys, option, args):
    out = tmp_path / "out"
    _fails(capsys, ["fit", str(data / "raw.zarr"), str(data / "mito.zarr"), str(out), "--no-progress", *args],
           option)
    assert not out.exists()  # nothing half-written


def test_fit_sections_without_labels_are_named(data, tmp_path, capsys):
    out = tmp_path / "out"
    err = _fails(capsys, ["fit", str(data / "raw.zarr"), str(data / "part.zarr"), str(out), "--no-progress",
                          "--sections", "2,5,9"], "--sections 5")
    assert "part.zarr" in err and "hold nothing there" in err and not out.exists()


PLAN_CASES = [
    ("--minutes", ["--minutes", "0"]), ("--seed", ["--seed", "-1"]), ("--device", ["--device", "tpu"]),
    ("--voxel-size", ["--voxel-size", "a,b,c"]), ("--val", ["--val", "3"]), ("--val", ["--val", "40:50"]),
    ("--context", ["--context", "-2"]), ("--context", ["--context", "9"]),
]


@pytest.mark.parametrize("option, args", PLAN_CASES, ids=[" ".join(a) for _, a in PLAN_CASES])
def test_plan_bad_option_values(data, tmp_path, capsys, option, args):
    out = tmp_path / "plan.yaml"
    _fails(capsys, ["plan", str(data / "raw.zarr"), str(data / "mito.zarr"), "--out", str(out), "--no-measure",
                    *args], option)
    assert not out.exists()


def test_plan_refuses_an_existing_out_without_overwrite(data, tmp_path, capsys):
    out = tmp_path / "plan.yaml"
    out.write_text("mine\n")
    _fails(capsys, ["plan", str(data / "raw.zarr"), str(data / "mito.zarr"), "--out", str(out), "--no-measure"],
           "--out")
    assert out.read_text() == "mine\n"
    assert main(["plan", str(data / "raw.zarr"), str(data / "mito.zarr"), "--out", str(out), "--no-measure",
                 "--overwrite"]) == 0
    assert out.read_text().startswith("# emseg training plan") and os.path.getsize(out) > 100


PRETRAIN_CASES = [
    ("--minutes", ["--minutes", "0"]), ("--dims", ["--dims", "4d"]), ("--features", ["--features", "0"]),
    ("--depth", ["--depth", "x"]), ("--patch", ["--patch", "32,32,32"]), ("--patch", ["--patch", "a"]),
    ("--batch-size", ["--batch-size", "0"]), ("--voxel-size", ["--voxel-size", "0,4,4"]),
    ("--device", ["--device", "gpu"]), ("--seed", ["--seed", "x"]),
]


@pytest.mark.parametrize("option, args", PRETRAIN_CASES, ids=[" ".join(a) for _, a in PRETRAIN_CASES])
def test_pretrain_bad_option_values(data, tmp_path, capsys, option, args):
    out = tmp_path / "pre"
    _fails(capsys, ["pretrain", str(data / "raw.zarr"), str(out), "--no-progress", *args], option)
    assert not out.exists()
