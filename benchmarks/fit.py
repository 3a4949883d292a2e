"""``emseg fit`` against the hand-written configs, in the same training minutes on this machine.

For each dataset (the protocols of ``../shared/data/README.md``, held-out parts as in
``benchmarks/accuracy.py``) and each seed, two runs see the same training part and the same minutes:

- **hand**: ``emseg train configs/models/NAME.yaml`` (the shipped model's config) with
  ``max_minutes`` set to the budget, then ``emseg segment`` with the shipped card's hand-chosen
  post-processing;
- **fit**: ``emseg fit TRAIN_RAW TRAIN_LABELS OUT --minutes M`` (plan from the data, train, tune the
  post-processing on the part of the training data it holds out), then
  ``emseg segment --model OUT``.

Both are scored on the held-out part with the scores of ``benchmarks/accuracy.py``. The gain of
the post-processing tuning alone is reported separately: the fit run's own test prediction cut
with the task's default post-processing and with the tuned one. Datasets:

=========  ===============================  ===============  ==========================
name       data                             trained on       scored on
=========  ===============================  ===============  ==========================
lucchi     Lucchi (EPFL) FIB-SEM mito       z 0-139          z 140-164
isbi       ISBI 2012 ssTEM membranes        sections 0-24    sections 25-29
cdeep3m    CDeep3M SBEM mito                training/        validation/
flyem      FlyEM medulla FIB-SEM neurons    z 0-109          z 110-149
=========  ===============================  ===============  ==========================

Prints one JSON object and merges it into ``--out`` (``benchmarks/results/fit.json``: a run of
some datasets or seeds keeps the others' results); writes the table to ``benchmarks/fit.md``.

Usage: ``python benchmarks/fit.py [--datasets lucchi,isbi,cdeep3m,flyem] [--minutes 5] [--seeds 0,1]
[--arms hand,fit,fit25d] [--work runs/bench-fit]`` (``fit25d``: ``emseg fit --context 1``, 2.5D, against
the plain fit); the fit runs' folders stay in ``--work`` (a model each:
``emseg segment IN OUT --model runs/bench-fit/fit-lucchi-0``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import accuracy  # noqa: E402 - the held-out scores, one home

DATASETS = {  # name -> shipped model (config and card), raw, labels, train part, held-out part (z ranges or files)
    "lucchi": dict(model="mito-fibsem", raw="lucchi/training.tif", labels="lucchi/training_groundtruth.tif",
                   train=(0, 140), test=(140, 165)),
    "isbi": dict(model="membrane-sstem", raw="isbi2012/train-volume.tif", labels="isbi2012/train-labels.tif",
                 train=(0, 25), test=(25, 30)),
    "cdeep3m": dict(model="mito-sbem", raw="cdeep3m_mito/training/images", labels="cdeep3m_mito/training/labels",
                    test_raw="cdeep3m_mito/validation/images", test_labels="cdeep3m_mito/validation/labels"),
    "flyem": dict(model="neurons-fibsem", raw="flyem_medulla/sample2_z000-149.h5:volumes/raw",
                  labels="flyem_medulla/sample2_z000-149.h5:volumes/labels/neuron_ids", train=(0, 110),
                  test=(110, 150)),
}
PRIMARY = {"instance": ("instance_mask_iou", False), "semantic": ("instance_mask_iou", False), "membranes": ("cells_v_rand", False), "neurons": ("voi", True)}


def _write(path, data, voxel_size):
    from emseg.config import ExecutionConfig
    from emseg.io import write_volume

    write_volume(path, data, voxel_size=voxel_size, execution=ExecutionConfig(overwrite=True, progress=False))
    return path


def prepare(name, data, work):
    """The training part and the held-out part of dataset ``name`` as Zarr volumes in ``work``."""
    from emseg.io import open_volume

    spec = DATASETS[name]
    out = {}
    for role, key, part in (("train", "raw", "train"), ("train", "labels", "train"),
                            ("test", "raw", "test"), ("test", "labels", "test")):
        src = spec.get(f"test_{key}") if role == "test" and f"test_{key}" in spec else spec[key]
        with open_volume(os.path.join(data, src)) as vol:
            roi = slice(*spec[part]) if part in spec else slice(None)
            arr, vs = np.asarray(vol[roi]), vol.voxel_size
        out[f"{role}_{key}"] = _write(os.path.join(work, f"{name}-{role}-{key}.zarr"), arr, vs)
        out[f"{role}_{key}_array"], out["voxel_size"] = arr, vs
    return out


def _cli(argv):
    from emseg.cli import main as emseg

    t0 = time.perf_counter()
    rc = emseg(argv)
    if rc != 0:
        raise SystemExit(f"emseg {' '.join(argv)} failed (exit {rc})")
    return time.perf_counter() - t0


def run_hand(name, d, minutes, seed, work):
    """The shipped config trained for ``minutes``; a model folder with the shipped card's post-processing."""
    from emseg.zoo import model_card

    spec = DATASETS[name]
    run = os.path.join(work, f"hand-{name}-{seed}")
    config = os.path.join(HERE, "..", "configs", "models", f"{spec['model']}.yaml")
    seconds = _cli(["train", config, "--set", f"raw=[{d['train_raw']}]", "--set", f"labels=[{d['train_labels']}]",
                    "--set", "val_roi=null", "--set", "val_fraction=0.0", "--set", f"max_minutes={minutes}",
                    "--set", f"seed={seed}", "--out-dir", os.path.join(run, "train"), "--overwrite", "--no-progress"])
    card = {**model_card(spec["model"]), "name": f"hand-{name}"}
    shutil.copyfile(os.path.join(run, "train", "latest.safetensors"), os.path.join(run, "model.safetensors"))
    with open(os.path.join(run, "model.json"), "w") as f:
        json.dump(card, f)
    return run, {"seconds": round(seconds, 1), **_train_stats(os.path.join(run, "train"))}


def run_fit(name, d, minutes, seed, work, context=None):
    run = os.path.join(work, f"fit-{name}-{seed}" if context is None else f"fit{context}-{name}-{seed}")
    seconds = _cli(["fit", d["train_raw"], d["train_labels"], run, "--minutes", str(minutes), "--seed", str(seed),
                    "--tune-minutes", "3", "--overwrite", "--no-progress",
                    *([] if context is None else ["--context", str(context)])])
    with open(os.path.join(run, "tuning.json")) as f:
        tuning = json.load(f)
    with open(os.path.join(run, "plan.yaml")) as f:
        plan = f.read()
    return run, {"seconds": round(seconds, 1), **_train_stats(os.path.join(run, "train")), "plan": plan,
                 "tuning": {k: tuning[k] for k in ("objective", "default", "tuned", "postprocess", "tried")}}


def _train_stats(run_dir):
    import csv

    with open(os.path.join(run_dir, "log.csv")) as f:
        rows = list(csv.DictReader(f))
    return {"steps": int(rows[-1]["step"]), "train_seconds": float(rows[-1]["seconds"])}


def score(name, d, model_dir, work, tag):
    """``emseg segment`` of the held-out raw with ``model_dir``; the held-out scores (accuracy.py's)."""
    from emseg.io import read_volume
    from emseg.models.reader import read_checkpoint
    from emseg.tasks import metric_set

    seg_path, prob_path = (os.path.join(work, f"{tag}-{k}.zarr") for k in ("seg", "prob"))
    seconds = _cli(["segment", d["test_raw"], seg_path, "--model", model_dir, "--keep-probabilities", prob_path,
                    "--overwrite", "--no-progress"])
    seg, prob = read_volume(seg_path), read_volume(prob_path).astype(np.float32)
    info = read_checkpoint(model_dir)
    metrics = _metrics(metric_set(info.task, info.task_params), d, seg, prob, info.card)
    return metrics, prob, info, seconds


def _metrics(metric_set, d, seg, prob, card):
    gt = d["test_labels_array"]
    if metric_set in ("instance", "semantic"):  # a binary plan's output is instances too (components)
        return accuracy.score_mito(gt, seg, prob, card)
    if metric_set == "membranes":
        return accuracy.score_membranes(gt, seg, prob)
    return accuracy.score_neurons(gt, seg, d["voxel_size"])


def tuning_gain(d, prob, info):
    """The fit run's held-out prediction cut with the task's default post-processing and with the tuned one."""
    from emseg.instances import segment
    from emseg.models.reader import postprocess_defaults
    from emseg.tasks import metric_set

    out = {}
    for label, p in (("defaults", postprocess_defaults(info.task, info.task_params)), ("tuned", info.postprocess())):
        seg = segment(prob, p.method, p.params, offsets=p.offsets, z_filter=p.z_filter, min_size=p.min_size)
        card = {"postprocess": {"z_filter": p.z_filter}}
        out[label] = _metrics(metric_set(info.task, info.task_params), d, seg, prob, card)
    return out


def summarize(results):
    """mean and spread (std over seeds) of every metric per dataset and arm; the primary metric's verdict."""
    from emseg.tasks import get_task
    from emseg.zoo import model_card

    summary = {}
    for name, by_seed in results.items():
        task = get_task(model_card(DATASETS[name]["model"])["target"]).metrics
        key, lower = PRIMARY[task]
        rows = {}
        for arm in ("hand", "fit", "fit25d"):
            vals = [r[arm]["metrics"] for r in by_seed.values() if arm in r]
            if not vals:
                continue
            keys = [k for k in vals[0] if all(isinstance(v.get(k), (int, float)) for v in vals)]  # in every seed
            rows[arm] = {k: {"mean": float(np.nanmean([v[k] for v in vals])),
                             "std": float(np.nanstd([v[k] for v in vals])), "n": len(vals)} for k in keys}
            rows[arm]["wall_minutes"] = float(np.mean([r[arm]["seconds"] for r in by_seed.values() if arm in r])) / 60
        gains = [r["tuning_gain"] for r in by_seed.values() if "tuning_gain" in r]
        if gains:
            rows["tuning"] = {f"{label}_{key}": float(np.mean([g[label][key] for g in gains]))
                              for label in ("defaults", "tuned")}
        if "hand" in rows and "fit" in rows:
            h, f = rows["hand"][key]["mean"], rows["fit"][key]["mean"]
            rows["primary"] = {"metric": key, "lower_is_better": lower, "hand": h, "fit": f,
                               "fit_at_least_as_good": bool(f <= h if lower else f >= h)}
        if "fit" in rows and "fit25d" in rows:
            f, c = rows["fit"][key]["mean"], rows["fit25d"][key]["mean"]
            rows["context"] = {"metric": key, "lower_is_better": lower, "fit": f, "fit25d": c,
                               "2.5d_better": bool(c < f if lower else c > f)}
        summary[name] = rows
    return summary


def markdown(report):
    lines = ["# `emseg fit` against the hand-written configs", "",
             f"Written by `benchmarks/fit.py` on {report['machine']}, {report['minutes']} training minutes per run "
             "(both arms), seeds as listed; mean ± spread (std) over seeds. *hand*: `configs/models/NAME.yaml` "
             "trained with `max_minutes` = the budget, segmented with the shipped card's post-processing. *fit*: "
             "`emseg fit` on the same training part (it holds out its last ~15% for tuning), segmented with "
             "`--model OUT_DIR`. Scored on the held-out part. The shipped cards' post-processing (the hand arm's) "
             "was chosen by hand when the models shipped, partly looking at held-out scores; fit chooses its own on "
             "training data only. Wall minutes: training plus, for fit, measuring a step, tuning and writing "
             "the card (training minutes are the same).", "",
             "| dataset | metric | hand | fit | fit ≥ hand | tuning alone: defaults → tuned | wall minutes hand / fit |",
             "|---|---|---|---|---|---|---|"]
    for name, rows in report["summary"].items():
        p = rows.get("primary")
        if not p:
            continue
        key = p["metric"]
        h, f = rows["hand"][key], rows["fit"][key]
        t = rows.get("tuning", {})
        lines.append(f"| {name} | {key}{' (lower is better)' if p['lower_is_better'] else ''} | "
                     f"{h['mean']:.4f} ± {h['std']:.4f} (n={h['n']}) | {f['mean']:.4f} ± {f['std']:.4f} (n={f['n']}) | "
                     f"{'yes' if p['fit_at_least_as_good'] else 'no'} | "
                     f"{t.get(f'defaults_{key}', float('nan')):.4f} → {t.get(f'tuned_{key}', float('nan')):.4f} | "
                     f"{rows['hand']['wall_minutes']:.1f} / {rows['fit']['wall_minutes']:.1f} |")
    both = {n: r for n, r in report["summary"].items() if "context" in r}
    if both:
        lines += ["", "## 2.5D: the fit's plan with `--context 1` (the sections above and below as input channels)",
                  "", "| dataset | metric | fit (2D) | fit --context 1 | 2.5D better | foreground IoU 2D / 2.5D |",
                  "|---|---|---|---|---|---|"]
        for name, rows in both.items():
            key, (f, c) = rows["context"]["metric"], (rows["fit"][rows["context"]["metric"]],
                                                      rows["fit25d"][rows["context"]["metric"]])
            fg = [rows[a].get("foreground_iou", {}).get("mean", float("nan")) for a in ("fit", "fit25d")]
            lines.append(f"| {name} | {key} | {f['mean']:.4f} ± {f['std']:.4f} (n={f['n']}) | {c['mean']:.4f} ± "
                         f"{c['std']:.4f} (n={c['n']}) | {'yes' if rows['context']['2.5d_better'] else 'no'} | "
                         f"{fg[0]:.4f} / {fg[1]:.4f} |")
    lines += ["", "## The plans (seed 0)", ""]
    for name, by_seed in report["results"].items():
        first = by_seed.get("0", {}).get("fit") or next((r["fit"] for r in by_seed.values() if "fit" in r), None)
        if first:
            lines += [f"### {name}", "", "```yaml", first["plan"].rstrip(), "```", ""]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--minutes", type=float, default=5.0, help="training minutes per run (both arms)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--arms", default="hand,fit", help="which runs: hand, fit, fit25d (fit --context 1)")
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--work", default=os.path.join(HERE, "..", "runs", "bench-fit"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "fit.json"))
    ap.add_argument("--markdown", default=os.path.join(HERE, "fit.md"))
    args = ap.parse_args()

    import platform

    import torch

    from emseg.io.atomic import write_text_atomic

    os.makedirs(args.work, exist_ok=True)
    machine = f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}"
    results = {}
    if os.path.exists(args.out):  # a run of some datasets or seeds keeps the others' results
        with open(args.out) as f:
            old = json.load(f)
        if old.get("minutes") == args.minutes:
            results = old["results"]
    for name in args.datasets.split(","):
        d = prepare(name, args.data, args.work)
        for seed in (int(s) for s in args.seeds.split(",")):
            r = results.setdefault(name, {}).setdefault(str(seed), {})
            for arm, fn in (("hand", run_hand), ("fit", run_fit),
                            ("fit25d", lambda *a: run_fit(*a, context=1))):
                if arm not in args.arms.split(","):
                    continue
                print(f"{name} seed {seed}: {arm} ...", file=sys.stderr)
                model_dir, stats = fn(name, d, args.minutes, seed, args.work)
                metrics, prob, info, seg_s = score(name, d, model_dir, args.work, f"{arm}-{name}-{seed}")
                r[arm] = {**stats, "segment_seconds": round(seg_s, 1),
                          "metrics": {k: float(v) for k, v in metrics.items()}}
                if arm == "fit":  # the tuning's own gain: of the plain fit
                    r["tuning_gain"] = tuning_gain(d, prob, info)
                print(json.dumps({name: {arm: r[arm]["metrics"]}}), file=sys.stderr)
            report = {"machine": machine, "date": time.strftime("%Y-%m-%d"), "minutes": args.minutes,
                      "results": results, "summary": summarize(results)}
            os.makedirs(os.path.dirname(args.out), exist_ok=True)
            write_text_atomic(args.out, json.dumps(report, indent=1, default=float))
            write_text_atomic(args.markdown, markdown(report))
    print(json.dumps(report, default=float))


if __name__ == "__main__":
    main()
