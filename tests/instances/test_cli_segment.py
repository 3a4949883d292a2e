"""`emseg segment` and `emseg postprocess` end to end."""

import json

import numpy as np
import pytest

from emseg.cli import main
from emseg.instances import connected_components
from emseg.io import open_volume, read_volume, write_volume


def _model(path, target="binary", **extra):
    import torch

    from emseg.models import UNet, save_model

    torch.manual_seed(0)
    save_model(UNet(ndim=3, features=4, depth=2, norm="batch").eval(), path, extra={"target": target, **extra})


def test_cli_segment_runs_prediction_and_components(capsys, monkeypatch):
    _model("m.safetensors")
    write_volume("raw.zarr", np.random.default_rng(2).random((32, 64, 48)).astype(np.float32))
    argv = ["segment", "raw.zarr", "cells.zarr", "--model", "m.safetensors", "--block-shape", "24,32,32",
            "--keep-probabilities", "prob.zarr", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "objects" in out and "cells.zarr" in out
    prob = read_volume("prob.zarr")[0].astype(np.float32)
    labels = read_volume("cells.zarr")
    with open_volume("cells.zarr") as vol:
        assert vol.axes == "zyx" and vol.dtype.kind == "u"
    from conftest import same_partition

    assert same_partition(connected_components(prob, 0.5), labels)
    import emseg.instances.stitch as b

    def fail(*a, **k):
        raise AssertionError("a finished run recomputed a block")

    monkeypatch.setattr(b, "_segment_block", fail)
    monkeypatch.setattr(b, "_relabel_block", fail)
    assert main(argv) == 0  # finished: a second run resumes with nothing left to do
    assert "nothing to do" in capsys.readouterr().out
    np.testing.assert_array_equal(read_volume("cells.zarr"), labels)


def test_cli_postprocess_and_errors(capsys):
    p = np.zeros((1, 8, 40, 40), np.float32)
    p[0, :, 5:15, 5:15] = p[0, :, 25:35, 20:38] = 0.9
    write_volume("p.zarr", p)
    assert main(["postprocess", "p.zarr", "l.zarr", "--method", "cc", "--block-shape", "8,16,16",
                 "--no-progress"]) == 0
    assert "2 objects" in capsys.readouterr().out
    assert read_volume("l.zarr").max() == 2
    write_volume("affs.zarr", np.zeros((3, 8, 16, 16), np.float32))
    assert main(["postprocess", "affs.zarr", "s.zarr", "--method", "mws",
                 "--offsets", json.dumps([[-1, 0, 0], [0, -1, 0]]), "--no-progress"]) == 2
    assert "3 affinity channels but 2 offsets" in capsys.readouterr().err
    assert main(["postprocess", "p.zarr", "l.zarr", "--method", "watershed", "--no-progress"]) == 2
    assert "l.zarr already holds" in capsys.readouterr().err


@pytest.mark.parametrize("task,method", [("binary", "cc"), ("bc", "bc"), ("bcd", "bcd"), ("boundary", "watershed"),
                                         ("sdt", "sdt")])
def test_method_follows_the_model_task(task, method):
    from emseg.models.reader import postprocess_defaults

    assert postprocess_defaults(task).method == method
    offsets = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]
    assert postprocess_defaults("affinities", {"offsets": offsets}).method == "agglomerate"
    assert postprocess_defaults("affinities", {"offsets": offsets + [[0, -9, 0]]}).method == "mws"
    assert postprocess_defaults("binary", objects="mito").min_size == 200
    with pytest.raises(ValueError, match="unknown kind of objects 'cells'"):
        postprocess_defaults("binary", objects="cells")
