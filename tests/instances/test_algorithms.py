"""In-memory instance algorithms: hand-built cases with known answers, and agreement with cc3d/scipy."""

import numpy as np
import pytest
from conftest import same_partition
from scipy import ndimage as ndi

from emseg.instances import (agglomerate, bc_watershed, bcd_watershed, boundary_watershed, connected_components,
                             fill_holes, remove_small_objects, segment, z_filter)
from emseg.train.targets import bc_target, bcd_target


def two_touching_spheres(shape=(24, 40, 56), r=9):
    z, y, x = np.indices(shape)
    c1, c2 = (12, 20, 18), (12, 20, 18 + 2 * r - 2)  # centres closer than 2r: the spheres touch
    d1 = sum((a - c) ** 2 for a, c in zip((z, y, x), c1))
    d2 = sum((a - c) ** 2 for a, c in zip((z, y, x), c2))
    labels = np.zeros(shape, np.uint8)
    labels[d1 <= r * r] = 1
    labels[(d2 <= r * r) & (d2 < d1)] = 2
    return labels


@pytest.mark.parametrize("conn", [6, 18, 26])
def test_connected_components_equal_scipy_3d(rng, conn):
    prob = ndi.gaussian_filter(rng.random((20, 30, 40)), 1.2)
    prob = (prob - prob.min()) / np.ptp(prob)
    structure = ndi.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[conn])
    ref, n = ndi.label(prob > 0.5, structure)
    got = connected_components(prob, 0.5, connectivity=conn)
    assert got.max() == n and same_partition(ref, got)


@pytest.mark.parametrize("conn", [4, 8])
def test_connected_components_2d_and_dtype(rng, conn):
    prob = rng.random((64, 64))
    ref, n = ndi.label(prob > 0.5, ndi.generate_binary_structure(2, {4: 1, 8: 2}[conn]))
    got = connected_components(prob, connectivity=conn)
    assert same_partition(ref, got) and got.dtype == (np.uint8 if n < 256 else np.uint16)


def test_connected_components_errors():
    with pytest.raises(ValueError, match="connectivity 8 is not valid in 3D; use one of"):
        connected_components(np.zeros((3, 3, 3)), connectivity=8)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]; found values in \[-2, 3\]"):
        connected_components(np.array([[-2.0, 3.0]]))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        connected_components(np.array([[np.nan, 0.5]]))


def test_size_filter_and_holes():
    labels = np.array([1, 1, 0, 2, 3, 3, 3])
    np.testing.assert_array_equal(remove_small_objects(labels, 3), [0, 0, 0, 0, 1, 1, 1])
    cube = np.zeros((7, 7, 7), np.uint8)
    cube[1:6, 1:6, 1:6] = 4
    cube[3, 3, 3] = 0
    filled = fill_holes(cube)
    assert filled[3, 3, 3] == 4 and filled[0, 0, 0] == 0
    two = np.zeros((5, 9), np.uint8)  # a gap bordered by two objects is not a hole
    two[1:4, 1:4], two[1:4, 5:8] = 1, 2
    two[2, 4] = 0
    assert fill_holes(two)[2, 4] == 0


def test_z_filter_removes_one_section_false_positive():
    prob = np.zeros((12, 20, 20), np.float32)
    prob[2:10, 4:10, 4:10] = 0.9  # a real object over 8 sections
    prob[5, 14:18, 14:18] = 0.9  # a blip in one section
    assert connected_components(prob).max() == 2
    filtered = z_filter(prob, 3)
    labels = connected_components(filtered)
    assert labels.max() == 1 and labels[5, 6, 6] == 1 and labels[5, 15, 15] == 0
    assert (labels > 0).sum() == 8 * 36  # the real object keeps its extent
    with pytest.raises(ValueError, match="odd"):
        z_filter(prob, 2)


def test_bc_and_bcd_separate_two_touching_spheres():
    gt = two_touching_spheres()
    assert connected_components(gt > 0).max() == 1  # they touch: components alone merge them
    bc = bc_target(gt).target
    got = bc_watershed(bc[0], bc[1], min_seed_size=4)
    assert got.max() == 2 and same_partition(gt, got)
    bcd = bcd_target(gt).target
    got = bcd_watershed(bcd[0], bcd[1], bcd[2], min_seed_size=4)
    assert got.max() == 2
    # the border between them may shift by a voxel; each sphere keeps almost all of its voxels
    for k in (1, 2):
        ids, counts = np.unique(got[gt == k], return_counts=True)
        assert counts.max() >= 0.97 * (gt == k).sum() and ids[counts.argmax()] != 0


def test_boundary_watershed_cells_of_a_membrane_grid():
    b = np.zeros((60, 60), np.float32)
    b[::20, :] = b[:, ::20] = 1.0  # 9 cells (plus the cut ones at the border)
    b = ndi.gaussian_filter(b, 1.0)
    b /= b.max()
    seg = boundary_watershed(b, threshold=0.3)
    assert seg.max() == 9
    for cy in (10, 30, 50):
        assert len({int(seg[cy, cx]) for cx in (5, 10, 15)}) == 1
    per_section = boundary_watershed(np.stack([b, b]), threshold=0.3, per_section=True)
    assert per_section.max() == 18 and not set(np.unique(per_section[0])[1:]) & set(np.unique(per_section[1]))


def test_agglomerate_merges_by_mean_affinity():
    affs = np.full((3, 4, 12, 12), 0.9, np.float32)
    affs[2, :, :, 6] = 0.3  # weak boundary between x 5 and 6 (x-affinity of voxel 6 to 5)
    two = agglomerate(affs, threshold=0.5)
    assert two.max() == 2 and two[0, 0, 0] != two[0, 0, 11]
    one = agglomerate(affs, threshold=0.2)
    assert one.max() == 1
    with pytest.raises(ValueError, match="have 3 channels but 2 offsets"):
        agglomerate(affs, [[-1, 0, 0], [0, -1, 0]])
    with pytest.raises(ValueError, match="nearest-neighbour offsets"):
        agglomerate(affs, [[-1, 0, 0], [0, -1, 0], [0, 0, -2]])


def test_segment_dispatch_and_parameters():
    p = np.zeros((1, 6, 6), np.float32)
    p[0, :2, :2] = p[0, 4:, 4:] = 0.9
    assert segment(p, "cc").max() == 2
    assert segment(p, "cc", min_size=5).max() == 0
    with pytest.raises(ValueError, match="unknown method 'foo'; choose one of cc, watershed"):
        segment(p, "foo")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['sigma'\] for method 'cc'"):
        segment(p, "cc", {"sigma": 1})
    with pytest.raises(ValueError, match="pass their offsets"):
        segment(np.zeros((3, 4, 4, 4), np.float32), "agglomerate")
