"""Bad input: each error names the file or argument, what was found and what is expected."""

import os

import numpy as np
import pytest

from emseg.io import KeyNotFoundError, open_volume, parse_voxel_size, write_volume


def test_missing_path():
    with pytest.raises(FileNotFoundError, match="nope.tif: no such file"):
        open_volume("nope.tif")


def test_missing_folder_for_output():
    with pytest.raises(FileNotFoundError, match="output folder"):
        write_volume("no/such/dir/out.zarr", np.zeros((2, 2, 2), np.uint8))


def test_unsupported_extension():
    open("stack.xyz", "w").write("x")
    with pytest.raises(ValueError, match=r"stack.xyz: unsupported file type '.xyz'; supported: .tif, .tiff"):
        open_volume("stack.xyz")


@pytest.mark.parametrize("path", ["f.h5", "f.zarr", "f.n5"])
def test_missing_key_lists_existing(path):
    write_volume(f"{path}:volumes/raw", np.zeros((2, 3, 4), np.uint8))
    write_volume(f"{path}:volumes/labels", np.zeros((2, 3, 4), np.uint32))
    with pytest.raises(KeyNotFoundError, match=r"has no .*'volumes/rwa'.*volumes/labels.*volumes/raw"):
        open_volume(f"{path}:volumes/rwa")
    with pytest.raises(ValueError, match=r"2 datasets|2 arrays"):
        open_volume(path)  # ambiguous without a key: the message lists them


def test_key_on_single_volume_file():
    write_volume("a.tif", np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(ValueError, match="drop the key"):
        open_volume("a.tif", key="raw")


def _tiff_bytes(tmp="t.tif"):
    rng = np.random.default_rng(0)
    write_volume(tmp, rng.integers(0, 255, (6, 64, 64), dtype=np.uint8))
    return open(tmp, "rb").read()


def test_truncated_tiff():
    data = _tiff_bytes()
    open("trunc.tif", "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"trunc.tif: not a readable TIFF file .*truncated or corrupt"):
        open_volume("trunc.tif")


def test_corrupt_tiff_header():
    open("junk.tif", "wb").write(b"II*\x00" + os.urandom(200))
    with pytest.raises(ValueError, match=r"junk.tif: not a readable TIFF"):
        open_volume("junk.tif")
    open("text.tif", "wb").write(b"this is not a tiff at all")
    with pytest.raises(ValueError, match=r"text.tif: not a readable TIFF"):
        open_volume("text.tif")


def test_empty_folder():
    os.mkdir("empty")
    with pytest.raises(ValueError, match=r"empty: folder holds no image slices"):
        open_volume("empty")


def test_slices_of_different_shapes():
    from PIL import Image

    os.mkdir("stack")
    for i, shape in enumerate([(10, 10), (10, 10), (10, 12)]):
        Image.fromarray(np.zeros(shape, np.uint8)).save(f"stack/s{i}.png")
    with pytest.raises(ValueError, match=r"slice 's2.png' is \(10, 12\) uint8 but 's0.png' is \(10, 10\) uint8"):
        open_volume("stack")


def test_slices_of_different_dtypes():
    import tifffile

    os.mkdir("stack")
    tifffile.imwrite("stack/1.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite("stack/2.tif", np.zeros((8, 8), np.uint16))
    with pytest.raises(ValueError, match=r"'2.tif' is \(8, 8\) uint16 but '1.tif' is \(8, 8\) uint8"):
        open_volume("stack")


def test_natural_sort_of_slices():
    from PIL import Image

    os.mkdir("stack")
    for i in (1, 2, 10):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(f"stack/{i}.png")
    assert open_volume("stack")[:, 0, 0].tolist() == [1, 2, 10]


def test_4d_where_3d_expected():
    write_volume("c.zarr", np.zeros((2, 3, 4, 5), np.float32), axes="czyx")
    with pytest.raises(ValueError, match=r"c.zarr.* holds a 4D array of shape \(2, 3, 4, 5\) but a 3D volume \(zyx\)"):
        open_volume("c.zarr", ndim=3)


@pytest.mark.parametrize("bad", [(1, 2), (1, 0, 2), (1, -3, 2), "a,b,c", (1, float("nan"), 1), "4,4,4,4"])
def test_bad_voxel_size(bad):
    with pytest.raises(ValueError, match="voxel_size must be 3"):
        parse_voxel_size(bad)
    with pytest.raises(ValueError, match="voxel_size"):
        write_volume("v.zarr", np.zeros((2, 2, 2), np.uint8), voxel_size=bad)
    assert not os.path.exists("v.zarr")


def test_not_an_hdf5_file():
    open("fake.h5", "wb").write(b"not hdf5")
    with pytest.raises(ValueError, match="fake.h5: not a readable HDF5 file"):
        open_volume("fake.h5:raw")


def test_bad_format_name():
    with pytest.raises(ValueError, match=r"format must be one of \['hdf5'"):
        write_volume("x.out", np.zeros((2, 2, 2)), format="hdf6")


def test_failed_write_leaves_nothing():
    class Exploding:
        shape, dtype, chunks = (8, 16, 16), np.dtype(np.uint8), None

        def __getitem__(self, key):
            if key[0].start >= 4:
                raise RuntimeError("disk on fire")
            return np.ones([s.stop - s.start for s in key], np.uint8)

    for path in ("out.zarr", "out.tif", "out.h5:raw", "out.n5:raw", "out.nii.gz", "out.mrc"):
        with pytest.raises(RuntimeError, match="disk on fire"):
            write_volume(path, Exploding(), chunks=(2, 16, 16), max_block_bytes=512)
        assert not os.listdir("."), f"{path} left {os.listdir('.')}"
    # into an existing container: the other datasets survive, the failed key is absent
    write_volume("keep.h5:raw", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(RuntimeError):
        write_volume("keep.h5:labels", Exploding(), chunks=(2, 16, 16), max_block_bytes=512)
    from emseg.io import list_datasets

    assert list_datasets("keep.h5") == ["raw"]


def test_failed_overwrite_keeps_the_old_data():
    class Exploding:
        shape, dtype, chunks = (4, 8, 8), np.dtype(np.uint8), None

        def __getitem__(self, key):
            raise RuntimeError("disk on fire")

    old = np.full((4, 8, 8), 7, np.uint8)
    for path in ("keep.h5:raw", "keep.zarr:raw", "keep.n5:raw", "keep.tif"):
        write_volume(path, old)
        with pytest.raises(RuntimeError):
            write_volume(path, Exploding(), overwrite=True)
        from emseg.io import read_volume

        np.testing.assert_array_equal(read_volume(path), old)
