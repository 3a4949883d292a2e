"""The real files in ../shared/data open lazily with the right shape, dtype and voxel size, and
``emseg info`` / ``emseg convert`` work on every one of them (skipped when the folder is absent)."""

import json

import numpy as np
import pytest

from emseg.cli import main
from emseg.io import open_volume, read_volume

# path (relative to shared/data), shape, dtype, voxel size the file itself carries (None: not stored)
REAL = [
    ("isbi2012/train-volume.tif", (30, 512, 512), "uint8", (50.0, 4.0, 4.0)),
    ("isbi2012/train-labels.tif", (30, 512, 512), "uint8", (50.0, 4.0, 4.0)),
    ("isbi2012/test-volume.tif", (30, 512, 512), "uint8", (50.0, 4.0, 4.0)),
    ("lucchi/training.tif", (165, 768, 1024), "uint8", (5.0, 5.0, 5.0)),
    ("lucchi/training_groundtruth.tif", (165, 768, 1024), "uint8", (5.0, 5.0, 5.0)),
    ("cdeep3m_mito/training/images", (20, 1024, 1024), "uint8", None),
    ("cdeep3m_mito/training/labels", (20, 1024, 1024), "uint8", None),
    ("cdeep3m_mito/validation/images", (10, 1024, 1024), "uint8", None),
    ("flyem_medulla/sample2_z000-149.h5:volumes/raw", (150, 250, 250), "uint8", (10.0, 10.0, 10.0)),
    ("flyem_medulla/sample2_z000-149.h5:volumes/labels/neuron_ids", (150, 250, 250), "uint64", (10.0, 10.0, 10.0)),
    ("gala_flyem/train-image.h5:stack", (50, 100, 200), "uint8", None),
    ("gala_flyem/train-gt.lzf.h5:stack", (50, 100, 200), "int32", None),
    ("gala_flyem/test-gt.lzf.h5", (50, 100, 200), "int32", None),  # one dataset: no key needed
]


@pytest.mark.parametrize("rel,shape,dtype,voxel_size", REAL, ids=[r[0] for r in REAL])
def test_open_real(shared_data, rel, shape, dtype, voxel_size):
    with open_volume(f"{shared_data}/{rel}") as vol:
        assert vol.shape == shape and vol.dtype == np.dtype(dtype) and vol.axes == "zyx"
        assert vol.voxel_size == voxel_size
        z = shape[0] // 2
        block = vol[z:z + 2, 10:74, 20:84]
        assert block.shape == (2, 64, 64)
        np.testing.assert_array_equal(block[1], vol[z + 1][10:74, 20:84])  # a lazy crop = crop of a plane


def test_real_tiff_reads_match_tifffile(shared_data):
    import tifffile

    ref = tifffile.imread(shared_data / "isbi2012/train-labels.tif")
    with open_volume(shared_data / "isbi2012/train-labels.tif") as vol:
        np.testing.assert_array_equal(vol[...], ref)
        np.testing.assert_array_equal(vol[7, 100:300, 13:400], ref[7, 100:300, 13:400])
    assert set(np.unique(ref)) == {0, 255}


def test_real_png_folder_matches_pillow(shared_data):
    from PIL import Image

    folder = shared_data / "cdeep3m_mito/training/labels"
    names = sorted(p.name for p in folder.glob("*.png"))
    with open_volume(folder) as vol:
        assert vol.format == "image-folder"
        np.testing.assert_array_equal(vol[3], np.asarray(Image.open(folder / names[3])))
    assert set(np.unique(vol[3])) <= {0, 1}


def test_urocell_nifti(shared_data):
    import nibabel as nib

    files = sorted((shared_data / "urocell_labels").rglob("*.nii.gz"))
    assert files
    for f in files:
        with open_volume(f) as vol:
            assert vol.shape == (256, 256, 256) and vol.axes == "zyx"
            # the headers hold 1 mm placeholders: reported as unknown rather than as 1e6 nm
            assert vol.voxel_size is None
            ref = np.asarray(nib.load(str(f)).dataobj)
            np.testing.assert_array_equal(vol[100:110, 50:60, 200:210], ref[200:210, 50:60, 100:110].transpose())
    inst = read_volume(next(f for f in files if "instance" in str(f)))
    assert len(np.unique(inst)) > 2


REAL_INFO = [r[0] for r in REAL] + ["urocell_labels/mito/instance/fib1-0-0-0.nii.gz",
                                    "empanada_tiles/instance/dataset1/images/ins_seg.tiff"]


@pytest.mark.parametrize("rel", REAL_INFO)
def test_cli_info_and_convert_real(shared_data, rel, capsys, tmp_path):
    src = f"{shared_data}/{rel}"
    assert main(["info", src, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sample"]["max"] >= info["sample"]["min"]
    with open_volume(src) as vol:
        roi = tuple(slice(0, min(n, 24)) for n in vol.shape)  # a crop keeps the suite fast
        crop_path = tmp_path / "crop.h5"
        from emseg.io import write_volume

        write_volume(f"{crop_path}:crop", vol[roi], voxel_size=vol.voxel_size)
        expected, vs = vol[roi], vol.voxel_size
    out = tmp_path / "crop.zarr"
    assert main(["convert", f"{crop_path}:crop", str(out), "--no-progress"]) == 0
    with open_volume(out) as back:
        np.testing.assert_array_equal(back[...], expected)
        assert back.voxel_size == vs
    assert main(["info", str(out)]) == 0


def test_convert_whole_real_volume(shared_data, tmp_path):
    from emseg.config import ExecutionConfig
    from emseg.io import convert_volume

    src = shared_data / "flyem_medulla/sample2_z000-149.h5:volumes/labels/neuron_ids"
    convert_volume(src, tmp_path / "ids.n5:neuron_ids", chunks=(32, 64, 64),
                   execution=ExecutionConfig(max_block_mb=1))
    np.testing.assert_array_equal(read_volume(tmp_path / "ids.n5:neuron_ids"), read_volume(src))
    with open_volume(tmp_path / "ids.n5:neuron_ids") as vol:
        assert vol.voxel_size == (10.0, 10.0, 10.0) and vol.chunks == (32, 64, 64)
