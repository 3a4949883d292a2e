"""The training config's ``augment``: true is exactly the default Augmenter, false is none, a mapping
changes what it says and nothing else, a bad key or value fails in one line naming it, and the value
survives YAML, ``--set`` and JSON (checkpoints, the run's signature)."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from emseg.config import ConfigError
from emseg.train import TrainConfig, load_config
from emseg.train.augment import AUGMENT_OPTIONS, DEFAULT_P, Augmenter, build_augmenter, check_augment

TRANSFORMS = [k for k in AUGMENT_OPTIONS if k not in ("flip", "rotate90")]
NOTHING = {"flip": False, "rotate90": False, **dict.fromkeys(TRANSFORMS, False)}


def _patch(shape=(6, 24, 24), seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.random(shape, dtype=np.float32) + 1  # no zeros: a blanked voxel is visible
    return raw, (raw > 1.5).astype(np.uint8)


def _same_outputs(a, b, raw, lab, calls=12):
    for _ in range(calls):
        (r0, l0), (r1, l1) = a(raw, lab), b(raw, lab)
        if r0.tobytes() != r1.tobytes() or l0.tobytes() != l1.tobytes():
            return False
    return True


# ---------------------------------------------------------------- true, false and the defaults
@pytest.mark.parametrize("voxel_size, ndim, shape", [
    ([30.0, 6.0, 6.0], 3, (6, 24, 24)),
    ([8, 8, 8], 3, (8, 8, 8)),
    (None, 3, (6, 24, 24)),        # unknown: isotropic
    (None, 2, (24, 24)),
    ([30.0, 6.0, 6.0], 2, (24, 24)),  # a 2D model on sections: the last two numbers
])
def test_true_is_exactly_the_old_default(voxel_size, ndim, shape):
    """``augment: true`` gives what the trainer built before the option existed:
    ``Augmenter(voxel_size=vs, seed=seed)`` with vs = voxel_size[-ndim:] or isotropic."""
    raw, lab = _patch(shape)
    vs = voxel_size[-ndim:] if voxel_size else [1.0] * ndim
    for seed in (0, 7):
        old = Augmenter(voxel_size=vs, seed=seed)
        new = build_augmenter(True, voxel_size, seed, ndim=ndim)
        assert (new.voxel_size, new.p, new.params) == (old.voxel_size, old.p, old.params)
        assert _same_outputs(old, new, raw, lab)
        # explicit per-call generators (the trainer's way) too
        x = old(raw, lab, rng=np.random.default_rng([seed, 3]))
        y = new(raw, lab, rng=np.random.default_rng([seed, 3]))
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])


def test_mappings_that_say_the_defaults_are_the_defaults():
    raw, lab = _patch()
    default = {"flip": True, "rotate90": True, **{k: DEFAULT_P[k] for k in TRANSFORMS}}
    for augment in ({}, {"flip": True, "rotate90": True}, dict.fromkeys(TRANSFORMS, True), default):
        assert _same_outputs(build_augmenter(True, [30, 6, 6], 1), build_augmenter(augment, [30, 6, 6], 1), raw, lab)


def test_false_is_no_augmenter():
    assert build_augmenter(False, [30, 6, 6], 0) is None
    assert build_augmenter(False, None, 0, ndim=2) is None
    assert TrainConfig(augment=False).augment is False


def test_voxel_size_and_ndim_are_checked():
    with pytest.raises(ValueError, match="needs a voxel_size or ndim"):
        build_augmenter(True, None, 0)
    with pytest.raises(ValueError, match=r"voxel_size \[6, 6\] has 2 numbers but the patches have 3 spatial axes"):
        build_augmenter(True, [6, 6], 0, ndim=3)
    for augment in (True, {"rotate90": "zyx"}):  # not taken for anisotropy
        with pytest.raises(ValueError, match=r"voxel_size must be 2 or 3 positive numbers.*\[0, 6, 6\]"):
            build_augmenter(augment, [0, 6, 6], 0)


# ---------------------------------------------------------------- each option does what it says
def _only(**options):
    """An augmenter doing nothing but ``options``, on isotropic voxels."""
    return build_augmenter({**NOTHING, **options}, [8, 8, 8], 0)


def test_nothing_switched_on_changes_nothing():
    raw, lab = _patch()
    a = _only()
    assert all(p == 0 for p in a.p.values())
    for _ in range(5):
        r, l = a(raw, lab)
        np.testing.assert_array_equal(r, raw)
        np.testing.assert_array_equal(l, lab)


def test_flip_false_draws_no_flips():
    raw = np.fromfunction(lambda z, y, x: 100 * z + 10 * y + x, (3, 3, 3), dtype=np.float32)
    a, b = _only(flip=False, rotate90=True), _only(flip=True, rotate90=True)
    outs = [a(raw)[0] for _ in range(200)]
    assert all(o[0, 0, 0] == 0 for o in outs)  # a flip would move the origin
    assert len({o.tobytes() for o in outs}) == 6  # but every transpose is drawn
    assert any(b(raw)[0][0, 0, 0] != 0 for _ in range(50))
    assert build_augmenter({"flip": False}, [30, 6, 6], 0).params["random_flip_rotate"]["flip"] is False


def test_rotate90_false_draws_no_transposes():
    raw = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    a = _only(flip=True, rotate90=False)
    outs = {a(raw)[0].tobytes() for _ in range(200)}
    flips = {raw[tuple(slice(None, None, -1 if f else 1) for f in fl)].tobytes() for fl in np.ndindex(2, 2, 2)}
    assert outs == flips


def test_rotate90_yx_and_zyx():
    raw = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    for rotate90, n in (("yx", 16), ("zyx", 48), (True, 48)):
        a = _only(flip=True, rotate90=rotate90)
        assert len({a(raw)[0].tobytes() for _ in range(600)}) == n


def test_rotate90_zyx_cannot_mix_z_with_yx_on_anisotropic_voxels():
    with pytest.raises(ConfigError, match=r"^augment.rotate90 zyx .* voxel_size \(30.0, 6.0, 6.0\) is anisotropic"):
        build_augmenter({"rotate90": "zyx"}, [30, 6, 6], 0)
    with pytest.raises(ConfigError, match="anisotropic"):  # known at config time: refused at once
        TrainConfig(augment={"rotate90": "zyx"}, voxel_size=(30, 6, 6), patch_shape=(8, 32, 32))
    with pytest.raises(ConfigError, match="anisotropic"):  # a 2D model on anisotropic pixels
        build_augmenter({"rotate90": "zyx"}, [30, 6, 12], 0, ndim=2)
    cfg = TrainConfig(augment={"rotate90": "zyx"}, patch_shape=(8, 32, 32))  # voxel size from the data, later
    assert build_augmenter(cfg.augment, None, 0, ndim=3) is not None  # unknown: taken as isotropic
    assert build_augmenter(cfg.augment, [8, 8, 8], 0) is not None
    assert build_augmenter(cfg.augment, [30, 6, 6], 0, ndim=2) is not None  # yx only: isotropic in-plane
    # true never mixes z with y/x on anisotropic voxels, even on a cube of voxels
    raw = np.fromfunction(lambda z, y, x: 100 * z + 10 * y + x, (4, 4, 4), dtype=np.float32)
    a = build_augmenter({**NOTHING, "flip": True, "rotate90": True}, [30, 6, 6], 0)
    for _ in range(100):
        r = a(raw)[0]
        assert all(len(np.unique(r[z] // 100)) == 1 for z in range(4))


def test_probabilities_switch_transforms():
    a = build_augmenter({"elastic": 0.0, "missing_section": 0.1, "gamma": True, "motion_blur": False}, [30, 6, 6], 0)
    assert [a.p[k] for k in ("elastic", "missing_section", "gamma", "motion_blur")] == [0, 0.1, DEFAULT_P["gamma"], 0]
    assert {k: v for k, v in a.p.items() if k not in ("elastic", "missing_section", "motion_blur")} == \
        {k: v for k, v in DEFAULT_P.items() if k not in ("elastic", "missing_section", "motion_blur")}
    raw, lab = _patch()
    always = _only(missing_section=1.0)
    for _ in range(10):
        r, l = always(raw, lab)
        assert 1 <= sum((r[z] == 0).all() for z in range(6)) <= 2  # the default n_sections (1, 2)
        np.testing.assert_array_equal(l, lab)


def test_magnitudes_reach_the_transforms():
    raw, lab = _patch()
    a = _only(missing_section={"p": 1, "n_sections": [2, 2], "value": 0.5})
    assert a.params["missing_section"]["n_sections"] == [2, 2]
    for _ in range(5):
        r, _ = a(raw, lab)
        assert sum((r[z] == 0.5).all() for z in range(6)) == 2
    still = _only(elastic={"p": 1, "alpha_nm": 0})  # no displacement: raw is sampled where it is
    moved = _only(elastic={"p": 1})
    assert moved.params["elastic"]["alpha_nm"] == 16  # the default: 2 in-plane voxels
    for _ in range(3):
        np.testing.assert_array_equal(still(raw, lab)[0], raw)
        assert not np.array_equal(moved(raw, lab)[0], raw)
    noisy = build_augmenter({"gaussian_noise": {"std": [0.5, 0.5]}}, [30, 6, 6], 0)
    assert noisy.p["gaussian_noise"] == DEFAULT_P["gaussian_noise"]  # only the magnitude changed
    assert noisy.params["gaussian_noise"]["std"] == [0.5, 0.5]


# ---------------------------------------------------------------- bad keys and values
@pytest.mark.parametrize("override, expected", [
    ("augment.flips=false", "augment has unknown option.*flips; valid options: flip, rotate90, rotate_scale, "),
    ("augment.random_flip_rotate=0.5", "unknown option.*random_flip_rotate; valid options: flip"),
    ("augment.flip=1", r"augment.flip must be true or false; got 1"),
    ("augment.rotate90=xy", "augment.rotate90 must be true .*, false, yx .* or zyx .*; got 'xy'"),
    ("augment.elastic=1.5", r"augment.elastic must be a probability in \[0, 1\], true, false or a mapping of "
                            r"p, alpha_nm, sigma_nm; got 1.5"),
    ("augment.missing_section=-0.1", r"augment.missing_section must be a probability in \[0, 1\].*; got -0.1"),
    ("augment.gamma=fast", r"augment.gamma must be a probability.*; got 'fast'"),
    ("augment.gamma=[0.5]", r"augment.gamma must be a probability.*; got \[0.5\]"),
    ("augment.gamma={p: 2}", r"augment.gamma.p must be a probability in \[0, 1\]; got 2"),
    ("augment.elastic={alpha: 3}", "augment.elastic has unknown option.*alpha; valid options: p, alpha_nm, sigma_nm"),
    ("augment.gaussian_blur={sigma: -1}", r"augment.gaussian_blur.sigma must be a number or a \(min, max\) pair "
                                          r"with 0.0 <= min <= max <= inf; got -1"),
    ("augment.motion_blur={length: [9, 5]}", r"augment.motion_blur.length must be .*; got \[9, 5\]"),
    ("augment.misalignment={mode: shift}", r"augment.misalignment.mode must be one of \('random', 'slip', 'step'\)"),
    ("augment.low_contrast_section={factor: 0}", r"augment.low_contrast_section.factor must be in \(0, 1\]"),
    ("augment=7", "augment must be true or false, or a mapping of options"),
])
def test_bad_keys_and_values_fail_in_one_line(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert err.value.key == "augment" and "\n" not in str(err.value)
    assert str(err.value).startswith(f"--set {override}: ")  # where it came from
    assert re.search(expected, str(err.value)), str(err.value)


def test_bad_values_from_a_file_name_the_file(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("augment:\n  flip: false\n  missing_section: 2\n")
    with pytest.raises(ConfigError, match=rf"^{path}: augment.missing_section must be a probability"):
        load_config(path)


def test_check_augment_raises_configerror_directly():
    with pytest.raises(ConfigError, match="^augment has unknown option"):
        check_augment({1: 0.5})
    assert check_augment(True) is True and check_augment({}) == {}


# ---------------------------------------------------------------- YAML, --set, JSON
def test_yaml_set_and_json_round_trip(tmp_path):
    assert load_config(overrides=["augment.flip=false"]).augment == {"flip": False}
    path = tmp_path / "train.yaml"
    path.write_text("augment: {flip: true, rotate90: false, elastic: 0.0, missing_section: 0.1,\n"
                    "          gamma: {p: 1, gamma: [0.5, 2]}}\n")
    cfg = load_config(path, overrides=["augment.flip=false", "augment.elastic={p: 0.5, alpha_nm: 12}"])
    expected = {"flip": False, "rotate90": False, "elastic": {"p": 0.5, "alpha_nm": 12}, "missing_section": 0.1,
                "gamma": {"p": 1.0, "gamma": [0.5, 2]}}
    assert cfg.augment == expected and type(cfg.augment) is dict
    stored = json.loads(json.dumps(cfg.as_dict()))  # as a checkpoint and run.json keep it
    assert stored["augment"] == expected
    again = TrainConfig(**{k: v for k, v in stored.items()})
    assert again.augment == cfg.augment and again.as_dict() == cfg.as_dict()
    a, b = build_augmenter(cfg.augment, [30, 6, 6], 0), build_augmenter(again.augment, [30, 6, 6], 0)
    raw, lab = _patch()
    assert _same_outputs(a, b, raw, lab, calls=4)
    assert load_config(overrides=["augment=false"]).augment is False
    assert load_config().augment is True


def test_the_stored_value_is_normalised_and_independent_of_the_input():
    given = {"elastic": 0, "gamma": {"p": 1, "gamma": (0.5, 2)}}
    cfg = TrainConfig(augment=given)
    assert cfg.augment == {"elastic": 0.0, "gamma": {"p": 1.0, "gamma": [0.5, 2]}}
    assert isinstance(cfg.augment["elastic"], float)
    given["gamma"]["p"] = 0.0
    assert cfg.augment["gamma"]["p"] == 1.0  # a copy, not the caller's dict


def test_checking_the_config_does_not_import_torch():
    code = ("import sys; from emseg.train.config import TrainConfig; "
            "TrainConfig(augment={'flip': False, 'gamma': {'p': 1}}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
