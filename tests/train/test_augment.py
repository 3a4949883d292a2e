"""Augmentation: labels stay aligned with raw under every geometric transform (raw is built as a
function of the labels), defects do exactly what they claim, symmetries respect anisotropy, and
everything is seeded, shape/dtype preserving and validated."""


import numpy as np
import pytest
from scipy import ndimage as ndi

from emseg.train import augment as aug
from emseg.train.augment import DEFAULT_P, Augmenter

ALL = [aug.random_flip_rotate, aug.rotate_scale, aug.elastic, aug.misalignment,
       aug.brightness_contrast, aug.per_section_intensity, aug.gamma, aug.gaussian_blur,
       aug.low_contrast_section, aug.motion_blur, aug.gaussian_noise, aug.missing_parts,
       aug.missing_section]
GEOMETRIC = {"random_flip_rotate", "rotate_scale", "elastic", "misalignment"}


def _blocks(shape, seed=0, block=(2, 8, 8)):
    """Piecewise-constant label image: random ids 1..60 on blocks of ``block`` voxels."""
    rng = np.random.default_rng(seed)
    block = block[-len(shape):]
    coarse = rng.integers(1, 61, [-(-n // b) for n, b in zip(shape, block)]).astype(np.uint16)
    for axis, b in enumerate(block):
        coarse = np.repeat(coarse, b, axis=axis)
    return coarse[tuple(slice(n) for n in shape)]


def _call(f, raw, labels, rng, vs=(30, 6, 6), **kw):
    """Call any transform with the arguments it needs."""
    if f is aug.elastic:
        kw = {"alpha_nm": 3 * vs[-1], "sigma_nm": 8 * vs[-1], "voxel_size": vs, **kw}
    elif f is aug.random_flip_rotate:
        kw = {"voxel_size": vs, **kw}
    else:
        kw = {"ndim": len(vs), **kw}
    return f(raw, labels, rng, **kw)


def _near_boundary(lab, size):
    """True within ``size // 2`` voxels of a label boundary (max != min in the window)."""
    return ndi.maximum_filter(lab, size) != ndi.minimum_filter(lab, size)


# ---------------------------------------------------------------- alignment of labels and raw
@pytest.mark.parametrize("vs", [(30, 6, 6), (8, 8, 8), (6, 6)])
def test_flip_rotate_keeps_labels_exactly_aligned(vs):
    lab = _blocks((8, 16, 16)[-len(vs):])
    raw = lab.astype(np.float32) * 10
    for seed in range(20):
        r, (l, t) = aug.random_flip_rotate(raw, [lab, raw.copy()], np.random.default_rng(seed), vs)
        np.testing.assert_array_equal(r, l * 10.0)
        np.testing.assert_array_equal(r, t)


@pytest.mark.parametrize("name, kw, vs, window", [
    ("rotate_scale", {"max_angle_deg": 20, "scale": (0.85, 1.15)}, (30, 6, 6), (1, 5, 5)),
    ("elastic", {}, (30, 6, 6), (1, 5, 5)),
    ("elastic", {}, (8, 8, 8), (5, 5, 5)),
    ("elastic", {}, (6, 6), (5, 5)),
    ("misalignment", {"mode": "step", "max_rotation_deg": 5}, (30, 6, 6), (1, 5, 5)),
    ("misalignment", {"mode": "step"}, (30, 6, 6), (1, 1, 1)),
])
def test_interpolating_transforms_keep_labels_aligned(name, kw, vs, window):
    """Integer labels (nearest) agree with linearly interpolated raw = 10 * labels everywhere but
    next to a boundary (on the interior: at the patch's edge the neighbour across a boundary can lie
    outside); a float target (linear, like raw) agrees exactly."""
    lab = _blocks((12, 48, 48)[-len(vs):], seed=1)
    raw = lab.astype(np.float32) * 10
    moved = 0
    for seed in range(5):
        r, (l, t) = _call(getattr(aug, name), raw, [lab, raw.copy()], np.random.default_rng(seed), vs,
                          **kw)
        assert l.dtype == lab.dtype and t.dtype == np.float32
        np.testing.assert_allclose(r, t, atol=1e-4)
        bad = (np.abs(r - 10.0 * l) > 1e-3) & ~_near_boundary(l, window)
        assert not bad[tuple(slice(w // 2, -(w // 2) or None) for w in window)].any()
        moved += (l != lab).mean()
    assert moved > 0.05  # the transforms really moved the labels


def test_photometric_and_defects_leave_labels_untouched():
    lab = _blocks((6, 32, 32))
    raw = np.random.default_rng(0).random(lab.shape, dtype=np.float32)
    for f in ALL:
        if f.__name__ in GEOMETRIC:
            continue
        for seed in range(3):
            r, l = _call(f, raw, lab, np.random.default_rng(seed))
            assert l is not lab and l.dtype == lab.dtype
            np.testing.assert_array_equal(l, lab)


# ---------------------------------------------------------------- defects
def test_missing_section_blanks_exactly_whole_sections():
    lab = _blocks((6, 16, 16))
    raw = np.random.default_rng(0).random(lab.shape, dtype=np.float32) + 1
    for seed in range(10):
        r, l = aug.missing_section(raw, lab, np.random.default_rng(seed), n_sections=1, value=0.0)
        blank = [z for z in range(6) if (r[z] == 0).all()]
        assert len(blank) == 1
        np.testing.assert_array_equal(np.delete(r, blank, 0), np.delete(raw, blank, 0))
        np.testing.assert_array_equal(l, lab)
    r, _ = aug.missing_section(raw, None, np.random.default_rng(0), n_sections=(2, 2), value=0.5)
    assert sum((r[z] == 0.5).all() for z in range(6)) == 2
    two = raw[:2]
    r, _ = aug.missing_section(two, None, np.random.default_rng(0), n_sections=5)  # never all
    assert sum((r[z] == 0).all() for z in range(2)) == 1
    r2d, _ = aug.missing_section(raw[0], None, np.random.default_rng(0))  # one section: unchanged
    np.testing.assert_array_equal(r2d, raw[0])


def _find_shift(moved, orig, d):
    """The (dy, dx) with moved[y, x] == orig[y - dy, x - dx] on the interior, or None."""
    inner = (slice(d, -d), slice(d, -d))
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            if np.array_equal(moved[inner], np.roll(orig, (dy, dx), axis=(0, 1))[inner]):
                return dy, dx
    return None


@pytest.mark.parametrize("mode", ["step", "slip"])
def test_misalignment_shifts_sections_by_one_offset(mode):
    d = 5
    raw = np.random.default_rng(0).random((6, 32, 32), dtype=np.float32)
    lab = (raw * 1000).astype(np.int32)  # unique-ish ids that follow raw
    seen = set()
    for seed in range(12):
        r, l = aug.misalignment(raw, lab, np.random.default_rng(seed), max_displacement=d, mode=mode)
        changed = [z for z in range(6) if not np.array_equal(r[z], raw[z])]
        if not changed:
            continue  # drew (0, 0)
        shifts = {_find_shift(r[z], raw[z], d) for z in changed}
        assert len(shifts) == 1 and None not in shifts
        dy, dx = shifts.pop()
        assert max(abs(dy), abs(dx)) <= d and (dy, dx) != (0, 0)
        seen.add((dy, dx))
        if mode == "step":  # all sections from one z on; labels move with raw
            assert changed == list(range(changed[0], 6)) and changed[0] >= 1
            np.testing.assert_array_equal(l, (r * 1000).astype(np.int32))
        else:  # one section; labels keep the true geometry
            assert len(changed) == 1
            np.testing.assert_array_equal(l, lab)
    assert len(seen) > 3


def test_misalignment_random_mode_draws_both_kinds():
    raw = np.random.default_rng(0).random((8, 16, 16), dtype=np.float32)
    n_changed = set()
    for seed in range(30):
        r, _ = aug.misalignment(raw, None, np.random.default_rng(seed), max_displacement=3)
        n_changed.add(sum(not np.array_equal(r[z], raw[z]) for z in range(8)))
    assert 1 in n_changed and max(n_changed) > 1


def test_missing_parts_zeroes_a_straight_band_in_one_section():
    raw = np.random.default_rng(0).random((4, 64, 64), dtype=np.float32) + 1  # no zeros
    long_bands = 0
    for seed in range(10):
        r, _ = aug.missing_parts(raw, None, np.random.default_rng(seed), width=(4, 6))
        changed = r != raw
        sections = np.flatnonzero(changed.any(axis=(1, 2)))
        assert len(sections) == 1
        assert (r[changed] == 0).all()
        pts = np.argwhere(changed[sections[0]]).astype(float)
        pts -= pts.mean(axis=0)
        _, vecs = np.linalg.eigh(np.cov(pts.T))
        across, along = pts @ vecs[:, 0], pts @ vecs[:, 1]
        assert np.abs(across).max() <= 3.5  # within width / 2 of one straight line
        if len(pts) > 100:  # not just a clipped corner: long along the line
            assert np.ptp(along) > 3 * np.ptp(across)
        long_bands += len(pts) > 100
    assert long_bands >= 5


def test_low_contrast_section_reduces_std_of_one_section():
    raw = np.random.default_rng(0).standard_normal((5, 32, 32)).astype(np.float32)
    r, _ = aug.low_contrast_section(raw, None, np.random.default_rng(0), factor=(0.2, 0.5))
    ratio = r.std(axis=(1, 2)) / raw.std(axis=(1, 2))
    low = np.flatnonzero(ratio < 0.99)
    assert len(low) == 1 and 0.2 - 1e-4 <= ratio[low[0]] <= 0.5 + 1e-4
    np.testing.assert_allclose(r.mean(axis=(1, 2)), raw.mean(axis=(1, 2)), atol=1e-5)
    np.testing.assert_array_equal(np.delete(r, low, 0), np.delete(raw, low, 0))


def test_motion_blur_smooths_one_section():
    raw = np.random.default_rng(0).random((4, 32, 32), dtype=np.float32)
    r, _ = aug.motion_blur(raw, None, np.random.default_rng(0), length=7)
    changed = [z for z in range(4) if not np.array_equal(r[z], raw[z])]
    assert len(changed) == 1
    z = changed[0]
    assert r[z].std() < 0.7 * raw[z].std() and abs(r[z].mean() - raw[z].mean()) < 1e-3


def test_photometric_transforms():
    rng = np.random.default_rng(0)
    raw = rng.random((4, 32, 32), dtype=np.float32)
    r, _ = aug.gaussian_blur(raw, None, rng, sigma=(1, 2))
    assert r.std() < 0.6 * raw.std()
    np.testing.assert_allclose(r.mean(axis=(1, 2)), raw.mean(axis=(1, 2)), atol=1e-3)  # in-plane
    r, _ = aug.gamma(raw, None, rng, gamma=(2, 2))
    assert r.min() == raw.min() and np.isclose(r.max(), raw.max()) and r.mean() < raw.mean()
    r, _ = aug.gaussian_noise(raw, None, rng, std=(0.5, 0.5))
    assert 0.45 < (r - raw).std() / raw.std() < 0.55
    r, _ = aug.per_section_intensity(raw, None, rng, brightness=0.2, contrast=0.3)
    slopes = [np.polyfit(raw[z].ravel(), r[z].ravel(), 1)[0] for z in range(4)]
    assert len(set(np.round(slopes, 4))) == 4 and all(0.7 - 1e-4 <= s <= 1.3 + 1e-4 for s in slopes)
    zero_mean = (raw - raw.mean()) / raw.std()  # both normalisations work: result is scale-free
    a, _ = aug.brightness_contrast(raw, None, np.random.default_rng(3))
    b, _ = aug.brightness_contrast(zero_mean, None, np.random.default_rng(3))
    np.testing.assert_allclose((a - raw.mean()) / raw.std(), b, atol=1e-5)


# ---------------------------------------------------------------- symmetries and anisotropy
def _orbit(raw, vs, draws):
    return {aug.random_flip_rotate(raw, None, np.random.default_rng(s), vs)[0].tobytes()
            for s in range(draws)}


def test_anisotropic_never_swaps_z():
    raw = np.fromfunction(lambda z, y, x: 100 * z + 10 * y + x, (3, 4, 4), dtype=np.float32)
    for seed in range(200):
        r, _ = aug.random_flip_rotate(raw, None, np.random.default_rng(seed), (30, 6, 6))
        zdigit = r // 100
        assert all(len(np.unique(zdigit[z])) == 1 for z in range(3))  # each section from one z
    assert len(_orbit(raw, (30, 6, 6), 300)) == 16  # 4 in-plane rotations x flips x z-flip


def test_isotropic_reaches_all_48_symmetries():
    raw = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    assert len(_orbit(raw, (8, 8, 8), 600)) == 48


def test_unequal_lengths_or_sizes_are_never_transposed():
    raw = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)  # yx not square
    outs = [aug.random_flip_rotate(raw, None, np.random.default_rng(s), (8, 8, 8))[0] for s in range(100)]
    assert all(o.shape == raw.shape for o in outs) and len({o.tobytes() for o in outs}) == 8
    sq = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert len(_orbit(sq, (6, 6), 200)) == 8  # 2D: the dihedral group
    assert len(_orbit(sq, (6, 12), 200)) == 4  # anisotropic pixels: flips only


def _is_flip_of(out, raw):
    """True if out is raw with some of its axes reversed (no transpose)."""
    return any(np.array_equal(out, raw[tuple(slice(None, None, -1 if f else 1) for f in flips)])
               for flips in np.ndindex(*(2,) * raw.ndim))


def test_flip_false_only_permutes_axes():
    raw = np.fromfunction(lambda z, y, x: 100 * z + 10 * y + x, (3, 3, 3), dtype=np.float32)
    outs = [aug.random_flip_rotate(raw, None, np.random.default_rng(s), (8, 8, 8), flip=False)[0]
            for s in range(200)]
    assert all(o[0, 0, 0] == 0 for o in outs)  # the origin stays: no axis reversed
    assert all(sorted([o[1, 0, 0], o[0, 1, 0], o[0, 0, 1]]) == [1, 10, 100] for o in outs)
    assert len({o.tobytes() for o in outs}) == 6  # the 3! transposes


def test_rotate90_false_only_flips():
    raw = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    outs = [aug.random_flip_rotate(raw, None, np.random.default_rng(s), (8, 8, 8), rotate90=False)[0]
            for s in range(200)]
    assert all(_is_flip_of(o, raw) for o in outs) and len({o.tobytes() for o in outs}) == 8
    same = aug.random_flip_rotate(raw, None, np.random.default_rng(0), (8, 8, 8), flip=False, rotate90=False)[0]
    np.testing.assert_array_equal(same, raw)


def test_rotate90_yx_keeps_z_on_isotropic_voxels():
    raw = np.fromfunction(lambda z, y, x: 100 * z + 10 * y + x, (3, 3, 3), dtype=np.float32)
    for seed in range(100):
        r, _ = aug.random_flip_rotate(raw, None, np.random.default_rng(seed), (8, 8, 8), rotate90="yx")
        assert all(len(np.unique(r[z] // 100)) == 1 for z in range(3))  # each section from one z
    cube = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    orbit = {aug.random_flip_rotate(cube, None, np.random.default_rng(s), (8, 8, 8), rotate90="yx")[0].tobytes()
             for s in range(300)}
    assert len(orbit) == 16


def test_rotate90_zyx_is_refused_on_anisotropic_voxels():
    raw = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    for vs in [(30, 6, 6), (6, 6, 12), None]:
        with pytest.raises(ValueError, match="rotate90='zyx'.*anisotropic.*use rotate90=True"):
            aug.random_flip_rotate(raw, None, np.random.default_rng(0), vs, rotate90="zyx")
    with pytest.raises(ValueError, match="anisotropic"):
        aug.random_flip_rotate(raw[0], None, np.random.default_rng(0), (6, 12), rotate90="zyx")
    for seed in range(20):  # where every voxel size is equal it is the default
        a = aug.random_flip_rotate(raw, None, np.random.default_rng(seed), (8, 8, 8), rotate90="zyx")[0]
        b = aug.random_flip_rotate(raw, None, np.random.default_rng(seed), (8, 8, 8))[0]
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"params\['random_flip_rotate'\]: rotate90='zyx'"):
        Augmenter((30, 6, 6), params={"random_flip_rotate": {"rotate90": "zyx"}})
    Augmenter((8, 8, 8), params={"random_flip_rotate": {"rotate90": "zyx"}})
    for bad in ("xy", 1, None):
        with pytest.raises(ValueError, match="rotate90 must be one of"):
            aug.random_flip_rotate(raw, None, np.random.default_rng(0), (8, 8, 8), rotate90=bad)
    with pytest.raises(ValueError, match="flip must be True or False"):
        aug.random_flip_rotate(raw, None, np.random.default_rng(0), (8, 8, 8), flip="no")


def test_switching_flip_or_rotate90_off_draws_the_same_numbers():
    raw = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    after = []
    for kw in ({}, {"flip": False}, {"rotate90": False}, {"rotate90": "zyx"}):
        rng = np.random.default_rng(4)
        aug.random_flip_rotate(raw, None, rng, (8, 8, 8), **kw)
        after.append(rng.random())
    assert len(set(after)) == 1


# ---------------------------------------------------------------- seeds, shapes, dtypes
@pytest.mark.parametrize("f", ALL, ids=lambda f: f.__name__)
def test_same_seed_same_output_and_inputs_untouched(f):
    lab = _blocks((6, 32, 32))
    raw = np.random.default_rng(0).random(lab.shape, dtype=np.float32)
    raw0, lab0 = raw.copy(), lab.copy()
    a = _call(f, raw, lab, np.random.default_rng(7))
    b = _call(f, raw, lab, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(raw, raw0)
    np.testing.assert_array_equal(lab, lab0)
    outs = {_call(f, raw, lab, np.random.default_rng(s))[0].tobytes() for s in range(6)}
    assert len(outs) > 1


LAYOUTS = [  # raw shape, raw dtype, labels, voxel size
    ((6, 24, 24), np.float32, "one", (30, 6, 6)),
    ((2, 6, 24, 24), np.float64, "list", (30, 6, 6)),
    ((6, 24, 24), np.float32, None, (8, 8, 8)),
    ((24, 24), np.float32, "one", (6, 6)),
    ((3, 24, 24), np.float32, "list", (6, 6)),  # (c, y, x)
]


@pytest.mark.parametrize("shape, dtype, kind, vs", LAYOUTS)
@pytest.mark.parametrize("f", ALL, ids=lambda f: f.__name__)
def test_shapes_dtypes_and_label_containers_kept(f, shape, dtype, kind, vs):
    spatial = shape[-len(vs):]
    raw = np.random.default_rng(0).random(shape).astype(dtype)
    lab = _blocks(spatial).astype(np.uint64)
    labels = {None: None, "one": lab,
              "list": [lab, np.stack([lab, lab]).astype(np.float32), lab.astype(bool)]}[kind]
    r, l = _call(f, raw, labels, np.random.default_rng(1), vs)
    assert r.shape == raw.shape and r.dtype == raw.dtype and r.flags.c_contiguous
    if kind is None:
        assert l is None
    elif kind == "one":
        assert isinstance(l, np.ndarray) and l.shape == lab.shape and l.dtype == lab.dtype
    else:
        assert isinstance(l, list) and [(a.shape, a.dtype) for a in l] == [(a.shape, a.dtype) for a in labels]


@pytest.mark.parametrize("shape, dtype, kind, vs", LAYOUTS)
def test_augmenter_all_transforms_on_every_layout(shape, dtype, kind, vs):
    raw = np.random.default_rng(0).random(shape).astype(dtype)
    lab = _blocks(shape[-len(vs):])
    a = Augmenter(vs, p={name: 1.0 for name in DEFAULT_P}, seed=0)
    for _ in range(3):
        r, l = a(raw, lab)
        assert (r.shape, r.dtype, l.shape, l.dtype) == (raw.shape, raw.dtype, lab.shape, lab.dtype)
        assert np.isfinite(r).all()


def test_augmenter_is_deterministic():
    lab = _blocks((8, 32, 32))
    raw = np.random.default_rng(0).random(lab.shape, dtype=np.float32)
    runs = []
    for seed in (0, 0, 1):
        a = Augmenter((30, 6, 6), seed=seed)
        runs.append([a(raw, lab) for _ in range(4)])
    for (r0, l0), (r1, l1) in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(r0, r1)
        np.testing.assert_array_equal(l0, l1)
    assert any(not np.array_equal(r0, r2) for (r0, _), (r2, _) in zip(runs[0], runs[2]))
    # an explicit rng (one per worker) gives the same result whatever the Augmenter's own state
    a = Augmenter((30, 6, 6), seed=5)
    x = a(raw, lab, rng=np.random.default_rng([3, 1]))
    a(raw, lab)
    y = a(raw, lab, rng=np.random.default_rng([3, 1]))
    np.testing.assert_array_equal(x[0], y[0])
    np.testing.assert_array_equal(x[1], y[1])


def test_augmenter_config_and_probabilities():
    a = Augmenter.from_config({"voxel_size": [30, 6, 6], "p": {"elastic": 0.0, "gamma": 1.0},
                               "params": {"gaussian_noise": {"std": (0.2, 0.3)}}, "seed": 3})
    assert a.p["elastic"] == 0 and a.p["gamma"] == 1
    assert a.p["missing_section"] == DEFAULT_P["missing_section"]
    assert a.params["gaussian_noise"]["std"] == (0.2, 0.3) and a.params["elastic"]["alpha_nm"] == 12
    off = Augmenter((30, 6, 6), p={name: 0.0 for name in DEFAULT_P})
    raw = np.random.default_rng(0).random((4, 16, 16), dtype=np.float32)
    r, l = off(raw, None)
    np.testing.assert_array_equal(r, raw)
    assert l is None


def test_bad_input_raises_clear_errors():
    raw = np.zeros((4, 16, 16), np.float32)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"labels\[0\] has shape \(4, 16, 15\)"):
        aug.gamma(raw, np.zeros((4, 16, 15), np.uint8), rng)
    with pytest.raises(ValueError, match=r"labels\[1\]"):
        aug.rotate_scale(raw, [np.zeros((4, 16, 16), int), np.zeros((3, 16, 16), int)], rng)
    with pytest.raises(ValueError, match="raw of shape"):
        aug.gamma(np.zeros((2, 2, 4, 16, 16), np.float32), None, rng)
    with pytest.raises(TypeError, match="floating point"):
        aug.gamma(raw.astype(np.uint8), None, rng)
    with pytest.raises(TypeError, match="rng"):
        aug.gamma(raw, None, None)
    with pytest.raises(ValueError, match="sigma"):
        aug.gaussian_blur(raw, None, rng, sigma=-1)
    with pytest.raises(ValueError, match="sigma"):
        aug.gaussian_blur(raw, None, rng, sigma=(2, 1))
    with pytest.raises(ValueError, match="sigma_nm"):
        aug.elastic(raw, None, rng, 10, -5, (30, 6, 6))
    with pytest.raises(ValueError, match="voxel_size"):
        aug.elastic(raw, None, rng, 10, 50, (30, 0, 6))
    with pytest.raises(ValueError, match="disagrees"):
        aug.random_flip_rotate(raw, None, rng, (30, 6, 6), ndim=2)
    with pytest.raises(ValueError, match="mode"):
        aug.misalignment(raw, None, rng, mode="shift")
    with pytest.raises(ValueError, match="factor"):
        aug.low_contrast_section(raw, None, rng, factor=0)
    with pytest.raises(ValueError, match=r"p\['gamma'\] must be a probability"):
        Augmenter((30, 6, 6), p={"gamma": 1.5})
    with pytest.raises(ValueError, match=r"p\['gamma'\] must be a probability"):
        Augmenter((30, 6, 6), p={"gamma": -0.1})
    with pytest.raises(ValueError, match="unknown transforms.*valid"):
        Augmenter((30, 6, 6), p={"flip": 0.5})
    with pytest.raises(ValueError, match="unknown keys.*valid"):
        Augmenter((30, 6, 6), params={"gamma": {"sigma": 1}})
    with pytest.raises(ValueError, match="voxel_size"):
        Augmenter((30, -6, 6))
    with pytest.raises(ValueError, match="voxel_size must be 2 or 3 positive numbers"):
        Augmenter(None)
    with pytest.raises(ValueError, match="config needs 'voxel_size'"):
        Augmenter.from_config({"p": {}})
    with pytest.raises(ValueError, match=r"params\['gaussian_blur'\]: sigma"):  # checked up front
        Augmenter((30, 6, 6), params={"gaussian_blur": {"sigma": -1}})
    with pytest.raises(ValueError, match=r"params\['misalignment'\]: mode"):
        Augmenter((30, 6, 6), params={"misalignment": {"mode": "shift"}})
