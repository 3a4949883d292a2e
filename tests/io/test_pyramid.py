"""OME-Zarr pyramids: factors, downsampling rules, levels written block by block, validated by ome-zarr-models
and read by ome-zarr-py (napari's reader) with the right scales; labels never gain ids."""

import subprocess
import sys

import numpy as np
import pytest
import zarr

from emseg.config import ExecutionConfig
from emseg.io import VolumeMeta, create_volume, write_volume
from emseg.io.pyramid import add_pyramid, downsample, pyramid_factors


def brute_mode(a, f):
    out = np.zeros(tuple(-(-n // k) for n, k in zip(a.shape, f)), a.dtype)
    for idx in np.ndindex(out.shape):
        w = a[tuple(slice(i * k, (i + 1) * k) for i, k in zip(idx, f))].ravel()
        vals, first, counts = np.unique(w, return_index=True, return_counts=True)
        best = counts.max()
        out[idx] = w[min(first[counts == best])]  # ties: the first in z, y, x order
    return out


def test_factors_follow_the_anisotropy():
    assert pyramid_factors((200, 4096, 4096), (50, 4, 4), min_size=128) == \
        [(1, 2, 2), (1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert pyramid_factors((64, 64, 64), (8, 8, 8), min_size=64) == []
    assert pyramid_factors((1, 1000, 1000), (1, 5, 5), min_size=100) == [(1, 2, 2)] * 4  # one section: z stays
    assert pyramid_factors((300, 200), (4, 4), min_size=64) == [(2, 2), (2, 2), (2, 2)]


@pytest.mark.parametrize("shape, f", [((7, 9, 11), (2, 2, 2)), ((5, 13, 6), (1, 2, 2)), ((9, 10), (2, 2))])
def test_downsampling_rules(shape, f):
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 4, shape).astype(np.uint32) * 1000
    mode = downsample(lab, f, "mode")
    np.testing.assert_array_equal(mode, brute_mode(lab, f))
    assert set(np.unique(mode)) <= set(np.unique(lab))
    np.testing.assert_array_equal(downsample(lab, f, "stride"), lab[tuple(slice(None, None, k) for k in f)])
    raw = rng.random(shape).astype(np.float32)
    mean = downsample(raw, f, "mean")
    ref = np.zeros(mean.shape)
    for idx in np.ndindex(mean.shape):
        ref[idx] = raw[tuple(slice(i * k, (i + 1) * k) for i, k in zip(idx, f))].mean()
    np.testing.assert_allclose(mean, ref, rtol=1e-6)
    chans = np.stack([raw, 2 * raw])  # leading channels are kept
    np.testing.assert_allclose(downsample(chans, f, "mean"), np.stack([mean, downsample(2 * raw, f, "mean")]))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_levels_validate_and_open_with_their_scales(tmp_path, zarr_format):
    rng = np.random.default_rng(1)
    lab = (rng.integers(0, 6, (9, 150, 131)) * 7).astype(np.uint16)
    path = tmp_path / "lab.zarr"
    from emseg.io import StorageConfig

    write_volume(path, lab, voxel_size=(50, 4, 4), offset=(0, 100, 0), chunks=(4, 32, 32),
                 storage=StorageConfig(zarr_format=zarr_format))
    shapes = add_pyramid(path, method="mode", min_size=32)
    assert shapes == [(9, 150, 131), (9, 75, 66), (9, 38, 33), (9, 19, 17)]
    g = zarr.open_group(str(path), mode="r")
    prev = lab
    for level in range(1, 4):  # each level is its whole upper level downsampled (blocks do not divide it)
        got = g[str(level)][:]
        np.testing.assert_array_equal(got, downsample(prev, (1, 2, 2), "mode"))
        assert set(np.unique(got)) <= set(np.unique(lab))
        prev = got
    if zarr_format == 2:
        from ome_zarr_models.v04 import Image
    else:
        from ome_zarr_models.v05 import Image
    image = Image.from_zarr(g)  # the OME-NGFF schema, checked by pydantic models of the spec
    ms = image.ome_attributes.multiscales[0] if zarr_format == 3 else image.attributes.multiscales[0]
    assert [d.path for d in ms.datasets] == ["0", "1", "2", "3"]
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = list(Reader(parse_url(str(path)))())[0]
    assert [tuple(d.shape) for d in node.data] == shapes
    scales = [[t for t in ct if t["type"] == "scale"][0]["scale"] for ct in node.metadata["coordinateTransformations"]]
    assert scales == [[50, 4, 4], [50, 8, 8], [50, 16, 16], [50, 32, 32]]
    trans = [[t for t in ct if t["type"] == "translation"][0]["translation"]
             for ct in node.metadata["coordinateTransformations"][1:]]
    assert trans[0] == [0, 102, 2] and trans[2] == [0, 114, 14]  # the centre of each level's first voxel


def test_automatic_pyramid_and_no_pyramid(tmp_path, monkeypatch):
    import emseg.io.pyramid as pyr

    monkeypatch.setattr(pyr, "AUTO_PYRAMID_BYTES", 1000)  # "large" for the test
    raw = np.random.default_rng(2).random((4, 140, 140)).astype(np.float32)
    write_volume(tmp_path / "auto.zarr", raw, chunks=(4, 64, 64))
    assert "1" in zarr.open_group(str(tmp_path / "auto.zarr"), mode="r")
    write_volume(tmp_path / "off.zarr", raw, chunks=(4, 64, 64), execution=ExecutionConfig(pyramid=False))
    assert "1" not in zarr.open_group(str(tmp_path / "off.zarr"), mode="r")
    for dtype in (np.uint8, np.uint32):  # ids or intensities? left alone rather than averaged
        write_volume(tmp_path / f"{np.dtype(dtype)}.zarr", (raw * 3).astype(dtype), chunks=(4, 64, 64))
        assert "1" not in zarr.open_group(str(tmp_path / f"{np.dtype(dtype)}.zarr"), mode="r")
    write_volume(tmp_path / "asked.zarr", (raw * 3).astype(np.uint8), chunks=(4, 64, 64),
                 execution=ExecutionConfig(pyramid="mode"))
    g = zarr.open_group(str(tmp_path / "asked.zarr"), mode="r")
    assert set(np.unique(g["1"][:])) <= {0, 1, 2}


def test_stride_levels_keep_the_first_voxel_centre_and_a_kill_leaves_level_0_listed(tmp_path, monkeypatch):
    import emseg.io.pyramid as pyr
    from emseg.io.omezarr import ome_multiscales

    lab = np.arange(4 * 64 * 64, dtype=np.uint32).reshape(4, 64, 64)
    write_volume(tmp_path / "s.zarr", lab, voxel_size=(10, 10, 10), offset=(0, 50, 0), chunks=(4, 32, 32))
    add_pyramid(tmp_path / "s.zarr", method="stride", min_size=16)
    ms = ome_multiscales(zarr.open_group(str(tmp_path / "s.zarr"), mode="r").attrs.asdict())[0]
    for d in ms["datasets"][1:]:
        assert d["coordinateTransformations"][1]["translation"] == [0, 50, 0]  # voxel 0's own centre
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "s.zarr"), mode="r")["1"][:], lab[::2, ::2, ::2])

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pyr, "run_blocks", killed, raising=False)
    import emseg.blockwise.execute as ex

    monkeypatch.setattr(ex, "run_blocks", killed)
    with pytest.raises(KeyboardInterrupt):
        add_pyramid(tmp_path / "s.zarr", method="mode", min_size=16)
    ms = ome_multiscales(zarr.open_group(str(tmp_path / "s.zarr"), mode="r").attrs.asdict())[0]
    assert [d["path"] for d in ms["datasets"]] == ["0"]  # the old levels are unlisted before they go


def _emseg(*args, cwd):
    return subprocess.run([sys.executable, "-m", "emseg", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_cli_pyramid_and_bad_input(tmp_path):
    lab = (np.random.default_rng(3).integers(0, 3, (6, 100, 90)) * 5).astype(np.uint16)
    write_volume(tmp_path / "lab.tif", lab, voxel_size=(30, 5, 5))
    r = _emseg("convert", "lab.tif", "a.zarr", "--pyramid", "--no-progress", cwd=tmp_path)
    assert r.returncode == 2 and "say --pyramid mode (labels) or --pyramid mean (raw)" in r.stderr
    assert not (tmp_path / "a.zarr").exists()  # refused before converting
    r = _emseg("convert", "lab.tif", "a.h5", "--pyramid", "mode", "--no-progress", cwd=tmp_path)
    assert r.returncode == 2 and "a .zarr" in r.stderr
    r = _emseg("convert", "lab.tif", "a.zarr", "--pyramid", "mode", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _emseg("pyramid", "a.zarr", "--min-size", "16", cwd=tmp_path)  # the method it was made with
    assert r.returncode == 0 and "3 levels (mode)" in r.stdout, r.stdout + r.stderr
    g = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")  # 30x5x5 nm: 30x10x10, 30x20x20, then 60x40x40
    assert g["3"].shape == (3, 13, 12) and set(np.unique(g["3"][:])) <= {0, 5, 10}
    r = _emseg("pyramid", "lab.tif", cwd=tmp_path)
    assert r.returncode == 2 and "OME-Zarr image" in r.stderr
