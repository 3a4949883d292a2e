"""How long one training step of a plan takes on this machine: a few real steps of the real trainer
(its data loading, augmentation, targets, model and optimiser) in a scratch folder.

The plan's steps follow the measurement; when fewer than :data:`~emseg.fit.planner.MIN_STEPS`
fit the budget, the planner's next smaller network is measured instead (at most three tries).
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import replace

__all__ = ["measure_step_seconds", "measured_plan"]

_STEPS, _SKIP = 8, 3  # steps run; the first ones (allocation, oneDNN kernel choice) are not counted


def measure_step_seconds(config, work_dir) -> float:
    """Seconds per step of ``config`` here: :data:`_STEPS` steps of :func:`emseg.train.train` in
    ``work_dir`` (deleted afterwards), the first :data:`_SKIP` not counted."""
    from ..train import train

    os.makedirs(work_dir, exist_ok=True)
    try:
        c = replace(config, steps=_STEPS, warmup_steps=1, val_patches=0, max_minutes=None, out_dir=work_dir,
                    overwrite=True, resume=False)
        train(c)
        with open(os.path.join(work_dir, "log.csv")) as f:
            rows = list(csv.DictReader(f))
        seconds = [float(r["seconds"]) for r in rows]
        return max(1e-6, (seconds[-1] - seconds[_SKIP - 1]) / (len(seconds) - _SKIP))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def measured_plan(fp, work_dir, echo=None, **plan_options):
    """:func:`~emseg.fit.planner.plan_training` with the seconds per step measured here.

    Raises
    ------
    ValueError
        ``minutes`` is too short for one step of the smallest network (the message says how long
        one step takes here).
    """
    from .planner import MIN_STEPS, estimate_step_seconds, plan_training, with_steps

    minutes = plan_options["minutes"]
    plan = plan_training(fp, **plan_options)
    for attempt in range(3):
        sps = measure_step_seconds(plan.config, work_dir)
        steps = int(60 * minutes / sps)
        if echo:
            echo(f"measured {sps:.3g} s per step of {plan.config.batch_size}x{'x'.join(map(str, plan.config.patch_shape))}"
                 f" (features {plan.config.model.get('features', 8)}): {steps} steps in {minutes:g} minutes")
        if steps >= MIN_STEPS or attempt == 2:
            break
        slowdown = sps / estimate_step_seconds(plan.config.batch_size, plan.config.patch_shape,
                                               plan.config.model.get("features", 8), plan.config.device)
        smaller = plan_training(fp, **{**plan_options, "slowdown": slowdown})
        if smaller.config.model == plan.config.model and smaller.config.patch_shape == plan.config.patch_shape:
            break  # already the smallest network
        plan = smaller
    if steps < 1:
        raise ValueError(f"--minutes {minutes:g} is too short for one training step: one step of the smallest "
                         f"plan takes {sps:.2f} s here; give at least {max(0.1, 20 * sps / 60):.1f} minutes")
    plan = with_steps(plan, sps, minutes)
    return replace(plan, reasons={**plan.reasons, "amp": _precision(plan.config.device)})


def _precision(device):
    """What ``amp: true`` means on this machine, measured with the step time."""
    from ..runtime import cpu_bf16

    if device == "cuda":
        return "mixed precision: float16 with loss scaling on the GPU"
    if cpu_bf16():
        return "mixed precision: this CPU computes bfloat16 natively"
    return "this CPU has no native bfloat16, so training runs in float32 (amp takes effect on other machines)"
