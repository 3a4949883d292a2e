"""Every format: data, dtype, voxel size (and offset where the format has one) survive a round trip."""

import numpy as np
import pytest

from emseg.config import ExecutionConfig
from emseg.io import StorageConfig, VolumeMeta, create_volume, list_datasets, open_volume, read_volume, write_volume

# (path, format override, carries voxel size, carries offset, dtype that comes back for uint8)
FORMATS = [
    ("vol.tif", None, True, False),
    ("vol.h5:volumes/raw", None, True, True),
    ("vol.zarr", None, True, True),
    ("vol.zarr:labels/cells", None, True, True),
    ("vol.n5:raw", None, True, True),
    ("vol.mrc", None, True, True),
    ("vol.nii", None, True, False),
    ("vol.nii.gz", None, True, False),
    ("slices", "image-folder", False, False),
]


@pytest.mark.parametrize("path,fmt,has_vs,has_offset", FORMATS)
def test_roundtrip_uint8(path, fmt, has_vs, has_offset, rng):
    data = rng.integers(0, 256, (5, 37, 41), dtype=np.uint8)  # shapes no chunking divides
    write_volume(path, data, voxel_size=(30, 6, 5), offset=(300, 60, 50) if has_offset else None,
                 storage=StorageConfig(format=fmt))
    with open_volume(path, format=fmt) as vol:
        assert vol.shape == data.shape and vol.axes == "zyx"
        np.testing.assert_array_equal(vol[...], data)
        np.testing.assert_array_equal(vol[1:4, 10:30, 7], data[1:4, 10:30, 7])
        np.testing.assert_array_equal(vol[-1, ::3, 5:], data[-1, ::3, 5:])
        assert vol.voxel_size == ((30.0, 6.0, 5.0) if has_vs else None)
        if has_offset:
            assert vol.offset == (300.0, 60.0, 50.0)
        # MRC2014 has no unsigned 8-bit mode: mrcfile widens to uint16, values unchanged
        assert vol.dtype == (np.uint16 if path.endswith(".mrc") else np.uint8)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.uint64, np.float32])
@pytest.mark.parametrize("path", ["v.tif", "v.h5:x", "v.zarr", "v.n5:x", "v.nii.gz"])
def test_roundtrip_dtypes(path, dtype, rng):
    data = (rng.random((3, 20, 30)) * 1000).astype(dtype)
    write_volume(path, data, voxel_size=(8, 8, 8))
    out = read_volume(path)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, data)


def test_mrc_float_and_int16(rng):
    for dtype in (np.float32, np.int16):
        data = (rng.random((4, 16, 16)) * 100).astype(dtype)
        write_volume(f"v_{np.dtype(dtype).name}.mrc", data, voxel_size=(2.5, 2.5, 2.5))
        with open_volume(f"v_{np.dtype(dtype).name}.mrc") as vol:
            assert vol.dtype == dtype and vol.voxel_size == (2.5, 2.5, 2.5)
            np.testing.assert_array_equal(vol[...], data)


@pytest.mark.parametrize("path", ["img.tif", "img.h5:img", "img.zarr", "img.n5:img", "img.mrc", "img.nii"])
def test_roundtrip_2d(path, rng):
    data = rng.integers(0, 60000, (33, 47), dtype=np.uint16)
    write_volume(path, data, voxel_size=(4, 4))
    with open_volume(path) as vol:
        assert vol.axes == "yx" and vol.voxel_size == (4.0, 4.0)
        np.testing.assert_array_equal(vol[...], data)


@pytest.mark.parametrize("path", ["c.zarr", "c.h5:pred", "c.n5:pred", "c.tif"])
def test_roundtrip_channels(path, rng):
    data = rng.random((2, 4, 20, 24)).astype(np.float32)
    write_volume(path, data, axes="czyx", voxel_size=(40, 4, 4))
    with open_volume(path) as vol:
        assert vol.axes == "czyx" and vol.voxel_size == (40.0, 4.0, 4.0)
        np.testing.assert_array_equal(vol[1, 2], data[1, 2])


def test_zarr_v3_ome_05(rng):
    data = rng.integers(0, 9, (6, 30, 30), dtype=np.uint32)
    write_volume("v3.zarr", data, voxel_size=(5, 5, 5), offset=(10, 0, 0), chunks=(4, 16, 16),
                 storage=StorageConfig(zarr_format=3))
    import zarr

    group = zarr.open_group("v3.zarr", mode="r")
    assert group.metadata.zarr_format == 3
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["z", "y", "x"]
    with open_volume("v3.zarr") as vol:
        assert vol.chunks == (4, 16, 16) and vol.voxel_size == (5.0, 5.0, 5.0) and vol.offset == (10.0, 0.0, 0.0)
        np.testing.assert_array_equal(vol[...], data)


def test_ome_zarr_04_layout(rng):
    """The written group follows OME-NGFF 0.4: multiscales, axes with units, nested '/' chunk keys."""
    import json
    import os

    write_volume("img.zarr", rng.integers(0, 255, (8, 70, 70), dtype=np.uint8), voxel_size=(30, 4, 4),
                 chunks=(4, 32, 32))
    attrs = json.load(open("img.zarr/.zattrs"))
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    assert ms["axes"] == [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    assert ms["datasets"][0]["path"] == "0"
    assert ms["datasets"][0]["coordinateTransformations"][0] == {"type": "scale", "scale": [30.0, 4.0, 4.0]}
    zarray = json.load(open("img.zarr/0/.zarray"))
    assert zarray["dimension_separator"] == "/" and zarray["chunks"] == [4, 32, 32]
    assert os.path.isfile("img.zarr/0/1/2/2")  # last chunk, nested


def test_ome_zarr_read_by_reference_reader(rng):
    """An independent OME-NGFF reader (ome-zarr-py, napari's reader) sees our image and voxel size."""
    ome_zarr = pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    data = rng.integers(0, 255, (8, 40, 50), dtype=np.uint8)
    write_volume("img.zarr", data, voxel_size=(30, 4, 4))
    node = next(iter(Reader(parse_url("img.zarr"))()))
    np.testing.assert_array_equal(np.asarray(node.data[0]), data)
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [30.0, 4.0, 4.0]
    assert ome_zarr.__version__


def test_create_volume_blockwise(rng):
    data = rng.integers(0, 255, (10, 50, 70), dtype=np.uint8)
    for path in ("out.zarr", "out.h5:pred", "out.n5:pred"):
        vol = create_volume(path, data.shape, np.uint8, chunks=(4, 16, 16), meta=VolumeMeta("zyx", (8, 8, 8)))
        assert vol.chunks == (4, 16, 16)
        for z in range(0, 10, 4):
            vol[z:z + 4] = data[z:z + 4]
        vol.close()
        np.testing.assert_array_equal(read_volume(path), data)


def test_create_then_reopen_partial_is_zero():
    vol = create_volume("part.zarr", (8, 8, 8), np.float32, chunks=(4, 4, 4))
    vol[:4] = 1.5
    with open_volume("part.zarr") as back:
        assert back[:4].min() == 1.5 and back[4:].max() == 0


def test_write_into_existing_container_keeps_other_datasets(rng):
    raw = rng.integers(0, 255, (4, 10, 10), dtype=np.uint8)
    write_volume("c.h5:volumes/raw", raw)
    write_volume("c.h5:volumes/labels/ids", raw.astype(np.uint64))
    write_volume("c.zarr:raw", raw)
    write_volume("c.zarr:labels", raw.astype(np.uint32))
    from emseg.io import list_datasets

    assert list_datasets("c.h5") == ["volumes/labels/ids", "volumes/raw"]
    assert list_datasets("c.zarr") == ["labels/0", "raw/0"]
    np.testing.assert_array_equal(read_volume("c.zarr:raw"), raw)


def test_overwrite(rng):
    write_volume("o.zarr", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite"):
        write_volume("o.zarr", np.ones((2, 4, 4), np.uint8))
    write_volume("o.zarr", np.ones((2, 4, 4), np.uint8), execution=ExecutionConfig(overwrite=True))
    assert read_volume("o.zarr").min() == 1
    write_volume("o.h5:a", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="o.h5:a already holds"):
        write_volume("o.h5:a", np.ones((2, 4, 4), np.uint8))
    write_volume("o.h5:a", np.ones((2, 4, 4), np.uint8), execution=ExecutionConfig(overwrite=True))
    assert read_volume("o.h5:a").min() == 1


def test_volume_slicing_like_numpy(rng):
    data = rng.integers(0, 255, (6, 20, 30), dtype=np.uint8)
    write_volume("s.zarr", data, chunks=(2, 8, 8))
    vol = open_volume("s.zarr")
    for key in [(0,), (-1, 5), (slice(1, 4), Ellipsis, 3), (Ellipsis, slice(2, 9, 2)), (slice(None), 3, slice(5, 2)),
                (2, slice(0, 100))]:
        np.testing.assert_array_equal(vol[key], data[key])
    np.testing.assert_array_equal(np.asarray(vol), data)
    with pytest.raises(IndexError):
        vol[6]
    with pytest.raises(TypeError, match="fancy"):
        vol[[1, 2]]
    with pytest.raises(PermissionError, match="read-only"):
        vol[0] = 1


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_datasets_added_to_a_container_keep_the_others(zarr_format):
    storage = StorageConfig(zarr_format=zarr_format)
    write_volume("t.zarr:raw", np.zeros((2, 4, 4), np.uint8), storage=storage)
    write_volume("t.zarr:labels/cells", np.ones((2, 4, 4), np.uint32), storage=storage)  # a new group
    write_volume("t.zarr:labels/mito", np.full((2, 4, 4), 2, np.uint32), storage=storage)
    assert read_volume("t.zarr:raw").max() == 0 and read_volume("t.zarr:labels/cells").max() == 1
    assert read_volume("t.zarr:labels/mito").max() == 2
    assert list_datasets("t.zarr") == ["labels/cells/0", "labels/mito/0", "raw/0"]
