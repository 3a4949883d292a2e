"""Bad input: each error names the file or argument, what was found and what is expected."""

import os

import numpy as np
import pytest

from emseg.config import ExecutionConfig
from emseg.io import KeyNotFoundError, StorageConfig, open_volume, parse_voxel_size, write_volume


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
    with pytest.raises(ValueError, match=r"trunc.tif: TIFF file is cut short: page 2's image data ends at byte \d+ "
                                         r"but the file has \d+ bytes: 2 of its 6 pages are complete"):
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
    with pytest.raises(ValueError, match="fake.h5: not an HDF5 file"):
        open_volume("fake.h5:raw")


def test_bad_format_name():
    with pytest.raises(ValueError, match=r"format must be one of \['hdf5'"):
        write_volume("x.out", np.zeros((2, 2, 2)), storage=StorageConfig(format="hdf6"))


TINY_BLOCKS = ExecutionConfig(max_block_mb=512 / 2**20)  # 512-byte blocks: many of them


def test_failed_write_leaves_nothing():
    class Exploding:
        shape, dtype, chunks = (8, 16, 16), np.dtype(np.uint8), None

        def __getitem__(self, key):
            if key[0].start >= 4:
                raise RuntimeError("disk on fire")
            return np.ones([s.stop - s.start for s in key], np.uint8)

    for path in ("out.zarr", "out.tif", "out.h5:raw", "out.n5:raw", "out.nii.gz", "out.mrc"):
        with pytest.raises(RuntimeError, match="disk on fire"):
            write_volume(path, Exploding(), chunks=(2, 16, 16), execution=TINY_BLOCKS)
        assert not os.listdir("."), f"{path} left {os.listdir('.')}"
    # into an existing container: the other datasets survive, the failed key is absent
    write_volume("keep.h5:raw", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(RuntimeError):
        write_volume("keep.h5:labels", Exploding(), chunks=(2, 16, 16), execution=TINY_BLOCKS)
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
            write_volume(path, Exploding(), execution=ExecutionConfig(overwrite=True))
        from emseg.io import read_volume

        np.testing.assert_array_equal(read_volume(path), old)


class _Failing:
    """An array-like whose chunks (4 x 4 x 4) raise ``error`` wherever they overlap z >= 4."""

    shape, dtype, chunks = (8, 8, 8), np.dtype(np.uint8), (4, 4, 4)

    def __init__(self, error):
        self.error = error

    def __getitem__(self, key):
        if key[0].stop > 4:
            raise self.error
        return np.ones([s.stop - s.start for s in key], np.uint8)


def _volume(array, **kwargs):
    from emseg.io import Volume, VolumeMeta

    return Volume(array, VolumeMeta("zyx"), path="v.zarr", key="raw", format="zarr", **kwargs)


def test_read_error_names_the_first_failing_chunk():
    from emseg.io.volume import VolumeReadError

    vol = _volume(_Failing(EOFError("stream ended")),
                  chunk_location=lambda index: "in file v.zarr/raw/" + "/".join(map(str, index)))
    with pytest.raises(VolumeReadError) as caught:
        vol[...]
    assert str(caught.value) == ("v.zarr:raw: cannot read chunk (1, 0, 0) at voxels [4:8, 0:4, 0:4] in file "
                                 "v.zarr/raw/1/0/0: EOFError: stream ended; the data on disk is damaged (truncated "
                                 "or corrupt): restore it from a copy or write it again")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, OSError)
    assert isinstance(caught.value.__cause__, EOFError)
    np.testing.assert_array_equal(vol[:4], 1)  # the good chunks still read


def test_read_errors_say_what_to_do():
    with pytest.raises(ValueError, match=r"chunk \(1, 1, 0\).*PermissionError: .*; check the file's permissions"):
        _volume(_Failing(PermissionError(13, "Permission denied")))[5, 5]


def test_interrupts_and_memory_errors_pass_through_unwrapped():
    for error in (KeyboardInterrupt(), MemoryError(), SystemExit(3)):
        with pytest.raises(type(error)) as caught:
            _volume(_Failing(error))[...]
        assert caught.value is error


def test_a_wrapped_error_is_not_wrapped_again():
    inner = _volume(_Failing(OSError("disk on fire")))
    outer = _volume(inner)  # a Volume over a Volume: the inner one names the chunk, the outer one leaves it
    with pytest.raises(ValueError) as caught:
        outer[...]
    assert str(caught.value).count("cannot read") == 1 and "disk on fire" in str(caught.value)


def test_reading_a_closed_volume():
    write_volume("c.h5:raw", np.zeros((2, 3, 4), np.uint8))
    vol = open_volume("c.h5:raw")
    vol.close()
    with pytest.raises(ValueError, match=r"c.h5:raw: the volume was closed; open it again"):
        vol[...]


def test_slice_folders_skip_hidden_and_other_files():
    from PIL import Image

    os.mkdir("stack")
    for i in range(3):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(f"stack/{i}.png")
    open("stack/._1.png", "wb").write(b"\x00\x05\x16\x07 AppleDouble junk")  # macOS on a shared drive
    open("stack/.DS_Store", "wb").write(b"junk")
    open("stack/notes.txt", "w").write("acquired 2024")
    os.mkdir("stack/thumbs.png")  # a folder is not a slice
    assert open_volume("stack")[:, 0, 0].tolist() == [0, 1, 2]


def test_folder_without_slices_says_what_it_holds():
    os.mkdir("odd")
    open("odd/a.bmp", "wb").write(b"BM")
    with pytest.raises(ValueError, match=r"odd: folder holds no image slices .*; it holds 1 other entry such as "
                                         r"'a.bmp'"):
        open_volume("odd")
    os.mkdir("hidden")
    open("hidden/.DS_Store", "wb").write(b"junk")
    with pytest.raises(ValueError, match="it holds only hidden files"):
        open_volume("hidden")
    os.mkdir("empty2")
    with pytest.raises(ValueError, match="it is empty"):
        open_volume("empty2")


def test_slice_that_is_not_an_image_is_named_at_open():
    from PIL import Image

    os.mkdir("stack")
    for i in range(3):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(f"stack/{i}.png")
    open("stack/1.png", "w").write("I am text")
    with pytest.raises(ValueError, match=r"^stack: slice '1.png' is not a readable image \(UnidentifiedImageError"):
        open_volume("stack")


def test_a_pickled_zarr_volume_still_refuses_truncated_chunks():
    """The chunk check travels with the volume (dask pickles the arrays it is given)."""
    import pickle
    import subprocess
    import sys

    data = np.random.default_rng(0).integers(0, 255, (4, 32, 32), dtype=np.uint8)
    write_volume("p.zarr", data, chunks=(2, 32, 32))
    open("vol.pkl", "wb").write(pickle.dumps(open_volume("p.zarr")))
    chunk = open("p.zarr/0/1/0/0", "rb").read()
    open("p.zarr/0/1/0/0", "wb").write(chunk[: len(chunk) // 2])
    code = "import pickle; vol = pickle.load(open('vol.pkl', 'rb')); vol[:2]; vol[...]"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "VolumeReadError: p.zarr:0: cannot read chunk (1, 0, 0)" in proc.stderr
    assert "Blosc chunk is truncated" in proc.stderr


def test_slice_folder_warns_about_a_missing_number_and_keeps_broken_links(caplog):
    from PIL import Image

    os.mkdir("stack")
    for i in (1, 2, 4, 5):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(f"stack/s{i:03d}.png")
    with caplog.at_level("WARNING", logger="emseg.io.images"):
        assert open_volume("stack")[:, 0, 0].tolist() == [1, 2, 4, 5]
    assert "slice numbers jump from 2 to 4 at 's004.png': 1 section(s) may be missing" in caplog.text
    os.symlink("gone.png", "stack/s006.png")  # a dangling link is a slice that cannot be read, not no slice
    with pytest.raises(ValueError, match=r"^stack: slice 's006.png' is not a readable image \(FileNotFoundError"):
        open_volume("stack")
