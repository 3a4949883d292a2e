"""Dataset keys that could leave their container, the real path of a key, partial-output names, sniffing."""

import os

import numpy as np
import pytest

from emseg.config import ExecutionConfig
from emseg.io import create_volume, open_volume, write_volume
from emseg.io.paths import check_key, inside_container, sniff_format, split_key, suffix_hint

BAD_KEYS = ["../victim", "..", ".", "raw/../../victim", "./raw", "a//b", "/victim", "a\\b", "raw/\0"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused_for_reading_and_writing(key):
    os.mkdir("victim")
    open("victim/keep.txt", "w").write("precious")
    write_volume("out.zarr:raw", np.ones((2, 3, 4), np.uint8))
    write_volume("out.h5:raw", np.ones((2, 3, 4), np.uint8))
    rule = "keys are relative names inside the container without '.' or '..' parts"
    for container in ("out.zarr", "out.n5", "out.h5"):
        if key == "/victim" and container == "out.h5":
            continue  # in HDF5 a leading / is the file's root group: "/victim" is the dataset "victim"
        message = f"{container}: dataset key {key!r} is not allowed: {rule}"
        for call in (lambda: split_key(f"{container}:{key}") if ":" not in key else split_key(container, key),
                     lambda: split_key(container, key),
                     lambda: open_volume(container, key),
                     lambda: write_volume(f"{container}:{key}", np.zeros((2, 2, 2), np.uint8),
                                          execution=ExecutionConfig(overwrite=True)),
                     lambda: create_volume(container, (2, 2, 2), "uint8", key=key, overwrite=True)):
            with pytest.raises(ValueError) as caught:
                call()
            assert str(caught.value).startswith(message), str(caught.value)
    assert open("victim/keep.txt").read() == "precious" and os.listdir("victim") == ["keep.txt"]
    np.testing.assert_array_equal(open_volume("out.zarr:raw")[...], 1)


def test_the_exact_message():
    with pytest.raises(ValueError) as caught:
        split_key("out.zarr:../victim")
    assert str(caught.value) == ("out.zarr: dataset key '../victim' is not allowed: keys are relative names inside "
                                 "the container without '.' or '..' parts")


def test_good_keys_pass_unchanged():
    assert split_key("a.zarr:volumes/raw/") == ("a.zarr", "volumes/raw")
    assert split_key("a.h5:/volumes/raw") == ("a.h5", "volumes/raw")  # h5py's absolute form
    assert split_key("a.h5", "/") == ("a.h5", None)
    assert split_key("a.n5", "") == ("a.n5", None)
    assert check_key("a.zarr", "raw/.labels.emseg-partial") == "raw/.labels.emseg-partial"  # hidden names are fine
    with pytest.raises(TypeError, match="dataset key must be a str"):
        check_key("a.zarr", 3)


def test_inside_container(tmp_path):
    root = tmp_path / "out.zarr"
    (root / "raw").mkdir(parents=True)
    (tmp_path / "victim").mkdir()
    assert inside_container(root, "raw") == os.path.join(os.path.realpath(root), "raw")
    assert inside_container(root, "raw/not/yet/there") == os.path.join(os.path.realpath(root), "raw", "not", "yet",
                                                                        "there")
    os.symlink(tmp_path / "victim", root / "escape")
    with pytest.raises(ValueError, match=r"out\.zarr: dataset key 'escape' resolves to .*victim, which is outside "
                                         r"the container .*out\.zarr; refusing to touch it"):
        inside_container(root, "escape")
    with pytest.raises(ValueError, match="outside the container"):
        inside_container(root, "escape/inner")
    os.symlink(root, root / "loop")
    with pytest.raises(ValueError, match="outside the container"):  # the container itself is not inside it
        inside_container(root, "loop")
    with pytest.raises(ValueError, match="is not allowed"):
        inside_container(root, "../victim")
    with pytest.raises(ValueError, match="name a dataset key"):
        inside_container(root, None)
    # a container reached through a symlinked folder: its real path is what counts
    os.symlink(tmp_path, tmp_path / "alias")
    assert inside_container(tmp_path / "alias" / "out.zarr", "raw") == os.path.join(os.path.realpath(root), "raw")


def test_partial_location_and_incomplete_hint(tmp_path):
    from emseg.io.output import incomplete_hint, partial_location

    assert partial_location("pred.zarr") == str(tmp_path / ".emseg-partial-pred.zarr")
    assert partial_location("cells.h5", "volumes/labels") == str(tmp_path / ".emseg-partial-volumes%2Flabels@cells.h5")
    assert incomplete_hint("pred.zarr") == ""
    os.mkdir(partial_location("pred.zarr"))
    hint = incomplete_hint("pred.zarr")
    assert ".emseg-partial-pred.zarr: rerun the same command to resume" in hint
    with pytest.raises(FileNotFoundError, match="incomplete output of an interrupted run"):
        open_volume("pred.zarr")
    write_volume("cells.zarr:raw", np.zeros((2, 4, 4), np.uint8))
    os.mkdir(partial_location("cells.zarr", "seg"))
    with pytest.raises(KeyError, match="incomplete output of an interrupted run"):
        open_volume("cells.zarr:seg")


def test_sniff_format_and_suffix_hint():
    import tifffile
    from PIL import Image

    data = np.zeros((8, 8), np.uint8)
    tifffile.imwrite("a.tif", data)
    Image.fromarray(data).save("a.png")
    Image.fromarray(data).save("a.jpg")
    write_volume("a.h5:raw", data[None])
    write_volume("a.mrc", data[None])
    write_volume("a.nii", data[None])
    write_volume("a.nii.gz", data[None])
    kinds = {p: sniff_format(p) for p in ("a.tif", "a.png", "a.jpg", "a.h5", "a.mrc", "a.nii", "a.nii.gz")}
    assert kinds == {"a.tif": "tiff", "a.png": "png", "a.jpg": "jpeg", "a.h5": "hdf5", "a.mrc": "mrc",
                     "a.nii": "nifti", "a.nii.gz": "gzip"}
    assert sniff_format("nowhere") is None and sniff_format(".") is None
    assert suffix_hint("a.tif", "tiff") == "" and suffix_hint("a.nii.gz", "nifti") == ""
    assert suffix_hint("a.png", "tiff") == "; its content is a PNG image, not tiff: rename it to end in .png"
    open("e.tif", "wb").close()
    assert suffix_hint("e.tif", "tiff") == "; the file is empty (0 bytes)"
