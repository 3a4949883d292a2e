"""Train the Lucchi 2D mitochondria config on this machine and score it on the held-out sections.

Protocol (issue 4): train ``configs/lucchi_mito_2d.yaml`` on z 0–139 of the Lucchi training volume
(../shared/data/lucchi, Lucchi et al. 2012, EPFL CVLab terms) for at most ``--minutes`` of
wall time, then predict every held-out section z 140–164 whole (768×1024) with the best
checkpoint and report the foreground IoU (Jaccard) of the mitochondria class over that 3D block,
computed by ``emseg.metrics.semantic_scores``. Prints one JSON object; progress to stderr.

With ``--z-filter 5`` the probabilities are also scored after a median over 5 sections (the
z-filtering of Casser et al. 2020), computed inside the held-out block only.

Usage: ``python benchmarks/bench_train_lucchi.py [--minutes 30] [--out runs/bench_lucchi] [--tta flips]
[--z-filter 5] [--set key=value ...] [--model CKPT]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/lucchi_mito_2d.yaml")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--out", default="runs/bench_lucchi")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--tta", choices=("flips", "d4"), help="test-time augmentation at evaluation (emseg.predict)")
    ap.add_argument("--z-filter", type=int, default=0,
                    help="also score after a median over N sections (emseg.instances.z_filter, Casser et al.)")
    ap.add_argument("--model", help="skip training: evaluate this checkpoint")
    args = ap.parse_args()

    import torch

    from emseg.io import read_volume
    from emseg.metrics import semantic_scores
    from emseg.predict import predict_blockwise
    from emseg.train import load_config, train

    config = load_config(args.config, [f"max_minutes={args.minutes}", f"out_dir={args.out}", "overwrite=true",
                                       *args.set])
    t0 = time.perf_counter()
    if args.model:
        from types import SimpleNamespace

        result = SimpleNamespace(steps=None, patches_per_second=float("nan"), best_metric=None, best_step=None,
                                 best=args.model)
    else:
        result = train(config, progress=sys.stderr.isatty())
    train_s = time.perf_counter() - t0
    print(f"trained {result.steps} steps in {train_s:.0f} s", file=sys.stderr)

    z0, z1 = (int(v) for v in config.val_roi.split(":"))
    raw = read_volume(config.raw[0])[z0:z1]
    gt = read_volume(config.labels[0])[z0:z1] > 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:  # the same blockwise path users run (exact, automatic halo)
        r = predict_blockwise(raw, result.best, f"{d}/p.zarr", tta=args.tta, dtype="float32", device=device)
        prob = np.asarray(r.out[0])
    predict_s = time.perf_counter() - t1
    scores = semantic_scores(gt, prob, threshold=0.5)
    filtered = None
    if args.z_filter > 1:  # the held-out block's own sections only: its first/last sections repeat at the ends
        from emseg.instances import z_filter

        f = semantic_scores(gt, z_filter(prob, args.z_filter), threshold=0.5)
        filtered = {"z_filter": args.z_filter, "iou": f.iou, "dice": f.dice, "precision": f.precision,
                    "recall": f.recall}
    print(json.dumps({
        "protocol": f"train z 0-{z0 - 1}, evaluate whole sections z {z0}-{z1 - 1} of lucchi/training.tif",
        "machine": {"device": device, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "config": config.as_dict(),
        "train": {"steps": result.steps, "seconds": round(train_s, 1), "patches_per_second": round(result.patches_per_second, 2),
                  "best_val_patch_iou": result.best_metric, "best_step": result.best_step},
        "heldout": {"tta": args.tta, "iou": scores.iou, "dice": scores.dice, "precision": scores.precision, "recall": scores.recall,
                    "predict_seconds": round(predict_s, 1), "after_z_filter": filtered},
        "goal_iou": 0.85, "met": max(scores.iou, filtered["iou"] if filtered else 0) >= 0.85,
    }, indent=1))


if __name__ == "__main__":
    main()
