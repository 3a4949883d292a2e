"""The model card of an ``emseg fit`` run, shaped like the shipped models' cards (:mod:`emseg.zoo`):
what it was trained on and how, the tuned post-processing ``emseg segment --model OUT_DIR`` applies,
and the scores on the held-out validation part (with the defaults' scores beside them)."""

from __future__ import annotations

import hashlib
import json
import os
import platform

from .adapt import ADABN_BATCHES

__all__ = ["write_card", "machine_text", "export_for_target"]


def machine_text(device="cpu") -> str:
    """This machine in one phrase, as the cards say it."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}, no GPU"


def export_for_target(checkpoint, target, c, dst, seed=0):
    """Write to ``dst`` the trained ``checkpoint`` for the ``target`` volume (``emseg fit --source``): its
    normalisation fitted on the target and its BatchNorm statistics re-estimated there (AdaBN, on
    ``ADABN_BATCHES`` batches of the plan ``c``'s patches)."""
    import numpy as np
    import torch

    from ..io import open_volume
    from ..models import load_model
    from ..models.checkpoint import read_model_header, save_model
    from ..normalization import fit_normalization
    from ..train.finetune import adapt_batchnorm
    from ..train.semi import Unlabelled, draw_unlabelled

    net, extra = load_model(checkpoint), dict(read_model_header(checkpoint).extra)
    with open_volume(target) as vol:
        norm = fit_normalization(vol, c.normalization)
        source = Unlabelled([(vol, tuple(slice(0, n) for n in vol.shape), norm)], None, None)
        rng = np.random.default_rng(seed)
        adapt_batchnorm(net, (torch.from_numpy(draw_unlabelled(source, c, rng, strong=False)[0])
                              for _ in range(ADABN_BATCHES)))
    extra.update(normalization=norm.as_dict(), adapted_to=target)
    save_model(net.eval(), dst, extra=extra)


def write_card(config, state) -> dict:
    """Copy the trained checkpoint to ``OUT_DIR/model.safetensors`` and write ``OUT_DIR/model.json``."""
    from ..io.atomic import write_bytes_atomic, write_text_atomic
    from ..models import load_model
    from ..models.reader import read_checkpoint
    from ..train import load_config

    out = config.out_dir
    plan, trained, tuned = (state["stages"][s] for s in ("plan", "train", "tune"))
    c = load_config(os.path.join(out, "plan.yaml"))
    dst = os.path.join(out, "model.safetensors")
    if config.adapt_to is not None:  # --source: the model for the target volume
        export_for_target(trained["checkpoint"], config.adapt_to, c, dst)
    else:
        with open(trained["checkpoint"], "rb") as f:
            write_bytes_atomic(dst, f.read())
    with open(dst, "rb") as f:
        data = f.read()
    info = read_checkpoint(dst)
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
    if config.unlabelled:
        card["training"]["unlabelled"] = [config.raw, *config.unlabelled]  # the mean teacher's raw
    if c.target == "affinities":
        card["offsets"] = [list(o) for o in info.task_params["offsets"]]
    if config.adapt_to is not None:
        card["summary"] = (f"{c.target} model trained by `emseg fit --source` on {os.path.basename(config.raw)} and "
                           f"adapted to {os.path.basename(config.adapt_to)}")
        card["purpose"] = f"Segment data like {config.adapt_to} (no labels there: trained on {config.raw})."
        card["training"]["adapted_to"] = (f"{config.adapt_to}: the mean teacher learned from it; its intensity "
                                          f"normalisation and BatchNorm statistics ({ADABN_BATCHES} batches) are the model's")
        card["metrics"]["evaluated_on"] = ("the SOURCE's " + evaluated + "; nothing was measured on the target "
                                           "(it has no labels): score it on a few labelled sections before trusting it")
    write_text_atomic(os.path.join(out, "model.json"), json.dumps(card, indent=1) + "\n")
    return card


_LABEL = {"foreground_iou": "IoU", "pq": "PQ", "ap50": "AP50", "voi": "VOI", "v_rand": "V_rand"}
