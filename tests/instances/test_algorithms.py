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
    with pytest.raises(ValueError, match=r"pred must hold probabilities in \[0, 1\]; found values in \[-2, 3\]"):
        connected_components(np.array([[-2.0, 3.0]]))
    with pytest.raises(ValueError, match=r"pred must hold probabilities in \[0, 1\].*\(1 NaN\)"):
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


def _two_squares(dtype, high):
    m = np.zeros((1, 2, 12, 12), dtype)
    m[0, :, 1:5, 1:5] = m[0, :, 7:11, 7:11] = high
    return m


def test_one_rule_for_uint8_across_the_instance_functions():
    """connected_components takes masks/labels (nonzero); segment() takes probabilities (uint8 = 255 p)."""
    mask01 = _two_squares(np.uint8, 1)
    assert connected_components(mask01[0]).max() == 2  # a 0/1 mask: nonzero is foreground
    with pytest.raises(ValueError, match="pred is a uint8 volume holding only 0 and 1.*store the mask as bool or as "
                                         "0/255"):
        segment(mask01, "cc")  # not 0 objects in silence
    with pytest.raises(ValueError, match="foreground is a uint8 volume holding only 0 and 1"):
        bc_watershed(mask01[0], np.zeros_like(mask01[0]))
    with pytest.raises(ValueError, match=r"threshold=0.5 applies to probability maps, but pred is a uint8 mask"):
        connected_components(mask01[0], 0.5)
    mask255, boolean = _two_squares(np.uint8, 255), _two_squares(bool, True)
    for pred in (mask255, boolean, mask255 / np.float32(255)):
        assert segment(pred, "cc").max() == 2
        assert same_partition(segment(pred, "cc")[0], connected_components(mask255[0, 0] > 0))
    quantised = np.rint(ndi.gaussian_filter(mask255[0].astype(np.float32) / 255, 1) * 255).astype(np.uint8)[None]
    assert np.array_equal(segment(quantised, "watershed", {"sigma": 0}),
                          segment(quantised / np.float32(255), "watershed", {"sigma": 0}))
    with pytest.raises(ValueError, match=r"pred holds integer values \(dtype uint16, e.g. a label volume\)"):
        segment(mask255.astype(np.uint16), "cc")


def test_agglomerate_reads_uint8_affinities_by_the_rule():
    affs = np.full((3, 2, 8, 8), 0.9, np.float32)
    affs[2, :, :, 4] = 0.2
    q = np.rint(affs * 255).astype(np.uint8)
    assert np.array_equal(agglomerate(affs), agglomerate(q))
    with pytest.raises(ValueError, match=r"affinities holds integer values \(dtype int32"):
        agglomerate(q.astype(np.int32))
    with pytest.raises(ValueError, match=r"threshold=2 must be an affinity in \[0, 1\]"):
        agglomerate(affs, threshold=2)


@pytest.mark.parametrize("method,params,message", [
    ("cc", {"threshold": 5}, r"cc parameter threshold=5 is out of range: must be a probability in \[0, 1\)"),
    ("cc", {"threshold": 1.0}, r"cc parameter threshold=1.0 is out of range"),
    ("cc", {"threshold": "high"}, r"cc parameter threshold='high': must be a probability in \[0, 1\)"),
    ("cc", {"connectivity": 5}, r"cc parameter connectivity=5: must be None .* 4 or 8 in 2D, or 6, 18 or 26 in 3D"),
    ("cc", {"channel": -1}, r"cc parameter channel=-1: must be a channel index"),
    ("watershed", {"threshold": 0}, r"watershed parameter threshold=0 is out of range: must be a probability in "
                                    r"\(0, 1\]"),
    ("watershed", {"sigma": -1}, r"watershed parameter sigma=-1 is out of range: must be a number >= 0"),
    ("watershed", {"min_seed_size": 2.5}, r"watershed parameter min_seed_size=2.5: must be an integer >= 0"),
    ("watershed", {"seeds": "maxima"}, r"watershed parameter seeds='maxima': must be 'threshold' or 'distance'"),
    ("watershed", {"max_distance": 0}, r"watershed parameter max_distance=0 is out of range: must be a number > 0"),
    ("watershed", {"per_section": "yes"}, r"watershed parameter per_section='yes': must be true or false"),
    ("bc", {"seed_threshold": 1}, r"bc parameter seed_threshold=1 is out of range: must be a probability in \[0, 1\)"),
    ("bc", {"contour_threshold": 0}, r"bc parameter contour_threshold=0 is out of range"),
    ("bcd", {"distance_threshold": 2}, r"bcd parameter distance_threshold=2 is out of range: must be a number in "
                                       r"\[-1, 1\)"),
    ("agglomerate", {"threshold": -0.1}, r"agglomerate parameter threshold=-0.1 is out of range"),
    ("mws", {"strides": [0, 1, 1]}, r"mws parameter strides=\[0, 1, 1\]: must be None or a list of positive"),
])
def test_method_parameters_are_range_checked(method, params, message):
    offsets = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]] if method in ("agglomerate", "mws") else None
    with pytest.raises(ValueError, match=message):
        segment(np.zeros((3, 2, 8, 8), np.float32), method, params, offsets=offsets)


def test_segment_options_are_range_checked():
    p = _two_squares(np.float32, 0.9)
    with pytest.raises(ValueError, match=r"min_size=-1 must be an integer >= 0"):
        segment(p, "cc", min_size=-1)
    with pytest.raises(ValueError, match=r"z_filter=2 must be 0 \(off\) or an odd number of sections"):
        segment(p, "cc", z_filter=2)
    with pytest.raises(ValueError, match=r"cc parameter channel=1 is out of range: the prediction has 1 channel"):
        segment(p, "cc", {"channel": 1})
    assert segment(p, "watershed", {"sigma": [0, 1, 1], "threshold": 0.5}).max() >= 1  # a sigma per axis
