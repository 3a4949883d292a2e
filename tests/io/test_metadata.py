"""Voxel size and axes as other tools write them: Fiji/ImageJ, OME-TIFF, ilastik, CREMI, BigDataViewer,
funkelab N5, plain Zarr arrays, MRC headers; and placeholders reported as unknown."""

import json

import numpy as np
import pytest

from emseg.io import VolumeMeta, open_volume, write_volume
from emseg.io.meta import plausible_voxel_size


def test_imagej_tiff_in_microns():
    import tifffile

    tifffile.imwrite("fiji.tif", np.zeros((4, 8, 8), np.uint8), imagej=True, resolution=(1 / 0.004, 1 / 0.005),
                     metadata={"axes": "ZYX", "spacing": 0.05, "unit": "micron"})
    assert open_volume("fiji.tif").voxel_size == (50.0, 5.0, 4.0)


def test_imagej_tiff_we_write_has_fiji_calibration():
    import tifffile

    write_volume("ours.tif", np.zeros((4, 8, 8), np.uint8), voxel_size=(30, 6, 5))
    with tifffile.TiffFile("ours.tif") as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata["spacing"] == 30 and tif.imagej_metadata["unit"] == "nm"
        assert tif.imagej_metadata["slices"] == 4  # a z-stack, not 4 channels
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(5)


def test_ome_tiff_physical_size():
    import tifffile

    tifffile.imwrite("x.ome.tif", np.zeros((3, 8, 8), np.uint16), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.004, "PhysicalSizeXUnit": "µm",
                               "PhysicalSizeY": 0.004, "PhysicalSizeYUnit": "µm",
                               "PhysicalSizeZ": 40, "PhysicalSizeZUnit": "nm"})
    assert open_volume("x.ome.tif").voxel_size == (40.0, 4.0, 4.0)


def test_tiff_dpi_is_not_a_voxel_size():
    import tifffile

    tifffile.imwrite("scan.tif", np.zeros((8, 8), np.uint8), resolution=(72, 72), resolutionunit="INCH")
    assert open_volume("scan.tif").voxel_size is None  # 1/72 inch per pixel is print metadata, not EM


def test_hdf5_conventions():
    import h5py

    with h5py.File("m.h5", "w") as f:
        f["cremi"] = np.zeros((2, 3, 4), np.uint8)
        f["cremi"].attrs["resolution"] = [40, 4, 4]
        f["ilastik"] = np.zeros((2, 3, 4), np.uint8)
        f["ilastik"].attrs["element_size_um"] = [0.04, 0.004, 0.004]
        f["none"] = np.zeros((2, 3, 4), np.uint8)
    assert open_volume("m.h5:cremi").voxel_size == (40.0, 4.0, 4.0)
    assert open_volume("m.h5:ilastik").voxel_size == (40.0, 4.0, 4.0)
    assert open_volume("m.h5:none").voxel_size is None


def test_n5_bigdataviewer_and_funkelab_conventions():
    from emseg.io.n5 import create_n5

    create_n5("m.n5", "bdv", (2, 3, 4), "uint8", (2, 3, 4),
              attrs={"pixelResolution": {"dimensions": [4.0, 5.0, 40.0], "unit": "nm"}})
    create_n5("m.n5", "funke", (2, 3, 4), "uint8", (2, 3, 4), attrs={"resolution": [4, 5, 40], "offset": [8, 10, 80]})
    create_n5("m.n5", "um", (2, 3, 4), "uint8", (2, 3, 4),
              attrs={"pixelResolution": {"dimensions": [0.004, 0.005, 0.04], "unit": "um"}})
    assert open_volume("m.n5:bdv").voxel_size == (40.0, 5.0, 4.0)
    vol = open_volume("m.n5:funke")
    assert vol.voxel_size == (40.0, 5.0, 4.0) and vol.offset == (80.0, 10.0, 8.0)
    assert open_volume("m.n5:um").voxel_size == (40.0, 5.0, 4.0)


def test_n5_we_write_both_conventions():
    write_volume("w.n5:raw", np.zeros((2, 3, 4), np.uint8), voxel_size=(40, 5, 4))
    attrs = json.load(open("w.n5/raw/attributes.json"))
    assert attrs["dimensions"] == [4, 3, 2]
    assert attrs["resolution"] == [4.0, 5.0, 40.0]
    assert attrs["pixelResolution"] == {"dimensions": [4.0, 5.0, 40.0], "unit": "nm"}


def test_plain_zarr_array_with_resolution_attr():
    import zarr

    arr = zarr.open_array("plain.zarr", mode="w", shape=(2, 3, 4), dtype="uint8", zarr_format=2)
    arr.attrs["resolution"] = [40, 4, 4]
    vol = open_volume("plain.zarr")
    assert vol.voxel_size == (40.0, 4.0, 4.0) and vol.key is None


def test_ome_zarr_in_micrometers_with_translation():
    import zarr

    g = zarr.open_group("um.zarr", mode="w", zarr_format=2)
    g.create_array("s0", shape=(4, 8, 8), dtype="uint8", chunks=(2, 4, 4))
    g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": a, "type": "space", "unit": "micrometer"}
                                                          for a in "zyx"],
                               "datasets": [{"path": "s0", "coordinateTransformations": [
                                   {"type": "scale", "scale": [0.03, 0.004, 0.004]},
                                   {"type": "translation", "translation": [0.3, 0.0, 0.008]}]}]}]
    vol = open_volume("um.zarr")
    assert vol.voxel_size == (30.0, 4.0, 4.0) and vol.offset == (300.0, 0.0, 8.0) and vol.key == "s0"


def test_mrc_header_angstrom():
    import mrcfile

    with mrcfile.new("t.mrc") as m:
        m.set_data(np.zeros((3, 4, 5), np.float32))
        m.voxel_size = (13.6, 13.6, 27.2)  # Å, x y z
    assert open_volume("t.mrc").voxel_size == (2.72, 1.36, 1.36)


def test_mrc_zero_voxel_size_is_unknown():
    import mrcfile

    with mrcfile.new("z.mrc") as m:
        m.set_data(np.zeros((3, 4, 5), np.int16))
        m.voxel_size = 0
    assert open_volume("z.mrc").voxel_size is None


def test_nifti_in_mm_is_converted():
    import nibabel as nib

    img = nib.Nifti1Image(np.zeros((5, 4, 3), np.uint8), np.diag([0.000004, 0.000004, 0.00004, 1]))
    img.header.set_xyzt_units("mm")
    nib.save(img, "mm.nii.gz")
    vol = open_volume("mm.nii.gz")
    assert vol.shape == (3, 4, 5) and vol.voxel_size == (40.0, 4.0, 4.0)


def test_voxel_size_float_noise_is_dropped():
    assert plausible_voxel_size(np.float32([0.03, 0.004, 0.004]) * 1000) == (30.0, 4.0, 4.0)
    assert plausible_voxel_size([1e6, 1e6, 1e6]) is None


def test_meta_validates_offset_length():
    with pytest.raises(ValueError, match="offset must be 3 numbers"):
        VolumeMeta("zyx", (1, 1, 1), (0, 0))
    assert VolumeMeta("czyx", (4, 4, 4)).spatial_axes == "zyx"
