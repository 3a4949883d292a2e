"""region_table against scikit-image (regionprops_table, marching_cubes + mesh_surface_area), in memory and
blockwise on blocks that do not divide the shape, on hand-built, random and real label volumes."""

import numpy as np
import pytest
from conftest import shared_data
from scipy import ndimage

from emseg.measure import region_table

PROPS = ("label", "area", "centroid", "bbox", "axis_major_length", "axis_minor_length")
SAME = {"centroid_z_nm": "centroid-0", "centroid_y_nm": "centroid-1", "centroid_x_nm": "centroid-2",
        "bbox_z0": "bbox-0", "bbox_y0": "bbox-1", "bbox_x0": "bbox-2", "bbox_z1": "bbox-3", "bbox_y1": "bbox-4",
        "bbox_x1": "bbox-5", "axis_major_nm": "axis_major_length", "axis_minor_nm": "axis_minor_length"}


def skimage_table(labels, raw, voxel_size):
    """The reference: regionprops_table with spacing, and each object's padded marching-cubes mesh area."""
    from skimage.measure import marching_cubes, mesh_surface_area, regionprops_table

    props = PROPS + (("intensity_mean", "intensity_min", "intensity_max") if raw is not None else ())
    ref = regionprops_table(labels, raw, spacing=voxel_size, properties=props)
    areas = []
    for box, i in zip(ndimage.find_objects(labels), range(1, int(labels.max()) + 1)):
        if box is None:
            continue
        mask = np.pad(labels[box] == i, 1).astype(np.float32)
        verts, faces, _, _ = marching_cubes(mask, 0.5, spacing=voxel_size)
        areas.append(mesh_surface_area(verts, faces))
    ref["surface"] = np.array(areas)
    return ref


def assert_matches(t, ref, voxel_size, raw=True):
    np.testing.assert_array_equal(t["id"], ref["label"])
    np.testing.assert_allclose(t["volume_nm3"], ref["area"], rtol=1e-12)  # skimage's area is scaled by spacing
    np.testing.assert_array_equal(t["voxels"], np.round(ref["area"] / np.prod(voxel_size)))
    for ours, theirs in SAME.items():
        np.testing.assert_allclose(t[ours], ref[theirs], rtol=1e-9, atol=1e-6, err_msg=ours)
    np.testing.assert_allclose(t["surface_nm2"], ref["surface"], rtol=1e-9)
    if raw:
        for k in ("intensity_mean", "intensity_min", "intensity_max"):
            np.testing.assert_allclose(t[k], ref[k], rtol=1e-12, err_msg=k)


def assert_same_tables(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].astype(float), b[k].astype(float), rtol=1e-9, atol=1e-9, err_msg=k)


def blobs(shape, seed, sigma=2.0):
    rng = np.random.default_rng(seed)
    return ndimage.label(ndimage.gaussian_filter(rng.random(shape), sigma) > 0.5)[0].astype(np.uint32)


def test_box_golden():
    """A 2 x 3 x 4 box at (1, 2, 3) in a 5 x 6 x 8 volume of 10 x 4 x 4 nm voxels."""
    lab = np.zeros((5, 6, 8), np.uint8)
    lab[1:3, 2:5, 3:7] = 9
    t = region_table(lab, voxel_size=(10.0, 4.0, 4.0), offset=(100.0, 0.0, 0.0))
    assert t["id"].tolist() == [9] and t["voxels"].tolist() == [24]
    assert t["volume_nm3"][0] == 24 * 160.0
    assert (t["centroid_z_nm"][0], t["centroid_y_nm"][0], t["centroid_x_nm"][0]) == (115.0, 12.0, 18.0)
    assert [t[f"bbox_{a}{e}"][0] for e in "01" for a in "zyx"] == [1, 2, 3, 3, 5, 7]
    assert (t["bbox_min_z_nm"][0], t["bbox_max_z_nm"][0], t["bbox_max_x_nm"][0]) == (110.0, 130.0, 28.0)
    # variance of n equally spaced centres, step s: s^2 (n^2 - 1) / 12; axes sqrt(20 var), sorted
    var = sorted([100 * 3 / 12, 16 * 8 / 12, 16 * 15 / 12], reverse=True)
    np.testing.assert_allclose([t["axis_major_nm"][0], t["axis_middle_nm"][0], t["axis_minor_nm"][0]],
                               np.sqrt(20 * np.array(var)))
    assert not t["touches_border"][0]
    lab[0, 0, 0] = 2
    assert region_table(lab)["touches_border"].tolist() == [True, False]


def test_random_blobs_against_skimage_in_memory_and_blockwise():
    lab = blobs((21, 30, 37), 0)
    raw = np.random.default_rng(1).integers(0, 65535, lab.shape).astype(np.uint16)
    vs = (30.0, 4.0, 5.0)
    ref = skimage_table(lab, raw, vs)
    t = region_table(lab, raw, voxel_size=vs)
    assert_matches(t, ref, vs)
    assert_same_tables(t, region_table(lab, raw, voxel_size=vs, block_shape=(8, 11, 13), workers=2))
    assert_same_tables(t, region_table(lab, raw, voxel_size=vs, block_shape=(1, 7, 37), workers=1))


def test_shapes_and_sphericity():
    zz, yy, xx = np.mgrid[:41, :41, :41]
    ball = (((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2) <= 18 ** 2).astype(np.uint8)
    t = region_table(ball)
    assert 0.88 < t["sphericity"][0] < 0.96  # a binary mask's mesh is facetted: about 8% more area than a sphere
    assert abs(t["elongation"][0] - 1) < 1e-6 and abs(t["flatness"][0] - 1) < 1e-6
    rod = np.zeros((5, 5, 40), np.uint8)
    rod[1:4, 1:4, 1:39] = 1
    r = region_table(rod)
    assert r["elongation"][0] > 10 and abs(r["flatness"][0] - 1) < 1e-9 and r["sphericity"][0] < 0.6
    sheet = np.zeros((1, 9, 9), np.uint8)
    sheet[0, 1:8, 1:8] = 1
    assert np.isinf(region_table(sheet)["flatness"][0])  # one section thick: no third axis


def test_2d_image_is_one_section():
    lab = blobs((40, 50), 3, sigma=1.5)
    t = region_table(lab, voxel_size=(4.0, 5.0))
    t3 = region_table(lab[None], voxel_size=(1.0, 4.0, 5.0))
    border = t.pop("touches_border")
    assert_same_tables(t, {k: v for k, v in t3.items() if k != "touches_border"})
    on_edge = (t["bbox_y0"] == 0) | (t["bbox_x0"] == 0) | (t["bbox_y1"] == 40) | (t["bbox_x1"] == 50)
    np.testing.assert_array_equal(border, on_edge)  # an image's objects touch its edges, not its one section's faces
    assert t3["touches_border"].all() and not border.all()


def test_moments_of_a_large_object_do_not_overflow():
    from emseg.measure import block_partial

    n = 2048
    p = block_partial(np.ones((1, n, n), np.uint8), None, (slice(0, 1), slice(0, n), slice(0, n)), (0, 0, 0),
                      ((1, 1),) * 3, (1, 1, 1))
    var = (n * n - 1) / 12  # of n equally spaced positions
    np.testing.assert_allclose(p["m2"][0, 1] / n**2, var, rtol=1e-9)  # yy
    assert abs(p["m2"][0, 5]) < 1e-3 * n**2  # yx: no covariance


def test_real_urocell_mitochondria_against_skimage(shared_data):
    data = shared_data
    import nibabel

    path = sorted((data / "urocell_labels" / "mito" / "instance").glob("*.nii.gz"))[0]
    lab = np.asarray(nibabel.load(str(path)).dataobj)[:96, :96, :96].astype(np.uint32)
    lab = ndimage.label(lab > 0)[0].astype(np.uint32) if lab.max() <= 1 else lab
    assert len(np.unique(lab)) > 3, f"{path}: the crop should hold several mitochondria"
    vs = (15.0, 16.0, 16.0)
    t = region_table(lab, voxel_size=vs)
    assert_matches(t, skimage_table(lab, None, vs), vs, raw=False)
    assert_same_tables(t, region_table(lab, voxel_size=vs, block_shape=(40, 33, 50)))


def test_real_flyem_neurons_against_skimage(shared_data):
    data = shared_data
    import h5py

    with h5py.File(data / "flyem_medulla" / "sample2_z000-149.h5", "r") as f:
        lab = f["volumes/labels/neuron_ids"][:40, :128, :128]
        raw = f["volumes/raw"][:40, :128, :128]
    import fastremap

    lab = fastremap.renumber(lab, in_place=False)[0].astype(np.uint32)  # skimage's label table wants small ids
    vs = (10.0, 10.0, 10.0)
    t = region_table(lab, raw, voxel_size=vs)
    assert len(t["id"]) > 20
    assert_matches(t, skimage_table(lab, raw, vs), vs)
    assert_same_tables(t, region_table(lab, raw, voxel_size=vs, block_shape=(13, 50, 37), workers=2))


@pytest.mark.parametrize("labels, raw, match", [
    (np.zeros((4, 4, 4), np.float32), None, "integer ids.*float32"),
    (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5)), r"raw has shape \(4, 4, 5\).*\(4, 4, 4\)"),
    (-np.ones((4, 4, 4), np.int16), None, "non-negative.*-1"),
    (np.zeros((2, 4, 4, 4), np.uint8), None, "shape"),
])
def test_bad_input(labels, raw, match):
    with pytest.raises(ValueError, match=match):
        region_table(labels, raw)


def test_bad_voxel_size():
    with pytest.raises(ValueError, match="voxel_size must have 3"):
        region_table(np.ones((2, 2, 2), np.uint8), voxel_size=(1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        region_table(np.ones((2, 2, 2), np.uint8), voxel_size=(1.0, 0.0, 1.0))
