"""The model card of an ``emseg fit`` run, shaped like the shipped models' cards (:mod:`emseg.zoo`):
what it was trained on and how, the tuned post-processing ``emseg segment --model OUT_DIR`` applies,
and the scores on the held-out validation part (with the defaults' scores beside them)."""

from __future__ import annotations

import hashlib
import json
import os
import platform

__all__ = ["write_card", "machine_text"]


def machine_text(device="cpu") -> str:
    """This machine in one phrase, as the cards say it."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}, no GPU"


def write_card(config, state) -> dict:
    """Copy the trained checkpoint to ``OUT_DIR/model.safetensors`` and write ``OUT_DIR/model.json``."""
    from ..io.atomic import write_bytes_atomic, write_text_atomic
    from ..models import load_model
    from ..models.reader import read_checkpoint
    from ..train import load_config

    out = config.out_dir
    plan, trained, tuned = (state["stages"][s] for s in ("plan", "train", "tune"))
    with open(trained["checkpoint"], "rb") as f:
        data = f.read()
    dst = os.path.join(out, "model.safetensors")
    write_bytes_atomic(dst, data)
    info = read_checkpoint(dst)
    c = load_config(os.path.join(out, "plan.yaml"))
    fp = plan["fingerprint"]
    net = load_model(dst)
    axis = "rows" if fp.get("ndim", 3) == 2 else "sections"
    n = fp["shape"][1] if axis == "rows" else fp["shape"][0]
    if c.val_roi is None:  # nothing held out
        t0, t1 = 0, n
        evaluated = (f"the labelled training sections {', '.join(map(str, tuned.get('sections', [])))} (nothing was "
                     "held out; the network trained and the post-processing was tuned there: optimistic)")
    else:
        z0, z1 = (int(v) for v in c.val_roi.split(":"))
        t0, t1 = (0, z0) if z0 > 0 else (z1, n)  # the trainer's region (emseg.train.patches.split_region)
        evaluated = (f"the tuning part, {axis} {z0}-{z1 - 1} (held out from training; the post-processing was tuned "
                     "on it, so the scores are optimistic)")
    scores = tuned["scores"]
    headline = ", ".join(f"{_LABEL.get(k, k)} {v:.3f}" for k, v in scores.items() if k in _LABEL)
    card = {
        "name": os.path.basename(os.path.normpath(out)),
        "summary": f"{c.target} model fitted by `emseg fit` to {os.path.basename(config.raw)}",
        "purpose": f"Segment data like {config.raw} ({fp['labels_kind']} labels).",
        "made_by": "emseg fit",
        "objects": None,
        "target": c.target,
        "input_voxel_size_nm": fp["voxel_size"],
        "architecture": f"{plan['dims']} U-Net: {json.dumps(c.model)}; patch {list(c.patch_shape)}",
        "license": "the terms of the training data",
        "training": {"data": f"{config.raw} with labels {config.labels}, {axis} {t0}-{t1 - 1}",
                     "config": "plan.yaml", "init": config.init, "steps": trained["steps"],
                     "minutes": trained["minutes"], "patches_per_second": trained["patches_per_second"],
                     "patch_shape": list(c.patch_shape), "batch_size": c.batch_size,
                     "machine": machine_text(c.device), "final_loss": trained["final_loss"]},
        "postprocess": tuned["postprocess"],
        "tuning": {"objective": tuned["objective"], "defaults": tuned["default"], "tuned": tuned["tuned"],
                   "settings_tried": tuned["tried"]},
        "metrics": {"evaluated_on": evaluated, **scores,
                    "with_default_postprocess": tuned["default_scores"]},
        "weights": {"file": "model.safetensors", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                    "parameters": sum(p.numel() for p in net.parameters()),
                    "normalization": info.normalization.as_dict() if info.normalization else None},
        "headline": headline,
    }
    if c.target == "affinities":
        card["offsets"] = [list(o) for o in info.task_params["offsets"]]
    write_text_atomic(os.path.join(out, "model.json"), json.dumps(card, indent=1) + "\n")
    return card


_LABEL = {"foreground_iou": "IoU", "pq": "PQ", "ap50": "AP50", "voi": "VOI", "v_rand": "V_rand"}
