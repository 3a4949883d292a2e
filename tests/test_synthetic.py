"""Tests for emseg.synthetic: ground-truth invariants, image statistics, defects, errors."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from emseg.synthetic import SyntheticConfig, SyntheticEM, synthetic_em

SHAPE = (8, 128, 128)  # small ssTEM-like stack at the default (30, 6, 6) nm


@pytest.fixture(scope="module")
def em():
    return synthetic_em(SHAPE, seed=3)


def _cytoplasm(em):
    return ~em.membranes & (em.mito == 0)


def test_shapes_and_dtypes(em):
    assert isinstance(em, SyntheticEM)
    for a in (em.raw, em.neurons, em.mito, em.membranes):
        assert a.shape == SHAPE
    assert em.raw.dtype == np.uint8 and em.membranes.dtype == bool
    assert em.neurons.dtype == np.min_scalar_type(int(em.neurons.max()))
    assert em.mito.dtype == np.min_scalar_type(int(em.mito.max()))
    assert em.voxel_size == (30.0, 6.0, 6.0)
    assert em.defects == {"missing": [], "misaligned": [], "low_contrast": [], "shifts": []}


def test_label_dtype_grows_with_the_number_of_ids():
    em = synthetic_em((4, 160, 160), cell_size_nm=60.0, membrane_width_nm=6.0, mito_fraction=0.0)
    assert em.neurons.max() > 255 and em.neurons.dtype == np.uint16


def test_same_arguments_same_output():
    a = synthetic_em((6, 64, 64), seed=7, defects=True)
    b = synthetic_em((6, 64, 64), seed=7, defects=True)
    for name in ("raw", "neurons", "mito", "membranes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.defects == b.defects


def test_different_seeds_differ():
    a, b = synthetic_em((6, 64, 64), seed=0), synthetic_em((6, 64, 64), seed=1)
    assert not np.array_equal(a.raw, b.raw)
    assert not np.array_equal(a.neurons, b.neurons)


def test_neurons_dense_and_consecutive(em):
    ids = np.unique(em.neurons)
    assert ids[0] == 1  # no background
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    assert len(ids) > 5


def test_mito_ids_consecutive_and_each_inside_one_neuron(em):
    ids = np.unique(em.mito[em.mito > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    assert len(ids) >= 2
    pairs = np.unique(np.stack([em.mito[em.mito > 0], em.neurons[em.mito > 0]]), axis=1)
    assert pairs.shape[1] == len(ids)  # one host neuron per mitochondrion
    assert not (em.membranes & (em.mito > 0)).any()  # never on a membrane


def test_mito_instances_are_connected(em):
    for i, sl in enumerate(ndi.find_objects(em.mito), start=1):
        assert ndi.label(em.mito[sl] == i)[1] == 1


def test_membranes_line_every_cell_boundary(em):
    for axis in (1, 2):  # in-plane neighbours with different ids: one of them is membrane
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        a, b = tuple(a), tuple(b)
        boundary = em.neurons[a] != em.neurons[b]
        assert boundary.any()
        assert (em.membranes[a] | em.membranes[b])[boundary].all()
    assert 0.03 < em.membranes.mean() < 0.4


def test_membranes_darker_than_cytoplasm(em):
    raw = em.raw.astype(float)
    assert raw[em.membranes].mean() < raw[_cytoplasm(em)].mean() - 40


def test_mito_darker_than_cytoplasm(em):
    raw = em.raw.astype(float)
    assert raw[em.mito > 0].mean() < raw[_cytoplasm(em)].mean() - 25


def test_raw_uses_most_of_the_range(em):
    low, high = np.percentile(em.raw, [1, 99])
    assert low < 70 and high > 180
    assert 100 < em.raw.mean() < 170


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.15])
def test_mito_fraction_roughly_honoured(fraction):
    em = synthetic_em(SHAPE, mito_fraction=fraction, seed=1)
    assert abs((em.mito > 0).mean() - fraction) <= 0.3 * fraction
    assert (em.mito.max() == 0) == (fraction == 0)


def test_cells_are_longer_along_a_coarse_z(em):
    # Boundaries crossed per nm: cells are twice as long along z (neurites cut across).
    per_nm = [np.mean(np.diff(em.neurons.astype(int), axis=a) != 0) / v
              for a, v in enumerate(em.voxel_size)]
    assert per_nm[0] < per_nm[2]


def test_explicit_defects_damage_raw_only():
    clean = synthetic_em((8, 96, 96), seed=2)
    em = synthetic_em((8, 96, 96), seed=2, missing_sections=[3], misaligned_sections=[5],
                      low_contrast_sections=[6])
    assert em.defects["missing"] == [3] and em.defects["misaligned"] == [5]
    assert em.defects["low_contrast"] == [6] and len(em.defects["shifts"]) == 1
    for name in ("neurons", "mito", "membranes"):  # ground truth stays put
        np.testing.assert_array_equal(getattr(em, name), getattr(clean, name))
    for z in (0, 1, 2, 4, 7):  # other sections untouched
        np.testing.assert_array_equal(em.raw[z], clean.raw[z])

    # Missing: flat, and unrelated to its neighbours.
    r = em.raw.astype(float)
    assert r[3].std() < 0.5 * r[2].std()
    assert abs(np.corrcoef(r[3].ravel(), r[2].ravel())[0, 1]) < 0.1

    # Misaligned: the section alone is moved by the recorded shift.
    dy, dx = em.defects["shifts"][0]
    assert 3 <= abs(dy) <= 8 and 3 <= abs(dx) <= 8
    np.testing.assert_array_equal(em.raw[5][10:-10, 10:-10],
                                  np.roll(clean.raw[5], (dy, dx), (0, 1))[10:-10, 10:-10])

    # Low contrast: much less spread around about the same mean.
    assert r[6].std() < 0.5 * clean.raw[6].std()
    assert abs(r[6].mean() - clean.raw[6].mean()) < 3


def test_random_defects_are_recorded_and_distinct():
    em = synthetic_em((40, 48, 48), defects=True, seed=5)
    zs = em.defects["missing"] + em.defects["misaligned"] + em.defects["low_contrast"]
    assert len(zs) == 3 and len(set(zs)) == 3
    assert all(0 < z < 39 for z in zs)
    assert len(em.defects["shifts"]) == len(em.defects["misaligned"])
    (z,) = em.defects["missing"]
    assert em.raw[z].std() < 0.5 * em.raw[z - 1].std()


def test_random_defects_keep_explicit_ones():
    em = synthetic_em((10, 32, 32), defects=True, missing_sections=[2, 4], seed=0)
    assert em.defects["missing"] == [2, 4]
    assert len(em.defects["misaligned"]) == 1 and em.defects["misaligned"][0] not in (2, 4)


def test_2d():
    em = synthetic_em((128, 128), voxel_size=(5, 5), seed=4)
    assert em.raw.shape == em.neurons.shape == em.mito.shape == em.membranes.shape == (128, 128)
    assert em.voxel_size == (5.0, 5.0) and em.neurons.min() == 1
    assert em.defects["missing"] == [] and em.defects["shifts"] == []
    raw = em.raw.astype(float)
    assert raw[em.membranes].mean() < raw[_cytoplasm(em)].mean() - 40
    assert synthetic_em((32, 32)).voxel_size == (6.0, 6.0)  # default in 2D


def test_isotropic_and_no_noise_no_blur():
    em = synthetic_em((12, 48, 48), voxel_size=(8, 8, 8), noise=0.0, blur=0.0, seed=1)
    raw = em.raw.astype(float)
    assert raw[em.membranes].mean() < raw[_cytoplasm(em)].mean() - 40


def test_default_call():
    # The demo's call: no timing asserted here (see the module's docstring for the budget).
    em = synthetic_em()
    assert em.raw.shape == (32, 256, 256) and em.neurons.max() > 20
    assert 0.05 < (em.mito > 0).mean() < 0.11


@pytest.mark.parametrize("kwargs, name", [
    (dict(shape=(0, 10, 10)), "shape"),
    (dict(shape=(10,)), "shape"),
    (dict(shape=(2, 2, 2, 2)), "shape"),
    (dict(shape=(8.5, 10)), "shape"),
    (dict(shape=7), "shape"),
    (dict(shape=(4, 32, 32), voxel_size=(6, 6)), "voxel_size"),
    (dict(shape=(4, 32, 32), voxel_size=(30, 0, 6)), "voxel_size"),
    (dict(shape=(32, 32), voxel_size=(float("nan"), 6)), "voxel_size"),
    (dict(voxel_size="6nm"), "voxel_size"),
    (dict(mito_fraction=1.0), "mito_fraction"),
    (dict(mito_fraction=-0.1), "mito_fraction"),
    (dict(noise=-0.1), "noise"),
    (dict(blur=-1), "blur"),
    (dict(n_cells=0), "n_cells"),
    (dict(n_cells=2.5), "n_cells"),
    (dict(cell_size_nm=0), "cell_size_nm"),
    (dict(membrane_width_nm=0), "membrane_width_nm"),
    (dict(membrane_width_nm=200), "membrane_width_nm"),
    (dict(defects="yes"), "defects"),
    (dict(shape=(32, 32), defects=True), "defects"),
    (dict(shape=(32, 32), missing_sections=[0]), "missing_sections"),
    (dict(shape=(4, 32, 32), misaligned_sections=[4]), "misaligned_sections"),
    (dict(shape=(4, 32, 32), low_contrast_sections=3), "low_contrast_sections"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name) as info:
        synthetic_em(**kwargs)
    assert "got" in str(info.value)  # says what it received


def test_a_config_gives_what_its_keywords_give():
    kwargs = dict(seed=7, defects=True, missing_sections=[2], noise=0.1, cell_size_nm=250)
    a = synthetic_em((6, 48, 48), **kwargs)
    b = synthetic_em((6, 48, 48), SyntheticConfig(**kwargs))
    c = synthetic_em((6, 48, 48), SyntheticConfig(seed=1, noise=0.3), **kwargs)  # keywords replace fields
    for em in (b, c):
        for name in ("raw", "neurons", "mito", "membranes"):
            np.testing.assert_array_equal(getattr(a, name), getattr(em, name))
        assert em.defects == a.defects
    numpy_scalars = SyntheticConfig(seed=np.int64(7), noise=np.float64(0.1), defects=np.bool_(True),
                                    missing_sections=np.array([2]), cell_size_nm=np.int32(250))
    assert numpy_scalars == SyntheticConfig(**kwargs) and hash(numpy_scalars) == hash(SyntheticConfig(**kwargs))


def test_config_errors():
    from emseg.config import ConfigError

    with pytest.raises(ConfigError, match="noise must be a number >= 0; got -1.0") as info:
        SyntheticConfig(noise=-1)
    assert info.value.key == "noise"
    with pytest.raises(ConfigError, match="seed must be None, an integer >= 0"):
        SyntheticConfig(seed=-3)
    with pytest.raises(TypeError, match="unknown option 'sed'; valid options: blur"):
        synthetic_em((4, 32, 32), sed=1)
    with pytest.raises(TypeError, match="expected a SyntheticConfig"):
        synthetic_em((4, 32, 32), {"seed": 1})
