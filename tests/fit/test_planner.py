"""The planner's rules on fingerprints alone: no data is read and nothing is trained or timed."""

import dataclasses

import pytest

from emseg.fit import Fingerprint
from emseg.fit.plan_file import plan_yaml, write_plan
from emseg.fit.planner import MIN_STEPS, plan_training, receptive_field, with_steps
from emseg.train import TrainConfig, load_config

ANISO = (50.0, 4.0, 4.0)  # ssTEM
ISO = (10.0, 10.0, 10.0)  # FIB-SEM


def fingerprint(voxel_size=ANISO, shape=(64, 512, 512), kind="instances", touching=0.0, p90=(8, 40, 40),
                foreground=0.1, objects=20, sections=None):
    """A Fingerprint as :func:`emseg.fit.fingerprint` would measure it, made up."""
    return Fingerprint(
        shape=shape, voxel_size=voxel_size, dtype="uint8",
        intensity={"p0.5": 10.0, "p1": 20.0, "p50": 128.0, "p99": 230.0, "p99.5": 240.0},
        labels_kind=kind, kind_reason="made up for a test", foreground_fraction=foreground, objects=objects,
        object_extent=tuple(max(1, v // 2) for v in p90), object_extent_p90=p90,
        object_diameter_nm=(100.0, 200.0, 400.0), touching=None if kind in ("mask", "membranes") else touching,
        labelled_sections=sections or ((0, shape[0]),),
        crop=((0, shape[0]), (0, shape[1]), (0, shape[2])))


def neurons(voxel_size=ANISO):
    return fingerprint(voxel_size, kind="neurons", touching=1.0, foreground=1.0)


def _voxels_per_step(config):
    n = config.batch_size
    for s in config.patch_shape:
        n *= s
    return n


# (a) anisotropic voxels: never pool or rotate z with y/x early

def test_anisotropic_voxels_plan_2d_on_sections_with_in_plane_rotations():
    plan = plan_training(fingerprint(ANISO))
    c = plan.config
    assert len(c.patch_shape) == 2 and "pool_sizes" not in c.model and "kernel_sizes" not in c.model
    assert c.augment["rotate90"] == "yx"
    assert plan.reasons["dims"].startswith("2D on sections") and "12.5x coarser" in plan.reasons["dims"]
    assert "not 2.5D: --context 1 scored no better" in plan.reasons["dims"] and c.context == 0  # measured
    assert c.voxel_size == ANISO


def test_anisotropic_neurons_plan_anisotropic_3d_without_early_z_pooling():
    plan = plan_training(neurons(ANISO))
    c = plan.config
    assert len(c.patch_shape) == 3
    assert plan.reasons["dims"].startswith("anisotropic 3D")
    pools, kernels = c.model["pool_sizes"], c.model["kernel_sizes"]
    assert pools[0][0] == 1 and pools[1][0] == 1, pools          # z not pooled in the first stages
    assert all(p[1] == p[2] == 2 for p in pools[:2]), pools     # y and x are
    assert kernels[0][0] == 1, kernels                           # nor convolved across sections at 50 nm
    assert c.augment["rotate90"] == "yx"                         # no rotation mixes z with y/x
    assert c.augment.get("missing_section") and c.augment.get("misalignment")


def test_anisotropic_3d_plan_sees_more_than_one_section():
    c = plan_training(neurons(ANISO)).config
    rf = receptive_field(c.model["kernel_sizes"], c.model["pool_sizes"])
    assert rf[0] >= 3, rf


# (b) isotropic voxels: 3D where it pays, else 2D with the reason

@pytest.mark.parametrize("fp, options, why", [
    (fingerprint(ISO, kind="mask", touching=None), dict(device="cuda"), "a GPU"),
    (fingerprint(ISO, kind="mask", touching=None), dict(minutes=120), "120 minutes"),
    (neurons(ISO), dict(minutes=30), "dense neuron labels"),
])
def test_isotropic_voxels_plan_isotropic_3d(fp, options, why):
    plan = plan_training(fp, **options)
    c = plan.config
    assert len(c.patch_shape) == 3
    assert plan.reasons["dims"].startswith("3D") and why in plan.reasons["dims"]
    assert all(p == [2, 2, 2] for p in c.model["pool_sizes"]), c.model["pool_sizes"]
    assert all(k == [3, 3, 3] for k in c.model["kernel_sizes"])
    assert c.augment["rotate90"] == "zyx"


def test_isotropic_voxels_on_a_short_cpu_budget_plan_2d_and_say_why():
    plan = plan_training(fingerprint(ISO, kind="mask", touching=None), minutes=30, device="cpu")
    assert len(plan.config.patch_shape) == 2
    why = plan.reasons["dims"]
    assert why.startswith("2D on sections although the voxels are isotropic")
    assert "CPU" in why and "30 minutes" in why and "--device cuda" in why and "--minutes 120" in why


def test_few_labelled_sections_plan_2d():
    plan = plan_training(fingerprint(ISO, kind="mask", touching=None, sections=((10, 14),)), device="cuda")
    assert len(plan.config.patch_shape) == 2 and "only 4 consecutive labelled section" in plan.reasons["dims"]


# (c) the target follows the labels

def test_many_touching_instances_get_contour_and_distance():
    plan = plan_training(fingerprint(touching=0.5))
    assert plan.config.target == "bcd" and "50% of the objects touch" in plan.reasons["target"]


def test_few_touching_instances_get_contour_only():
    plan = plan_training(fingerprint(touching=0.02))
    assert plan.config.target == "bc" and "2% touch" in plan.reasons["target"]


def test_membrane_labels_get_the_boundary_target():
    plan = plan_training(fingerprint(kind="membranes", foreground=0.2, touching=None))
    assert plan.config.target == "boundary" and plan.config.foreground_fraction == 0.0


def test_neuron_labels_get_long_range_affinities():
    c = plan_training(neurons(ANISO)).config
    assert c.target == "affinities"
    offsets = [tuple(o) for o in c.offsets]
    assert {(-1, 0, 0), (0, -1, 0), (0, 0, -1)} <= set(offsets)       # nearest neighbours
    assert {(0, -3, 0), (0, 0, -3), (0, -9, 0), (0, 0, -9)} <= set(offsets)  # long range in-plane
    assert max(abs(o[0]) for o in offsets) == 1                        # 50 nm sections: one step in z
    iso = [tuple(o) for o in plan_training(neurons(ISO)).config.offsets]
    assert (-9, 0, 0) in iso and (0, 0, -9) in iso


def test_a_membrane_init_model_keeps_its_boundary_output_on_neuron_ids(tmp_path):
    boundary = ("boundary", {"convention": "isbi"})
    plan = plan_training(neurons(ISO), init_task=boundary, raw="raw.zarr", labels="labels.zarr")
    c = plan.config
    assert c.target == "boundary" and c.target_params == {"convention": "instances"} and c.task_params == {
        "convention": "instances"}
    assert "as the --init membrane model" in plan.reasons["target"]
    assert load_config(write_plan(plan, str(tmp_path / "plan.yaml"))) == c  # the convention is written
    assert plan_training(neurons(ISO), init_task=("bc", {})).config.target == "affinities"  # another head
    membranes = fingerprint(kind="membranes", foreground=0.2, touching=None)
    assert plan_training(membranes, init_task=boundary).config.target_params == {}  # ISBI labels: the default


def test_a_mask_of_separate_objects_gets_bc_and_a_single_region_binary():
    assert plan_training(fingerprint(kind="mask", objects=12, foreground=0.1)).config.target == "bc"
    assert plan_training(fingerprint(kind="mask", objects=1, foreground=0.6)).config.target == "binary"


# (d) a tiny budget: a small network, not an error

def test_a_tiny_budget_gives_a_small_network():
    fp = fingerprint()
    tiny, normal = plan_training(fp, minutes=0.01), plan_training(fp, minutes=30)
    assert tiny.config.model["features"] == 4
    assert _voxels_per_step(tiny.config) < _voxels_per_step(normal.config)
    assert tiny.config.steps >= 1 and tiny.config.max_minutes == 0.01
    assert "a smaller network" in tiny.reasons["model"]


def test_steps_follow_the_minutes_and_a_measured_step_time():
    plan = plan_training(fingerprint(), minutes=10, seconds_per_step=0.5)
    assert plan.config.steps == 1200 and plan.measured and "measured here" in plan.reasons["steps"]
    again = with_steps(plan, 0.25, 10)
    assert again.config.steps == 2400 and again.config.model == plan.config.model
    assert again.config.warmup_steps == min(100, 2400 // 50)


def test_bad_minutes_are_refused():
    for bad in (0, -1, float("inf"), "5"):
        with pytest.raises(ValueError, match="--minutes"):
            plan_training(fingerprint(), minutes=bad)


def test_a_given_validation_part_is_kept_and_few_sections_hold_nothing_out():
    assert plan_training(fingerprint(), val_roi="3:9").config.val_roi == "3:9"
    for sections in (((5, 6),), ((5, 6), (9, 10))):
        few = dataclasses.replace(fingerprint(), labelled_sections=sections)
        plan = plan_training(few)
        assert plan.config.val_roi is None and plan.config.val_patches == 0
        assert plan.reasons["val_roi"].startswith(f"nothing held out: only {len(sections)} labelled section(s)")
    three = dataclasses.replace(fingerprint(), labelled_sections=((2, 3), (5, 6), (9, 10)))
    assert plan_training(three).config.val_roi == "9:10"


# (e) receptive field: r += (k - 1) * jump per convolution and (p - 1) * jump per pooling window

@pytest.mark.parametrize("kernels, pools, rf", [
    ([(3, 3)] * 5, [(2, 2)] * 4, (200, 200)),
    ([(3, 3)] * 2, [(2, 2)], (18, 18)),
    ([(3, 3)], [], (5, 5)),
    ([(1, 3, 3), (3, 3, 3)], [(1, 2, 2)], (5, 18, 18)),
    ([(1, 3, 3), (1, 3, 3), (3, 3, 3)], [(1, 2, 2), (1, 2, 2)], (5, 44, 44)),
])
def test_receptive_field(kernels, pools, rf):
    assert receptive_field(kernels, pools) == rf


def test_receptive_field_doctest_matches_the_function():
    import doctest

    from emseg.fit import planner

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(verbose=False)
    for test in finder.find(planner.receptive_field, "receptive_field", globs={"receptive_field": receptive_field}):
        runner.run(test, out=lambda _: None)
    assert runner.failures == 0


# (f) the plan file

@pytest.mark.parametrize("fp", [fingerprint(), neurons(ANISO), fingerprint(voxel_size=None)],
                         ids=["2d-bc", "3d-affinities", "no-voxel-size"])
def test_plan_yaml_reads_back_as_the_planned_config(fp, tmp_path):
    plan = plan_training(fp, raw="raw.zarr", labels="labels.zarr", out_dir="runs/x")
    path = write_plan(plan, str(tmp_path / "plan.yaml"))
    assert load_config(path) == plan.config


def test_every_planned_field_with_a_reason_carries_it_as_a_comment():
    plan = plan_training(neurons(ANISO), raw="raw.zarr", labels="labels.zarr")
    text = plan_yaml(plan)
    lines = {line.split(":", 1)[0]: line for line in text.splitlines() if line and not line.startswith("#")}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    explained = [k for k in plan.reasons if k in fields]
    assert len(explained) >= 12, explained
    for name in explained:
        assert name in lines, f"{name} is not in the plan file"
        assert lines[name].endswith(f"  # {plan.reasons[name]}"), lines[name]
    assert f"# dimensionality: {plan.reasons['dims']}" in text
    assert "offsets:" in text  # affinities: the offsets are written
    assert "# one step:" in text and "(estimated)" in text


def test_plan_notes_are_in_the_header():
    plan = plan_training(fingerprint(voxel_size=None, sections=((10, 50),)))  # held out: 44-49; trained: 0-43
    text = plan_yaml(plan)
    assert plan.config.val_roi == "44:50"
    assert any("voxel size" in n for n in plan.notes) and any("10 of the 44 training sections" in n for n in plan.notes)
    for note in plan.notes:
        assert f"# NOTE: {note}" in text


def test_min_steps_is_reached_when_the_budget_allows():
    assert plan_training(fingerprint(), minutes=30).config.steps >= MIN_STEPS


def test_unlabelled_sections_in_the_training_part_of_membrane_labels_are_refused():
    """0 = membrane: an unlabelled section would teach 'all membrane'."""
    fp = dataclasses.replace(fingerprint(), labels_kind="membranes", labelled_sections=((10, 50),))
    with pytest.raises(ValueError, match="10 of the 44 sections .* hold no labels.*all membrane"):
        plan_training(fp)


def test_the_held_out_part_is_taken_from_the_last_labelled_range():
    fp = dataclasses.replace(fingerprint(), labelled_sections=((0, 20), (30, 60)))
    plan = plan_training(fp)
    assert plan.config.val_roi.endswith(":60")  # training keeps both labelled ranges before it


def test_a_2d_image_holds_out_rows():
    fp = dataclasses.replace(fingerprint(), shape=(1, 512, 512), ndim=2, labelled_sections=((0, 1),))
    plan = plan_training(fp)
    assert plan.config.val_roi == f"{512 - 77}:512" and len(plan.config.patch_shape) == 2
    assert "rows" in plan.reasons["val_roi"] and plan.reasons["dims"].startswith("2D")


def test_nearly_isotropic_3d_rotates_only_equal_axes():
    fp = dataclasses.replace(fingerprint(), voxel_size=(10.0, 8.0, 8.0), labels_kind="neurons", touching=1.0)
    plan = plan_training(fp, device="cuda")
    assert plan.config.augment["rotate90"] is True  # check_augment accepted it: zyx would be refused here


def test_a_3d_plan_on_few_sections_keeps_the_patch_inside_them():
    fp = dataclasses.replace(fingerprint(), voxel_size=(10.0, 10.0, 10.0), labels_kind="neurons", touching=1.0,
                             shape=(30, 256, 256), labelled_sections=((0, 30),))
    plan = plan_training(fp)
    z0, z1 = (int(v) for v in plan.config.val_roi.split(":"))
    assert plan.config.patch_shape[0] <= z0  # the training part holds a whole patch
