"""The fingerprint of small real arrays: what the labels are, how objects touch, which sections hold
labels, and a clear error for inputs that cannot be trained on."""

import numpy as np
import pytest

from emseg.fit import fingerprint
from emseg.synthetic import synthetic_em


@pytest.fixture(scope="module")
def em():
    return synthetic_em((16, 96, 96), seed=0)


@pytest.fixture
def raw(rng):
    return rng.integers(0, 255, (8, 32, 32), dtype=np.uint8)


def _boxes(touching):
    lab = np.zeros((8, 32, 32), np.uint16)
    lab[2:6, 4:12, 4:12] = 1
    if touching:
        lab[2:6, 4:12, 12:20] = 2  # face to face with object 1
    else:
        lab[2:6, 20:28, 20:28] = 2
    return lab


def test_synthetic_instances(em):
    fp = fingerprint(em.raw, em.mito, voxel_size=em.voxel_size)
    assert fp.shape == (16, 96, 96) and fp.voxel_size == (30.0, 6.0, 6.0) and fp.anisotropy == 5.0
    assert fp.labels_kind == "instances" and fp.objects == int(em.mito.max())
    assert fp.labelled_sections == ((0, 16),) and fp.n_labelled == 16
    assert fp.foreground_fraction == pytest.approx((em.mito > 0).mean(), abs=1e-3)
    assert fp.intensity["p1"] <= fp.intensity["p50"] <= fp.intensity["p99"]
    d = fp.as_dict()
    assert d["anisotropy"] == 5.0 and d["labels_kind"] == "instances"


def test_synthetic_neurons_are_dense_and_touching(em):
    fp = fingerprint(em.raw, em.neurons, voxel_size=em.voxel_size)
    assert fp.labels_kind == "neurons" and fp.touching == 1.0 and fp.foreground_fraction == 1.0


def test_neurons_labelled_on_a_few_sections_are_still_neurons(em):
    """The kind of labels is judged on the sections that hold labels, not diluted by the empty ones."""
    from emseg.train.sparse import SectionsView

    fp = fingerprint(em.raw, SectionsView(em.neurons, [2, 7, 12]))
    assert fp.labels_kind == "neurons", fp.kind_reason
    assert fp.labelled_sections == ((2, 3), (7, 8), (12, 13))


def test_voxel_size_comes_from_the_volume_when_not_given(em, tmp_path):
    from emseg.io import open_volume, write_volume

    write_volume(str(tmp_path / "raw.zarr"), em.raw, voxel_size=em.voxel_size)
    write_volume(str(tmp_path / "mito.zarr"), em.mito, voxel_size=em.voxel_size)
    with open_volume(str(tmp_path / "raw.zarr")) as raw, open_volume(str(tmp_path / "mito.zarr")) as labels:
        fp = fingerprint(raw, labels)
    assert fp.voxel_size == (30.0, 6.0, 6.0)
    assert fingerprint(em.raw, em.mito).voxel_size is None  # plain arrays do not say


def test_shapes_differ_names_both_shapes(raw):
    with pytest.raises(ValueError) as err:
        fingerprint(raw, _boxes(True)[:4], raw_name="r.zarr", labels_name="l.zarr")
    msg = str(err.value)
    assert "(4, 32, 32)" in msg and "(8, 32, 32)" in msg and "r.zarr" in msg and "l.zarr" in msg


def test_all_zero_labels_hold_no_foreground(raw):
    with pytest.raises(ValueError, match="l.zarr hold no foreground"):
        fingerprint(raw, np.zeros(raw.shape, np.uint8), labels_name="l.zarr")


def test_float_labels_are_refused(raw):
    with pytest.raises(ValueError, match=r"floating-point values \(float32\).*integer labels"):
        fingerprint(raw, _boxes(True).astype(np.float32), labels_name="l.zarr")


def test_raw_given_as_labels_is_refused(em):
    with pytest.raises(ValueError, match=r"looks like an image.*are raw and labels swapped"):
        fingerprint(em.raw, em.raw, labels_name="raw.zarr")


def _grid():
    """Thin membranes: 1-voxel lines every 8 voxels, 64 cells per section."""
    on = np.zeros((4, 64, 64), bool)
    on[:, ::8, :] = on[:, :, ::8] = True
    return on


def test_a_membrane_mask_with_1_on_the_membranes_is_refused(rng):
    raw = rng.integers(0, 255, (4, 64, 64), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"1 on the membranes.*invert the labels"):
        fingerprint(raw, _grid().astype(np.uint8))


def test_isbi_membrane_labels(rng):
    raw = rng.integers(0, 255, (4, 64, 64), dtype=np.uint8)
    on = _grid()
    fp = fingerprint(raw, np.where(on, 0, 255).astype(np.uint8))
    assert fp.labels_kind == "membranes" and fp.touching is None and "ISBI" in fp.kind_reason
    assert fp.foreground_fraction == pytest.approx(on.mean(), abs=1e-3)  # the membrane share
    assert fp.objects == 4 * 64  # the cells of every section


def test_touching_fraction_of_touching_and_separate_boxes(raw):
    touching, separate = fingerprint(raw, _boxes(True)), fingerprint(raw, _boxes(False))
    assert touching.labels_kind == separate.labels_kind == "instances"
    assert touching.touching == 1.0 and separate.touching == 0.0
    assert touching.objects == separate.objects == 2
    assert separate.object_extent == (4, 8, 8)


def test_a_mask_has_no_touching_fraction(raw):
    fp = fingerprint(raw, (_boxes(False) > 0).astype(np.uint8))
    assert fp.labels_kind == "mask" and fp.touching is None and fp.objects == 2


def test_labelled_sections_of_partly_labelled_labels(raw):
    lab = np.zeros(raw.shape, np.uint16)
    lab[1:3, 4:12, 4:12] = 1
    lab[5:7, 20:28, 20:28] = 2
    fp = fingerprint(raw, lab)
    assert fp.labelled_sections == ((1, 3), (5, 7)) and fp.n_labelled == 4
    # the foreground fraction is over the labelled sections only
    assert fp.foreground_fraction == pytest.approx(2 * 2 * 64 / (4 * 32 * 32))


def test_a_2d_image_is_one_section(raw):
    fp = fingerprint(raw[3], _boxes(False)[3], voxel_size=(4.0, 4.0))
    assert fp.shape == (1, 32, 32) and fp.labelled_sections == ((0, 1),) and fp.voxel_size == (4.0, 4.0, 4.0)


def test_a_bad_voxel_size_is_refused(raw):
    with pytest.raises(ValueError, match="voxel_size of r.zarr must be 3 positive numbers"):
        fingerprint(raw, _boxes(True), voxel_size=(30, 0, 4), raw_name="r.zarr")


class _Lazy:
    """A volume read only through ``__getitem__``, recording the largest single read (in voxels)."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.largest = data, data.shape, data.dtype, 0

    def __getitem__(self, key):
        out = np.asarray(self.data[key])
        self.largest = max(self.largest, out.size)
        return out


def test_a_volume_larger_than_the_read_limits_is_read_in_bounded_pieces(em, monkeypatch):
    """Fingerprint and the trainer's foreground sample read bounded pieces of a lazy volume, never all of it."""
    import sys

    from emseg.train.sparse import Known, scan_known

    fpmod = sys.modules["emseg.fit.fingerprint"]  # the module (emseg.fit.fingerprint is also the function)

    raw, lab = _Lazy(em.raw), _Lazy(em.mito)
    total = em.mito.size
    monkeypatch.setattr(fpmod, "SLAB", total // 4)
    monkeypatch.setattr(fpmod, "MAX_CROP", total // 8)
    fp = fingerprint(raw, lab, voxel_size=em.voxel_size)
    assert fp.labels_kind == "instances" and fp.objects > 0
    from emseg.sampling import BOX

    # the crop, the section scan and the label-kind sample (boxes of emseg.sampling.BOX) are all bounded
    assert lab.largest <= max(total // 8, int(np.prod(BOX))) < total  # (raw this small is read whole)
    lab.largest = 0
    roi = tuple(slice(0, n) for n in em.mito.shape)
    fg = scan_known(lab, roi, Known(), 500, np.random.default_rng(0), slab_voxels=total // 16)[0]
    assert lab.largest <= total // 16 and 0 < len(fg) <= 500
    assert (em.mito[tuple(fg.T)] > 0).all()  # every sampled coordinate is foreground


def test_the_foreground_sample_is_uniform_over_slabs(rng):
    """A bottom-k sample: each slab's share of the coordinates is its share of the foreground (7.5x here)."""
    from emseg.train.sparse import Known, scan_known

    lab = np.zeros((8, 40, 40), np.uint8)
    lab[:4, :30, :30] = 1   # 900 voxels per section
    lab[4:, :10, :12] = 1   # 120 per section
    roi = tuple(slice(0, n) for n in lab.shape)
    fg = scan_known(lab, roi, Known(), 2000, np.random.default_rng(1), slab_voxels=4 * 40 * 40)[0]
    share = (fg[:, 0] < 4).mean()
    assert share == pytest.approx(900 / (900 + 120), abs=0.02)
