"""``emseg fit RAW OUT_DIR --init MODEL``: adapt a model to a volume without labels.

Another microscope's volume and no labels: the plan keeps the ``--init`` model's architecture,
target, patch and batch (from its training config), re-estimates its BatchNorm statistics on the
new volume (AdaBN) and trains it with the mean teacher's consistency loss alone on the new volume
(:mod:`emseg.train.semi`), its intensities normalised on that volume. There are no labels to tune
on, so the card keeps the init model's post-processing; measure the result on labelled sections of
the target before trusting it (``benchmarks/few_labels.py`` reports the effect on CDeep3M).
"""

from __future__ import annotations

import hashlib
import json
import os

__all__ = ["adaptation_plan", "write_adaptation_card", "ADABN_BATCHES"]

ADABN_BATCHES = 32
"""Batches of the new volume the BatchNorm statistics are re-estimated on before training."""


def adaptation_plan(config, echo=None):
    """The TrainConfig (and a reason per field) that adapts ``config.init`` to ``config.raw``, its steps
    measured here; written as ``plan.yaml`` by the fit's plan stage."""
    from ..io import open_volume
    from ..models.reader import read_checkpoint
    from ..runtime import torch_device
    from ..train import TrainConfig
    from .timing import measure_step_seconds

    info = read_checkpoint(config.init)
    if info.extra.get("pretrain"):
        raise ValueError(f"--init {config.init} is a pretrained network (emseg pretrain), not a segmentation model: "
                         "there is nothing to adapt; fine-tune it with labels (emseg fit RAW LABELS OUT_DIR --init)")
    stored = info.config or {}
    args = {k: v for k, v in info.init_args.items() if k not in ("in_channels", "out_channels", "ndim")}
    ndim = int(info.init_args.get("ndim", 2))  # the trainer takes it from patch_shape
    with open_volume(config.raw) as raw:
        shape, vs = tuple(raw.shape), config.voxel_size or raw.voxel_size
    if (ndim == 3 or info.context) and len(shape) != 3:
        kind = "3D" if ndim == 3 else f"2.5D (context {info.context}: neighbouring sections as channels)"
        raise ValueError(f"--init {config.init} is a {kind} model but raw {config.raw} has shape {shape}; adapt a 2D "
                         "model")
    patch = tuple(stored.get("patch_shape") or ((256, 256) if ndim == 2 else (32, 96, 96)))
    patch = tuple(min(p, s) for p, s in zip(patch, shape[-ndim:]))
    why = {"semi": "no labels: the mean teacher's consistency loss on the new volume is all there is to learn from",
           "init": f"the model to adapt; its architecture, target ({info.task}) and patch are kept",
           "context": "the init model's: the sections above and below as input channels (2.5D)",
           "adabn_batches": f"BatchNorm statistics re-estimated on {ADABN_BATCHES} batches of the new volume first "
                            "(AdaBN): the cheapest adaptation to another microscope",
           "normalization": "robust percentiles fitted on the new volume (not the init model's)"}
    fields = dict(raw=(), labels=(), unlabelled=(config.raw,), init=config.init, semi="mean_teacher",
                  target=info.task, patch_shape=patch, batch_size=int(stored.get("batch_size", 4)), model=args,
                  context=info.context,
                  augment=stored.get("augment", True), normalization="percentile",
                  voxel_size=tuple(vs) if vs else None, adabn_batches=ADABN_BATCHES, consistency_rampup=0.0,
                  lr=float(stored.get("lr", 1e-3)) / 4, loss=stored.get("loss", "bce_dice"),
                  pos_weight=stored.get("pos_weight"), n_classes=int(stored.get("n_classes", 2)), seed=config.seed, device=torch_device(config.device).type,
                  out_dir=os.path.join(config.out_dir, "train"), max_minutes=float(config.minutes))
    why["lr"] = "a quarter of the init model's learning rate: adapting, not learning anew"
    why["consistency_rampup"] = "no ramp: the teacher starts from a trained model"
    if info.task == "affinities":
        fields["offsets"] = tuple(tuple(o) for o in info.task_params["offsets"])
    else:
        fields["target_params"] = {k: v for k, v in info.task_params.items() if k not in ("offsets", "n_classes")}
    c = TrainConfig(**fields)
    sps = measure_step_seconds(c, os.path.join(config.out_dir, ".timing"))
    steps = int(60 * config.minutes / sps)
    if steps < 1:
        raise ValueError(f"--minutes {config.minutes:g} is too short for one adaptation step: one takes {sps:.2f} s "
                         f"here; give at least {max(0.1, 20 * sps / 60):.1f} minutes")
    if echo:
        echo(f"measured {sps:.3g} s per step of {c.batch_size}x{'x'.join(map(str, patch))}: {steps} steps in "
             f"{config.minutes:g} minutes")
    from dataclasses import replace

    c = replace(c, steps=steps, warmup_steps=min(100, max(1, steps // 50)), val_every=max(20, steps // 10))
    why["steps"] = f"{config.minutes:g} minutes at {sps:.3g} s per step (measured here)"
    return c, why, sps


def plan_text(c, why, raw) -> str:
    """The YAML of an adaptation plan: every field it sets, with its reason."""
    from .plan_file import _flow

    lines = ["# emseg adaptation plan, made by `emseg fit RAW OUT_DIR --init MODEL` (no labels).",
             f"# raw {raw}: adapted to without labels"]
    d = c.as_dict()
    for name in ("unlabelled", "raw", "labels", "voxel_size", "init", "target", "offsets", "target_params", "model",
                 "patch_shape", "context", "batch_size", "normalization", "augment", "semi", "adabn_batches", "consistency_rampup",
                 "confidence", "ema_decay", "lr", "steps", "warmup_steps", "max_minutes", "val_every", "seed",
                 "device", "out_dir"):
        if (name == "offsets" and c.target != "affinities" or name == "voxel_size" and d[name] is None
                or name == "context" and not d[name]):
            continue
        line = f"{name}: {_flow(d[name])}"
        lines.append(f"{line}  # {why[name]}" if name in why else line)
    return "\n".join(lines) + "\n"


def write_adaptation_card(config, state) -> dict:
    """``model.safetensors`` and ``model.json`` of an adaptation: the init model's card, with what was done."""
    from ..io.atomic import write_bytes_atomic, write_text_atomic
    from ..models import load_model
    from ..models.reader import read_checkpoint
    from .card import machine_text

    out = config.out_dir
    trained = state["stages"]["train"]
    with open(trained["checkpoint"], "rb") as f:
        data = f.read()
    dst = os.path.join(out, "model.safetensors")
    write_bytes_atomic(dst, data)
    source = read_checkpoint(config.init)
    info = read_checkpoint(dst)
    base = dict(source.card or {})
    post = state["stages"]["tune"]["postprocess"]
    card = {**{k: base[k] for k in ("objects", "modality", "purpose", "limitations", "license") if k in base},
            "name": os.path.basename(os.path.normpath(out)),
            "summary": f"{source.name} adapted without labels to {os.path.basename(config.raw)} by `emseg fit`",
            "made_by": "emseg fit (adapted without labels)",
            "target": info.task, "input_voxel_size_nm": list(info.voxel_size) if info.voxel_size else None,
            "architecture": base.get("architecture", json.dumps(info.init_args)),
            "adapted_from": {"model": str(config.init), "card": base.get("name")},
            "training": {"data": f"{config.raw}, unlabelled (mean teacher + AdaBN)", "config": "plan.yaml",
                         "init": config.init, "steps": trained["steps"], "minutes": trained["minutes"],
                         "machine": machine_text(info.config.get("device", "cpu")), "final_loss": trained["final_loss"]},
            "postprocess": post,
            "metrics": {"evaluated_on": "nothing: no labels (score it on labelled sections of this volume)"},
            "weights": {"file": "model.safetensors", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                        "parameters": sum(p.numel() for p in load_model(dst).parameters()),
                        "normalization": info.normalization.as_dict() if info.normalization else None},
            "headline": "adapted without labels: not measured"}
    if info.task == "affinities":
        card["offsets"] = [list(o) for o in info.task_params["offsets"]]
    write_text_atomic(os.path.join(out, "model.json"), json.dumps(card, indent=1) + "\n")
    return card
