"""The accuracy table: every shipped model, run with ``emseg segment`` on data it was not trained on,
scored with emseg.metrics, next to the numbers the field publishes for the same benchmark.

Protocols (``../shared/data/README.md``; each model's card names its training part):
- mito-fibsem on Lucchi (EPFL) z 140-164 of the training volume, held out from training. The
  published numbers are on the separate Lucchi *test* volume, which ``../shared/data`` does not hold.
- mito-sbem on CDeep3M ``validation/`` (10 sections), held out from training (``training/``).
- membrane-sstem on ISBI 2012 sections 25-29 of the training stack, held out. The published
  numbers are the organisers' evaluation of the test stack, whose labels were never released.
- neurons-fibsem on FlyEM medulla z 110-149 of the cube here (trained on z 0-109). Compared with
  a plain seeded watershed and with mean-affinity agglomeration on the same prediction.

Every model runs through the command line (``emseg segment RAW OUT --model NAME``: blockwise
prediction with the card's test-time augmentation, then the card's post-processing, blockwise
with global ids) on the held-out region written to Zarr. Prints one JSON object, writes it to
``--out/accuracy.json`` (a run of some models keeps the others' last results) and the table to
``benchmarks/accuracy.md``; ``--update-cards`` also
stores the metrics in the model cards (``src/emseg/zoo/NAME.json``).

Usage: ``python benchmarks/accuracy.py [--models a,b] [--data ../shared/data] [--update-cards]``
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

HERE = os.path.dirname(os.path.abspath(__file__))

DATASETS = {
    "mito-fibsem": dict(dataset="Lucchi et al. 2012 (EPFL hippocampus, FIB-SEM 5 nm)",
                        raw="lucchi/training.tif", gt="lucchi/training_groundtruth.tif", roi=(140, 165),
                        protocol="training volume z 140-164 (25×768×1024), held out from training"),
    "mito-sbem": dict(dataset="CDeep3M mitochondria (mouse brain, SBEM)",
                      raw="cdeep3m_mito/validation/images", gt="cdeep3m_mito/validation/labels", roi=None,
                      protocol="validation/ (10×1024×1024), held out from training"),
    "membrane-sstem": dict(dataset="ISBI 2012 (Drosophila VNC, ssTEM 50×4×4 nm)",
                           raw="isbi2012/train-volume.tif", gt="isbi2012/train-labels.tif", roi=(25, 30),
                           protocol="training stack sections 25-29 (5×512×512), held out from training"),
    "neurons-fibsem": dict(dataset="FlyEM medulla sample 2 (FIB-SEM 10 nm)",
                           raw="flyem_medulla/sample2_z000-149.h5:volumes/raw",
                           gt="flyem_medulla/sample2_z000-149.h5:volumes/labels/neuron_ids", roi=(110, 150),
                           tune_roi=(60, 100),  # training region: where the baselines' thresholds are chosen
                           protocol="z 110-149 of the cube (40×250×250), held out from training (z 0-109)"),
}

# (metric key, value, who, what it was measured on)
PUBLISHED = {
    "mito-fibsem": [
        ("foreground_iou", 0.892, "pytorch_connectomics 3D U-Net (Lin et al. 2021, PyTC docs)", "Lucchi test volume"),
        ("foreground_iou", 0.900, "Xiao et al. 2018, 3D residual U-Net with deep supervision", "Lucchi test volume"),
        ("foreground_iou", 0.89, "Casser et al. 2020, light 2D U-Net + z-filtering (≈)", "Lucchi test volume"),
    ],
    "membrane-sstem": [
        ("rand_error", 0.0382, "U-Net, Ronneberger et al. 2015 (Table 1)", "ISBI 2012 test stack, organisers' evaluation"),
        ("warping_error", 0.000353, "U-Net, Ronneberger et al. 2015 (Table 1)",
         "ISBI 2012 test stack, organisers' evaluation"),
    ],
}

NOTES = {
    "mito-fibsem": ("The published IoUs are on the Lucchi test volume, which ../shared/data does not hold; ours is on "
                    "sections of the training volume the model never saw. Ground-truth instances are the 3D "
                    "connected components (26-connectivity) of the mask."),
    "mito-sbem": ("No published number for this sample. The sections we looked at show most false positives on "
                  "myelin sheaths, dark like mitochondria, which validation/ holds more of than training/."),
}

LABELS = {  # metric key -> (row label, lower is better)
    "foreground_iou": ("foreground IoU (probability > 0.5)", False),
    "foreground_iou_zfilter": ("foreground IoU, z-filtered as in post-processing", False),
    "foreground_dice": ("foreground Dice (probability > 0.5)", False),
    "instance_mask_iou": ("IoU of the instance mask (after post-processing)", False),
    "ap50": ("instance AP@0.5", False),
    "ap75": ("instance AP@0.75", False),
    "map": ("instance AP@[0.5:0.95]", False),
    "pq": ("panoptic quality PQ", False),
    "v_rand": ("V_rand (best threshold, ISBI script)", False),
    "v_info": ("V_info (best threshold, ISBI script)", False),
    "rand_error": ("Rand error = 1 - best V_rand", True),
    "warping_error": ("warping error (threshold 0.5)", True),
    "pixel_error": ("pixel error (threshold 0.5)", True),
    "cells_v_rand": ("V_rand of the cells (watershed per section)", False),
    "cells_adapted_rand": ("adapted Rand error of the cells", True),
    "voi_split": ("VOI split", True),
    "voi_merge": ("VOI merge", True),
    "voi": ("VOI split + merge", True),
    "adapted_rand": ("adapted Rand error", True),
    "cremi": ("CREMI score", True),
}


def held_out(data, spec):
    from emseg.io import open_volume

    out = {}
    for name in ("raw", "gt"):
        path = os.path.join(data, spec[name])
        with open_volume(path) as vol:
            roi = slice(*spec["roi"]) if spec["roi"] else slice(None)
            out[name], out[name + "_voxel_size"] = np.asarray(vol[roi]), vol.voxel_size
    return out


def run_segment(name, raw, voxel_size, work, model=None):
    """``emseg segment`` on the held-out raw, as a user runs it; returns (labels, probabilities, seconds)."""
    from emseg.cli import main as emseg
    from emseg.config import ExecutionConfig
    from emseg.io import read_volume, write_volume

    raw_path, seg_path, prob_path = (os.path.join(work, f"{name}-{k}.zarr") for k in ("raw", "seg", "prob"))
    write_volume(raw_path, raw, voxel_size=voxel_size, execution=ExecutionConfig(overwrite=True))
    t0 = time.perf_counter()
    rc = emseg(["segment", raw_path, seg_path, "--model", model or name, "--keep-probabilities", prob_path,
                "--no-progress"])
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"emseg segment --model {name} failed (exit {rc})")
    return read_volume(seg_path), read_volume(prob_path).astype(np.float32), seconds


def score_mito(gt, seg, prob, card):
    import cc3d

    from emseg.instances import z_filter
    from emseg.metrics import average_precision, panoptic_quality, semantic_scores

    mask = gt > 0
    fg = prob[0]
    s = semantic_scores(mask, fg, threshold=0.5)
    out = {"foreground_iou": s.iou, "foreground_dice": s.dice, "foreground_precision": s.precision,
           "foreground_recall": s.recall}
    zf = card["postprocess"].get("z_filter") or 0
    if zf > 1:
        out["foreground_iou_zfilter"] = semantic_scores(mask, z_filter(fg, zf), threshold=0.5).iou
    out["instance_mask_iou"] = semantic_scores(mask, seg > 0).iou
    gt_ids = cc3d.connected_components(mask, connectivity=26)  # Lucchi/CDeep3M give masks: instances = 3D components
    ap = average_precision(gt_ids, seg)
    pq = panoptic_quality(gt_ids, seg)
    out.update(ap50=ap.ap50, ap75=ap.ap75, map=ap.map, pq=pq.pq, gt_objects=int(gt_ids.max()),
               pred_objects=int(len(np.unique(seg)) - (seg == 0).any()))
    return out


def score_membranes(gt, seg, prob):
    from emseg.metrics import adapted_rand_error, best_scores_from_probability, label_cells, pixel_error, v_rand, \
        warping_error

    cells_gt = label_cells(gt)
    membrane = prob[0]
    best = best_scores_from_probability(cells_gt, membrane, membrane_is_high=True)
    cells_prob = 1.0 - membrane
    return {"v_rand": best.v_rand.score, "v_rand_threshold": best.v_rand_threshold, "v_info": best.v_info.score,
            "rand_error": 1.0 - best.v_rand.score, "warping_error": warping_error(gt, cells_prob).error,
            "pixel_error": pixel_error(gt > 0, cells_prob > 0.5), "cells_v_rand": v_rand(cells_gt, seg).score,
            "cells_adapted_rand": adapted_rand_error(cells_gt, seg).error}


def score_neurons(gt, seg, voxel_size):
    from emseg.metrics import adapted_rand_error, cremi_score, variation_of_information

    voi = variation_of_information(gt, seg, ignore_label=(0,))
    cremi = cremi_score(gt, seg, voxel_size=voxel_size)
    return {"voi_split": voi.split, "voi_merge": voi.merge, "voi": voi.total,
            "adapted_rand": adapted_rand_error(gt, seg).error, "cremi": cremi.score,
            "objects": int(len(np.unique(seg)) - (seg == 0).any())}


BASELINES = {  # label -> (input, method, fixed params, the parameter chosen on the training part, its candidates)
    "plain watershed on the boundary map": ("boundary", "watershed", {}, "threshold", (0.05, 0.1, 0.2, 0.3, 0.5)),
    "watershed, distance-transform seeds": ("boundary", "watershed", {"seeds": "distance"}, "threshold",
                                            (0.05, 0.1, 0.2, 0.3, 0.5)),
    "waterz agglomeration (nearest affinities)": ("affinities", "agglomerate", {}, "threshold",
                                                  (0.1, 0.3, 0.5, 0.7, 0.9)),
}


def neuron_baselines(gt, prob, offsets, voxel_size, train_gt, train_prob):
    """The same prediction cut by other methods: a plain seeded watershed on the boundary map that the
    nearest-neighbour affinities give (1 - their mean; seeds where it is below the threshold, or at
    maxima of their distance transform), and waterz mean-affinity agglomeration. Each method's
    threshold is the one with the lowest VOI on a part of the training region (never the held-out part)."""
    from emseg.instances import segment
    from emseg.metrics import variation_of_information

    near = [i for i, o in enumerate(offsets) if sum(abs(v) for v in o) == 1]

    def inputs(p):
        return {"boundary": 1.0 - p[near].mean(axis=0, keepdims=True), "affinities": p[near]}

    held, train = inputs(prob), inputs(train_prob)
    out = {}
    for label, (what, method, fixed, name, candidates) in BASELINES.items():
        offs = [offsets[i] for i in near] if what == "affinities" else None
        tries = {v: variation_of_information(train_gt, segment(train[what], method, {**fixed, name: v}, offsets=offs),
                                             ignore_label=(0,)).total for v in candidates}
        best = min(tries, key=tries.get)
        t0 = time.perf_counter()
        seg = segment(held[what], method, {**fixed, name: best}, offsets=offs)
        out[label] = {**score_neurons(gt, seg, voxel_size), "seconds": time.perf_counter() - t0, name: best,
                      "train_voi": tries[best]}
    return out


def markdown(results, machine):
    lines = ["# Accuracy of the shipped models", "",
             f"Written by `benchmarks/accuracy.py` on {machine}. Each model ran through "
             "`emseg segment RAW OUT --model NAME` (blockwise prediction with the card's test-time augmentation, "
             "then the card's post-processing, blockwise with global ids) on a part of its dataset it was not "
             "trained on. Published numbers are quoted from their papers and were measured on the benchmark's "
             "official test data; where that differs from our held-out part the note says so. "
             "Data sources and licenses: `../shared/data/README.md`.", ""]
    lines += ["| model | data | held-out part | result | published (official test data) |", "|---|---|---|---|---|"]
    for name, r in results.items():
        m, pub = r["metrics"], PUBLISHED.get(name, [])
        head = (f"foreground IoU {m['foreground_iou']:.3f} ({m['foreground_iou_zfilter']:.3f} z-filtered), "
                f"AP@0.5 {m['ap50']:.3f}" if "foreground_iou_zfilter" in m else
                f"foreground IoU {m['foreground_iou']:.3f}, AP@0.5 {m['ap50']:.3f}" if "ap50" in m else
                f"V_rand {m['v_rand']:.4f}, Rand error {m['rand_error']:.4f}, warping error {m['warping_error']:.2e}"
                if "v_rand" in m else f"VOI {m['voi']:.3f} (best plain watershed: "
                f"{min(v['voi'] for k, v in r['baselines'].items() if 'watershed' in k):.3f}), "
                f"adapted Rand {m['adapted_rand']:.3f}")
        ref = "; ".join(f"{LABELS[k][0].split(' (')[0].split(' =')[0]} {v:g} ({who.split(' (')[0].split(',')[0]})" for k, v, who, _ in pub)
        lines.append(f"| `{name}` | {DATASETS[name]['dataset']} | {DATASETS[name]['protocol']} | {head} | {ref or '—'} |")
    lines.append("")
    for name, r in results.items():
        spec, post = DATASETS[name], r["postprocess"]
        how = ", ".join([f"method {post['method']}"] + [f"{k} {v}" for k, v in post.get("params", {}).items()] +
                        [f"min size {post.get('min_size', 0)}", f"z-filter {post.get('z_filter') or 'none'}",
                         f"TTA {post.get('tta') or 'none'}"])
        lines += [f"## `{name}` — {spec['dataset']}", "", f"Evaluated on: {spec['protocol']}. "
                  f"Post-processing (the model card's): {how}. `emseg segment` took {r['segment_seconds']:.1f} s.", "",
                  "| metric | emseg | published | by, on |", "|---|---|---|---|"]
        published = {}
        for key, value, who, on in PUBLISHED.get(name, []):
            published.setdefault(key, []).append((value, who, on))
        for key, value in r["metrics"].items():
            if key not in LABELS:
                continue
            label, lower = LABELS[key]
            refs = published.get(key) or [(None, "", "")]
            for i, (pv, who, on) in enumerate(refs):
                ours = f"**{value:.4g}**" if i == 0 else ""
                lines.append(f"| {label if i == 0 else ''} | {ours} | {'' if pv is None else f'{pv:g}'} | "
                             f"{who + ', ' + on if who else '—'} |")
        if r.get("baselines"):
            lines += ["", "Other cuts of the same prediction:", "",
                      "| method | VOI split | VOI merge | VOI | adapted Rand | CREMI |", "|---|---|---|---|---|---|"]
            rows = {f"{r['postprocess']['method']} (the card's method)": r["metrics"], **r["baselines"]}
            for label, m in rows.items():
                if "threshold" in m:
                    label += f" (threshold {m['threshold']:g})"
                lines.append(f"| {label} | {m['voi_split']:.3f} | {m['voi_merge']:.3f} | {m['voi']:.3f} | "
                             f"{m['adapted_rand']:.3f} | {m['cremi']:.3f} |")
        if r.get("note"):
            lines += ["", r["note"]]
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DATASETS))
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--markdown", default=os.path.join(HERE, "accuracy.md"))
    ap.add_argument("--update-cards", action="store_true", help="store the metrics in the model cards")
    args = ap.parse_args()

    import torch

    from emseg.io.atomic import write_text_atomic
    from emseg.models.reader import read_checkpoint
    from emseg.tasks import get_task
    from emseg.zoo import ZOO_DIR, model_card

    machine = f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}"
    results = {}
    with tempfile.TemporaryDirectory(prefix="emseg-accuracy-") as work:
        for name in args.models.split(","):
            spec, card = DATASETS[name], model_card(name)
            d = held_out(args.data, spec)
            print(f"{name}: emseg segment on {d['raw'].shape} ...", file=sys.stderr)
            seg, prob, seconds = run_segment(name, d["raw"], d["raw_voxel_size"], work)
            r = {"dataset": spec["dataset"], "protocol": spec["protocol"], "segment_seconds": seconds,
                 "postprocess": card["postprocess"]}
            metric_set = get_task(read_checkpoint(name).task).metrics  # the registry says how the task is scored
            if metric_set == "instance":
                r["metrics"] = score_mito(d["gt"], seg, prob, card)
                r["note"] = NOTES.get(name)
            elif metric_set == "membranes":
                r["metrics"] = score_membranes(d["gt"], seg, prob)
                r["note"] = ("ISBI's leaderboard ranks by V_rand/V_info of thresholded maps (the script's best "
                             "threshold, as here). Its pixel error is 1 - the best pixel F-score, not the "
                             "fraction of wrong pixels reported here, so it is not compared.")
            else:
                vs = d["gt_voxel_size"]
                r["metrics"] = score_neurons(d["gt"], seg, vs)
                t = held_out(args.data, {**spec, "roi": spec["tune_roi"]})
                _, t_prob, _ = run_segment(name + "-train", t["raw"], t["raw_voxel_size"], work, model=name)
                r["baselines"] = neuron_baselines(d["gt"], prob, card["offsets"], vs, t["gt"], t_prob)
                r["note"] = ("No published number exists for this cube; the baselines cut the same prediction, each "
                             "with the threshold that gave the lowest VOI on z 60-99 of the training region "
                             "(in brackets). Lower is better for every column.")
            results[name] = r
            print(json.dumps({name: r["metrics"]}), file=sys.stderr)
    path = os.path.join(args.out, "accuracy.json")
    existing = {}
    if os.path.exists(path):  # a run of some models keeps the others' last results
        with open(path) as f:
            existing = json.load(f)["results"]
    merged = {k: v for k, v in {**existing, **results}.items() if k in DATASETS}
    report = {"machine": machine, "date": time.strftime("%Y-%m-%d"), "published": PUBLISHED, "results": merged}
    os.makedirs(args.out, exist_ok=True)
    write_text_atomic(path, json.dumps(report, indent=1, default=float))
    write_text_atomic(args.markdown, markdown({k: merged[k] for k in DATASETS if k in merged}, machine))
    if args.update_cards:
        for name, r in results.items():
            path = os.path.join(ZOO_DIR, f"{name}.json")
            with open(path) as f:
                card = json.load(f)
            card["metrics"] = {"evaluated_on": r["protocol"], **{k: round(float(v), 4) for k, v in r["metrics"].items()}}
            if r.get("baselines"):
                card["metrics"]["baselines"] = {k: {m: round(float(x), 4) for m, x in v.items()}
                                                for k, v in r["baselines"].items()}
            m = r["metrics"]
            card["headline"] = (f"IoU {m['foreground_iou']:.3f}, AP50 {m['ap50']:.2f}" if "ap50" in m else
                                f"V_rand {m['v_rand']:.3f}" if "v_rand" in m else
                                f"VOI {m['voi']:.2f} (split {m['voi_split']:.2f}, merge {m['voi_merge']:.2f})")
            write_text_atomic(path, json.dumps(card, indent=1) + "\n")
    print(json.dumps(report, default=float))


if __name__ == "__main__":
    main()
