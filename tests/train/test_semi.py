"""Semi-supervised training (``semi: mean_teacher``): the teacher is an exact EMA of the student, the
consistency loss counts only confident voxels, a semi-supervised run resumes to the same losses and
weights, and unlabelled volumes of their own are read."""

import csv
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from emseg.config import ConfigError
from emseg.io import write_volume
from emseg.synthetic import synthetic_em
from emseg.train import load_config, train
from emseg.train.semi import consistency_loss, ema_update, make_teacher


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("semi")
    em = synthetic_em((8, 64, 64), seed=6)
    write_volume(f"{tmp}/em.h5:raw", em.raw, voxel_size=em.voxel_size)
    write_volume(f"{tmp}/em.h5:mito", em.mito, voxel_size=em.voxel_size)
    other = synthetic_em((6, 48, 48), seed=7)
    write_volume(f"{tmp}/other.h5:raw", (other.raw * 0.5 + 40).astype(np.float32), voxel_size=other.voxel_size)
    return f"{tmp}/em.h5", tmp


def _config(data, out, **kw):
    base = dict(raw=[f"{data}:raw"], labels=[f"{data}:mito"], patch_shape=[32, 32], batch_size=2, val_fraction=0.0,
                model={"features": 4, "depth": 2}, steps=4, val_every=2, threads=1, out_dir=str(out), warmup_steps=1,
                device="cpu", semi="mean_teacher", sections=[3, 5], ema_decay=0.9, consistency_rampup=0.0,
                confidence=0.5)
    base.update(kw)
    return load_config(**base)


def _losses(out):
    with open(os.path.join(out, "log.csv")) as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_ema_update_is_the_moving_average():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    teacher = make_teacher(student)
    t0 = {k: v.clone() for k, v in teacher.state_dict().items()}
    seen = []
    for _ in range(3):
        with torch.no_grad():
            for p in student.parameters():
                p.add_(torch.randn_like(p))
            student[1].running_mean.add_(1.0)
            student[1].num_batches_tracked.add_(1)
        seen.append({k: v.clone() for k, v in student.state_dict().items()})
        ema_update(teacher, student, 0.8)
    for k, v in teacher.state_dict().items():
        if v.is_floating_point():
            expected = 0.8 ** 3 * t0[k] + 0.2 * (0.8 ** 2 * seen[0][k] + 0.8 * seen[1][k] + seen[2][k])
            assert torch.allclose(v, expected, atol=1e-6), k
        else:
            assert torch.equal(v, seen[-1][k])
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


def test_the_run_teacher_is_an_exact_ema_of_the_students_steps(data, monkeypatch):
    import emseg.train.semi as semi

    path, tmp = data
    students, update = [], semi.ema_update

    def record(teacher, student, decay):
        students.append({k: v.detach().clone() for k, v in student.state_dict().items()})
        update(teacher, student, decay)

    first = {}
    make = semi.make_teacher

    def keep_first(model):
        first.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return make(model)

    monkeypatch.setattr(semi, "ema_update", record)
    monkeypatch.setattr(semi, "make_teacher", keep_first)
    train(_config(path, tmp / "ema", val_every=4))
    teacher = load_file(str(tmp / "ema" / "teacher.safetensors"))
    assert len(students) == 4
    for k, v in teacher.items():
        if not v.is_floating_point():  # BatchNorm's batch count: the student's
            assert torch.equal(v, students[-1][k])
            continue
        expected = first[k].float()
        for s in students:
            expected = 0.9 * expected + 0.1 * s[k].float()
        assert torch.allclose(v.float(), expected, atol=1e-5), k


def test_consistency_counts_only_confident_voxels():
    teacher = torch.tensor([[[[3.0, 0.2, -3.0, -0.1]]]])  # p = 0.95, 0.55, 0.05, 0.48
    student = torch.zeros_like(teacher, requires_grad=True)
    loss, share = consistency_loss(student, teacher, [0], 0.9)
    assert share == 0.5 and loss.item() == pytest.approx(np.log(2))  # BCE of p=0.5 towards 1 and 0
    loss.backward()
    assert student.grad[0, 0, 0, 1] == 0 and student.grad[0, 0, 0, 3] == 0 and student.grad[0, 0, 0, 0] < 0


def test_a_scheduled_confidence_moves_from_start_to_confidence_over_the_rampup(data, monkeypatch):
    import emseg.train.semi as semi

    path, tmp = data
    seen, loss = [], semi.consistency_loss

    def record(student, teacher, channels, confidence):
        seen.append(round(confidence, 6))
        return loss(student, teacher, channels, confidence)

    monkeypatch.setattr(semi, "consistency_loss", record)
    train(_config(path, tmp / "scheduled", confidence_start=0.6, confidence=0.9, consistency_rampup=0.5))
    assert seen == [0.6, 0.75, 0.9, 0.9]  # 4 steps, the threshold reaches 0.9 after the first half
    seen.clear()
    train(_config(path, tmp / "fixed", confidence=0.9, consistency_rampup=0.5))
    assert seen == [0.9] * 4
    with pytest.raises(ConfigError, match="confidence_start 0.7 schedules the mean teacher's .* semi is none"):
        load_config(confidence_start=0.7)
    with pytest.raises(ConfigError, match="confidence_start"):
        load_config(semi="mean_teacher", confidence_start=0.3)


def test_a_semi_supervised_run_resumes_exactly(data, crash_after_checkpoint):
    path, tmp = data
    whole = train(_config(path, tmp / "whole"))
    crash_after_checkpoint.crash()
    with pytest.raises(crash_after_checkpoint.Crash):
        train(_config(path, tmp / "parts"))
    crash_after_checkpoint.resume()
    parts = train(_config(path, tmp / "parts"))
    assert parts.start_step == 2 and _losses(tmp / "parts") == _losses(tmp / "whole")
    for name in ("latest.safetensors", "teacher.safetensors"):
        a, b = load_file(str(tmp / "whole" / name)), load_file(str(tmp / "parts" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert whole.steps == 4


def test_unlabelled_volumes_of_their_own(data):
    path, tmp = data
    result = train(_config(path, tmp / "other", unlabelled=[f"{tmp}/other.h5:raw"], steps=2))
    assert result.steps == 2 and all(np.isfinite(_losses(tmp / "other")))
    with pytest.raises(ConfigError, match="set semi: mean_teacher"):
        load_config(unlabelled=["x.h5:raw"])
    with pytest.raises(ConfigError, match="semi must be one of"):
        load_config(semi="fixmatch")


def test_a_model_adapts_to_an_unlabelled_volume_without_labels(data):
    """No raw/labels pairs: the init model, AdaBN on the unlabelled volume, then the consistency loss alone."""
    path, tmp = data
    source = train(_config(path, tmp / "source", semi="none", steps=2))
    target = f"{tmp}/other.h5:raw"
    config = load_config(raw=[], labels=[], unlabelled=[target], init=source.latest, semi="mean_teacher",
                         adabn_batches=2, patch_shape=[32, 32], batch_size=2, model={"features": 4, "depth": 2},
                         steps=3, val_every=3, threads=1, out_dir=str(tmp / "adapted"), warmup_steps=1, device="cpu",
                         confidence=0.5, consistency_rampup=0.0)
    result = train(config)
    assert result.steps == 3 and all(np.isfinite(_losses(tmp / "adapted")))
    before, after = load_file(source.latest), load_file(result.latest)
    assert not torch.equal(before["head.weight"], after["head.weight"])  # the consistency loss trains it
    stats = [k for k in before if k.endswith("running_mean")]
    assert all(not torch.equal(before[k], after[k]) for k in stats)
    from emseg.models.reader import read_checkpoint

    from emseg.io import open_volume
    from emseg.normalization import fit_normalization

    norm = read_checkpoint(result.latest).normalization  # the target's intensities, not the source's
    with open_volume(target) as vol:
        expected = fit_normalization(vol, "percentile")
    assert (norm.low, norm.high) == (expected.low, expected.high) != tuple(
        getattr(read_checkpoint(source.latest).normalization, k) for k in ("low", "high"))
    with pytest.raises(ConfigError, match="needs a model to adapt"):
        load_config(raw=[], labels=[], unlabelled=[target], semi="mean_teacher")
