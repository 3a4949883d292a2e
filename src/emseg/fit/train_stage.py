"""The training stage of ``emseg fit``: the plan's run, or the rounds of ``--semi propagate``
(:mod:`emseg.fit.propagate`); what it records in ``fit.json``."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["stage_train"]


def stage_train(config, say, progress):
    from ..train import load_config, train

    c = load_config(os.path.join(config.out_dir, "plan.yaml"), [f"out_dir={os.path.join(config.out_dir, 'train')}"])
    say(f"[2/4] train: {c.steps} steps, at most {c.max_minutes:g} minutes -> {c.out_dir}")
    rounds = None
    if config.semi == "propagate":
        from .propagate import propagate_train

        r, rounds = propagate_train(c, config.raw, config.labels, say, progress)
    else:
        r = train(c, progress=progress)
    steps, seconds = r.steps, r.seconds
    if rounds:  # every round's training counts
        steps, seconds = sum(x["steps"] for x in rounds), sum(x["seconds"] for x in rounds)
    resumed = f" (resumed at step {r.start_step})" if r.start_step else ""
    split = f" in {len(rounds)} rounds" if rounds else ""
    say(f"      trained {steps} steps{split}{resumed} in {seconds:.0f} s ({r.patches_per_second:.1f} patches/s)")
    return {"steps": steps, "checkpoint": r.latest, "patches_per_second": round(r.patches_per_second, 2),
            "minutes": round(seconds / 60, 2), "final_loss": _final_loss(c.out_dir),
            **({"propagation": rounds} if rounds else {})}


def _final_loss(run_dir, last=50):
    import csv

    with open(os.path.join(run_dir, "log.csv")) as f:
        rows = list(csv.DictReader(f))
    return round(float(np.mean([float(r["loss"]) for r in rows[-last:]])), 4) if rows else None
