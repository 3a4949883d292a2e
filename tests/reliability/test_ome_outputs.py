"""emseg segment --into IMAGE.zarr: the labels become an OME-NGFF label image of the raw, with a pyramid whose levels
never hold ids the full resolution lacks; ome-zarr-models validates it and ome-zarr-py reads it as labels."""

import numpy as np
import zarr
from harness import emseg, one_line_error
from test_runs import _model, _raw


def test_segment_into_the_raw_image(tmp_path, monkeypatch):
    import emseg.io.pyramid as pyr

    monkeypatch.chdir(tmp_path)
    _raw("raw.tif")
    _model("m.safetensors")
    r = emseg("convert", "raw.tif", "raw.zarr", "--pyramid", "--no-progress")  # uint8: intensities or ids?
    one_line_error(r, "convert", "say --pyramid mode (labels) or --pyramid mean (raw)")
    r = emseg("convert", "raw.tif", "raw.zarr", "--pyramid", "mean", "--no-progress")
    assert r.returncode == 0, r.stderr
    seg = ("--model", "m.safetensors", "--block-shape", "4,24,24", "--method", "bc", "--param", "seed_threshold=0.6",
           "--no-progress")
    one_line_error(emseg("segment", "raw.zarr", "a/b", "--into", "raw.zarr", *seg), "segment", "label image's name")
    one_line_error(emseg("segment", "raw.zarr", "cells", "--into", "raw.tif", *seg), "segment", "not an OME-Zarr image")
    r = emseg("segment", "raw.zarr", "cells", "--into", "raw.zarr", "--pyramid", *seg)
    assert r.returncode == 0, r.stderr
    g = zarr.open_group("raw.zarr", mode="r")
    assert dict(g["labels"].attrs)["labels"] == ["cells"]
    assert dict(g["labels/cells"].attrs)["image-label"]["source"] == {"image": "../../"}
    from ome_zarr_models.v04 import Image, ImageLabel, Labels

    Image.from_zarr(g)
    Labels.from_zarr(g["labels"])
    ImageLabel.from_zarr(g["labels/cells"])
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    nodes = list(Reader(parse_url("raw.zarr"))())
    labels = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert len(labels) == 1 and tuple(labels[0].data[0].shape) == (12, 48, 48)
    # a pyramid on the label image: its levels take only ids of the full resolution
    # 30 x 8 x 8 nm: 30 x 16 x 16, then every axis halves
    assert pyr.add_pyramid("raw.zarr", "labels/cells", method="mode", min_size=12)[1:] == [(12, 24, 24), (6, 12, 12)]
    ids = set(np.unique(g["labels/cells/0"][:]))
    assert len(ids) > 3
    for level in ("1", "2"):
        assert set(np.unique(zarr.open_group("raw.zarr", mode="r")[f"labels/cells/{level}"][:])) <= ids
    r = emseg("segment", "raw.zarr", "cells", "--into", "raw.zarr", *seg)  # the same run again: nothing to do
    assert r.returncode == 0 and "nothing to do" in r.stdout
