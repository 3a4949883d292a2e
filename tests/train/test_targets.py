import itertools
import sys

import numpy as np
import pytest
from scipy import ndimage

from emseg.train.targets import (Target, affinities, bc_target, bcd_target, binary_target, boundary_target,
                                 contour_target, one_hot_target)

NEAREST_3D = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]
LONG_3D = NEAREST_3D + [[-3, 0, 0], [0, -9, 0], [0, 0, -9]]


@pytest.fixture(params=["edt", "scipy"])
def distance_backend(request, monkeypatch):
    """Run distance tests with the edt package and with the scipy fallback."""
    if request.param == "edt":
        pytest.importorskip("edt")
    else:
        monkeypatch.setitem(sys.modules, "edt", None)  # import edt -> ImportError
    return request.param


def brute_force_affinities(labels, offsets):
    target = np.zeros((len(offsets), *labels.shape), np.float32)
    mask = np.zeros_like(target)
    for c, off in enumerate(offsets):
        for x in itertools.product(*map(range, labels.shape)):
            y = tuple(np.add(x, off))
            if all(0 <= v < n for v, n in zip(y, labels.shape)):
                mask[(c, *x)] = 1
                target[(c, *x)] = labels[x] == labels[y] and labels[x] > 0
    return target, mask


# ---------------------------------------------------------------- affinities

def test_affinities_1d_like_by_hand():
    labels = np.array([[[1, 1, 2, 2, 0, 0, 3]]])
    t = affinities(labels, [[0, 0, -1], [0, 0, -2], [-1, 0, 0]])
    assert isinstance(t, Target) and t.target.dtype == t.mask.dtype == np.float32
    # channel 0 at x relates x and x - 1
    np.testing.assert_array_equal(t.target[0, 0, 0], [0, 1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(t.mask[0, 0, 0], [0, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(t.target[1, 0, 0], [0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(t.mask[1, 0, 0], [0, 0, 1, 1, 1, 1, 1])
    # a z offset in a single-section volume leaves the volume everywhere
    assert not t.target[2].any() and not t.mask[2].any()


def test_affinities_3x4x4_by_hand():
    labels = np.zeros((3, 4, 4), np.uint16)
    labels[0] = 1
    labels[1, :, :2] = 1
    labels[1, :, 2:] = 2
    labels[2, 1:3, 1:3] = 2
    t = affinities(labels, [[-1, 0, 0], [0, 0, -1], [-2, 0, 0], [0, -3, 0], [0, 0, 5]])
    z, x, z2, y3, x5 = range(5)
    # z nearest neighbour: section 1 relates to section 0 (left half same id), section 2 to section 1
    assert not t.target[z, 0].any() and not t.mask[z, 0].any()
    np.testing.assert_array_equal(t.target[z, 1], np.tile([1, 1, 0, 0], (4, 1)))
    expected = np.zeros((4, 4))
    expected[1:3, 2] = 1  # id 2 over id 2 only where x >= 2
    np.testing.assert_array_equal(t.target[z, 2], expected)
    assert t.mask[z, 1:].all()
    # x nearest neighbour: the 1|2 boundary in section 1 sits at x = 2
    np.testing.assert_array_equal(t.target[x, 1], np.tile([0, 1, 0, 1], (4, 1)))
    np.testing.assert_array_equal(t.mask[x, 0, 0], [0, 1, 1, 1])
    # long range: z - 2 relates section 2 to section 0 (ids 2 vs 1 or 0 vs 1): never the same
    assert not t.target[z2].any()
    assert not t.mask[z2, :2].any() and t.mask[z2, 2].all()
    # y - 3: only row 3 has a partner (row 0)
    assert t.mask[y3, :, 3].all() and not t.mask[y3, :, :3].any()
    np.testing.assert_array_equal(t.target[y3, :, 3], [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]])
    # an offset longer than the axis: nothing valid
    assert not t.mask[x5].any() and not t.target[x5].any()


@pytest.mark.parametrize("shape, offsets", [
    ((5, 6, 7), LONG_3D[:4] + [[1, 0, 0], [0, 2, -1], [-2, -2, 2], [0, 0, 9]]),
    ((9, 11), [[-1, 0], [0, -1], [-3, 0], [0, -4], [2, 3]]),
])
def test_affinities_equal_brute_force(rng, shape, offsets):
    labels = rng.integers(0, 4, shape).astype(np.uint8)
    labels[ndimage.binary_dilation(labels == 3)] = 3  # some larger objects
    t = affinities(labels, offsets)
    target, mask = brute_force_affinities(labels, offsets)
    np.testing.assert_array_equal(t.target, target)
    np.testing.assert_array_equal(t.mask, mask)


def test_affinities_ignore_label(rng):
    labels = rng.integers(0, 3, (4, 10, 12)).astype(np.int32)  # every offset fits
    labels[1:3, 2:4, 2:5] = -1
    t = affinities(labels, LONG_3D, ignore_label=-1)
    target, mask = brute_force_affinities(np.where(labels < 0, 0, labels), LONG_3D)
    for c, off in enumerate(LONG_3D):
        partner = np.full(labels.shape, False)
        here = tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip(off, labels.shape))
        there = tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip(off, labels.shape))
        partner[here] = labels[there] == -1
        expected_mask = mask[c] * ~((labels == -1) | partner)
        np.testing.assert_array_equal(t.mask[c], expected_mask)
        np.testing.assert_array_equal(t.target[c], target[c] * expected_mask)


def test_affinities_zero_exactly_on_contours(rng):
    """Nearest-neighbour affinity edges that are 0 touch exactly the (inner) contour voxels."""
    labels = ndimage.zoom(rng.integers(1, 6, (4, 5, 5)), 3, order=0).astype(np.uint32)
    labels[:, :2] = 0
    t = affinities(labels, NEAREST_3D)
    cut = np.zeros(labels.shape, bool)
    for c in range(3):
        zero = (t.target[c] == 0) & (t.mask[c] == 1)
        cut |= zero
        lo = tuple(slice(None, -1) if a == c else slice(None) for a in range(3))
        hi = tuple(slice(1, None) if a == c else slice(None) for a in range(3))
        cut[lo] |= zero[hi]  # the partner voxel x + offset
    np.testing.assert_array_equal(cut & (labels > 0), contour_target(labels).target[0] == 1)


def test_affinities_errors():
    labels = np.ones((3, 4, 5), np.uint8)
    with pytest.raises(ValueError, match=r"3 entries .* got \[-1, 0\] of length 2"):
        affinities(labels, [[-1, 0, 0], [-1, 0]])
    with pytest.raises(ValueError, match="list of offsets"):
        affinities(labels, [])
    with pytest.raises(ValueError, match="of length 1"):
        affinities(labels, [-1, 0, 0])  # one offset, not nested
    with pytest.raises(TypeError, match="integers"):
        affinities(labels, [[-1.5, 0, 0]])
    with pytest.raises(TypeError, match="integer .* float64"):
        affinities(labels.astype(float), NEAREST_3D)
    t = affinities(labels[0], [[-1, 0], [0, -1]])  # 2D offsets for 2D labels
    assert t.target.shape == (2, 4, 5)


# ---------------------------------------------------------------- binary, one-hot, boundary

def test_binary_target_and_ignore():
    labels = np.array([[0, 5, 5], [7, 0, 9]], np.uint64)
    t = binary_target(labels, ignore_label=9)
    assert t.target.shape == t.mask.shape == (1, 2, 3) and t.target.dtype == np.float32
    np.testing.assert_array_equal(t.target[0], [[0, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(t.mask[0], [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(binary_target(labels).mask, 1)
    np.testing.assert_array_equal(binary_target(labels > 0).target[0], labels > 0)  # bool labels


def test_one_hot_target():
    labels = np.array([[[0, 1], [2, 255]]], np.uint8)
    t = one_hot_target(labels, 3, ignore_label=255)
    assert t.target.shape == t.mask.shape == (3, 1, 2, 2)
    np.testing.assert_array_equal(t.target.argmax(0)[t.mask[0] == 1], [0, 1, 2])
    np.testing.assert_array_equal(t.target.sum(0), t.mask[0])
    np.testing.assert_array_equal(t.mask[:, 0, 1, 1], 0)
    with pytest.raises(ValueError, match="class id 255 but n_classes=3 allows ids 0..2"):
        one_hot_target(labels, 3)
    with pytest.raises(ValueError, match="n_classes"):
        one_hot_target(labels, 0)


def test_boundary_target_conventions():
    membranes = np.array([[255, 0, 255], [0, 0, 255]], np.uint8)
    np.testing.assert_array_equal(boundary_target(membranes).target[0], membranes == 0)
    labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 0, 0]])
    np.testing.assert_array_equal(boundary_target(labels, convention="instances").target[0],
                                  [[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    with pytest.raises(ValueError, match="'isbi', 'instances'"):
        boundary_target(labels, convention="cremi")


def test_label_errors():
    with pytest.raises(TypeError, match="labels must be an integer .* float32"):
        bc_target(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"2D \(y, x\) or 3D"):
        binary_target(np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match=">= 0"):
        contour_target(np.array([[-2, 1]]))
    contour_target(np.array([[-2, 1]]), ignore_label=-2)  # negative allowed as ignore_label
    with pytest.raises(ValueError, match="'inner', 'thick'"):
        contour_target(np.ones((3, 3), np.uint8), mode="outer")
    with pytest.raises(ValueError, match="width"):
        contour_target(np.ones((3, 3), np.uint8), width=0)
    with pytest.raises(ValueError, match="voxel_size must hold 3"):
        bcd_target(np.ones((2, 3, 3), np.uint8), voxel_size=(4, 4))
    with pytest.raises(ValueError, match="'normalized', 'signed'"):
        bcd_target(np.ones((3, 3), np.uint8), mode="sdt")


# ---------------------------------------------------------------- contours, BC

def test_contour_two_touching_objects():
    labels = np.zeros((6, 8), np.uint8)
    labels[1:5, 1:4] = 1
    labels[1:5, 4:7] = 2
    edge = contour_target(labels).target[0]
    expected = (labels > 0).astype(np.float32)
    expected[2:4, 2] = expected[2:4, 5] = 0  # interiors; columns 3 and 4 (shared boundary) stay contour
    np.testing.assert_array_equal(edge, expected)
    assert edge[2, 3] == edge[2, 4] == 1
    thick = contour_target(labels, mode="thick").target[0]
    np.testing.assert_array_equal(thick, (edge == 1) | (ndimage.binary_dilation(labels > 0) & (labels == 0)))
    wide = contour_target(labels, width=2).target[0]
    assert wide[(labels > 0)].all()  # 3-wide objects are all within 2 of another label


@pytest.mark.parametrize("shape", [(40, 50), (9, 20, 21)])
def test_contour_matches_skimage_find_boundaries(rng, shape):
    """Reference: skimage.segmentation.find_boundaries with connectivity=1 ('inner' and 'thick')."""
    find_boundaries = pytest.importorskip("skimage.segmentation").find_boundaries
    labels = ndimage.zoom(rng.integers(0, 5, tuple(s // 3 for s in shape)), 3, order=0).astype(np.uint16)
    for mode in ("inner", "thick"):
        np.testing.assert_array_equal(contour_target(labels, mode=mode).target[0],
                                      find_boundaries(labels, connectivity=1, mode=mode))


def test_contour_per_section():
    labels = np.ones((4, 5, 5), np.uint8)
    labels[2:] = 2  # objects stacked in z only
    assert contour_target(labels).target[:, 1:3].all()
    assert not contour_target(labels, per_section=True).target.any()
    assert not contour_target(labels, voxel_size=(40, 4, 4)).target.any()  # z 10x coarser: per section
    assert contour_target(labels, voxel_size=(6, 4, 4)).target.any()  # 1.5x: full 3D


def test_bc_target_and_ignore(rng):
    labels = ndimage.zoom(rng.integers(0, 4, (3, 6, 6)), (2, 4, 4), order=0).astype(np.uint8)
    t = bc_target(labels, ignore_label=3)
    assert t.target.shape == t.mask.shape == (2, 6, 24, 24)
    ignored = labels == 3
    np.testing.assert_array_equal(t.mask[0], ~ignored)
    np.testing.assert_array_equal(t.target[0], (labels > 0) & ~ignored)
    np.testing.assert_array_equal(t.mask[1], ~ndimage.binary_dilation(ignored, ndimage.generate_binary_structure(3, 1)))
    assert not (t.target * (1 - t.mask)).any()  # targets are 0 where masked
    np.testing.assert_array_equal(t.target[1] * t.mask[1], contour_target(labels).target[0] * t.mask[1])


# ---------------------------------------------------------------- BCD

def test_bcd_normalized(rng, distance_backend):
    labels = np.zeros((30, 40), np.uint16)
    yy, xx = np.mgrid[:30, :40]
    labels[(yy - 15) ** 2 + (xx - 12) ** 2 <= 64] = 7
    labels[5:25, 22:38] = 3  # a rectangle touching nothing
    labels[10:20, 20:22] = 9  # a bar touching both
    t = bcd_target(labels)
    assert t.target.shape == (3, 30, 40)
    dist = t.target[2]
    assert dist.min() == 0 and dist.max() == 1 and not dist[labels == 0].any()
    assert (dist[labels > 0] > 0).all()
    for idx in (3, 7, 9):
        assert dist[labels == idx].max() == 1
    assert dist[15, 12] == 1  # the disk's centre
    # per instance, matches scipy's EDT of that instance alone divided by its maximum
    ref = ndimage.distance_transform_edt(labels == 3)
    np.testing.assert_allclose(dist[labels == 3], (ref / ref.max())[labels == 3], rtol=1e-6)


def test_bcd_signed_flips_sign_and_anisotropy(distance_backend):
    labels = np.zeros((7, 20, 20), np.uint8)
    labels[1:6, 3:17, 3:17] = 4
    t = bcd_target(labels, mode="signed", scale=100.0)
    dist = t.target[2]
    assert (dist[labels > 0] > 0).all() and (dist[labels == 0] < 0).all()
    assert np.sign(dist[3, 10, 2]) == -np.sign(dist[3, 10, 3])  # across the boundary
    assert (np.abs(dist) < 1).all()
    d = np.arctanh(dist.astype(np.float64)) * 100
    assert d[3, 10, 10] == pytest.approx(3)  # 3 sections to z = 0 or 6, isotropic
    coarse = np.arctanh(bcd_target(labels, mode="signed", scale=100.0, voxel_size=(4, 1, 1)).target[2]
                        .astype(np.float64)) * 100
    assert coarse[3, 10, 10] == pytest.approx(7)  # z now 4x farther: the nearest boundary is in-plane
    assert coarse[1, 10, 10] == pytest.approx(4)  # one coarse section from the background
    assert coarse[0, 10, 10] == pytest.approx(-4)
    ref = ndimage.distance_transform_edt(labels, sampling=(4, 1, 1))
    np.testing.assert_allclose(coarse[labels > 0], ref[labels > 0], rtol=1e-5)


def test_bcd_touching_instances_and_ignore(distance_backend):
    labels = np.array([[1, 1, 1, 2, 2, 2, 2, 2, 0, 5]], np.uint32)
    t = bcd_target(labels, ignore_label=5)
    np.testing.assert_allclose(t.target[2, 0], [1, 2 / 3, 1 / 3, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(t.target[1, 0], [0, 0, 1, 1, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(t.mask[2, 0], [1] * 9 + [0])
    assert bcd_target(np.ones((3, 4), np.uint8)).target[2].min() == 1  # no boundary at all
    assert bcd_target(np.zeros((3, 4), np.uint8), mode="signed").target[2].max() < 0


# ---------------------------------------------------------------- real data

def test_flyem_affinities_zero_exactly_on_boundaries(shared_data):
    from emseg.io import read_volume

    path = shared_data / "flyem_medulla" / "sample2_z000-149.h5"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    labels = read_volume(f"{path}:volumes/labels/neuron_ids")[:16, :128, :128]
    t = affinities(labels, NEAREST_3D)
    for c in range(3):
        here = tuple(slice(1, None) if a == c else slice(None) for a in range(3))
        there = tuple(slice(None, -1) if a == c else slice(None) for a in range(3))
        same = (labels[here] == labels[there]) & (labels[here] > 0)
        np.testing.assert_array_equal(t.target[c][here], same)
        assert t.mask[c][here].all() and not t.mask[c][there[:c] + (0,)].any()
        cut = 1 - t.target[c][here].mean()
        assert 0.005 < cut < 0.2, f"fraction of boundary edges along axis {c}: {cut:.3f}"


def test_isbi_boundary_target(shared_data):
    from emseg.io import read_volume

    path = shared_data / "isbi2012" / "train-labels.tif"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    labels = read_volume(path)[:3]
    t = boundary_target(labels)
    np.testing.assert_array_equal(t.target[0] == 1, labels == 0)
    assert 0.1 < t.target.mean() < 0.4
    for section in labels:  # 2D slices alike
        np.testing.assert_array_equal(boundary_target(section).target[0], section == 0)
