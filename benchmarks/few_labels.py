"""Learning curves from few labels: held-out foreground IoU against the number of labelled sections.

Every point is one ``emseg fit`` run on the training part of a dataset with only ``n`` of its
sections labelled (``--sections``: the others are unknown and never read), the same training minutes
for every run on this machine, then ``emseg segment --model OUT`` on the held-out part, scored with
``benchmarks/accuracy.py``'s scorer (foreground IoU of the probabilities > 0.5; the instance mask
IoU and AP/PQ of the segmentation are kept too). Arms:

- ``scratch``: from random weights;
- ``finetune``: ``--init`` a shipped model trained on *other* data (Lucchi <- mito-sbem, CDeep3M <- mito-fibsem,
  FlyEM <- membrane-sstem);
- ``finetune_semi``: the same with ``--semi mean_teacher`` on the unlabelled rest of the training part;
- ``scratch_semi``: a mean teacher from random weights;
- ``scratch_propagate``, ``finetune_propagate``: ``--semi propagate`` (4S: the labelled sections' labels
  spread to their neighbours in rounds of pseudo-labels, :mod:`emseg.fit.propagate`), from random weights
  or from the other data's model (only with labelled sections: not at ``all``);
- ``finetune_freeze``, ``finetune_lr01``, ``finetune_adabn``: the fine-tuning choices against ``finetune``'s
  defaults: the encoder frozen, the loaded weights at a tenth of the learning rate, BatchNorm statistics
  re-estimated on 32 batches first (AdaBN);
- ``finetune_lr01_semi``: ``finetune_lr01`` with the mean teacher (the best fine-tuning choice plus the unlabelled rest);
- ``finetune_semivol``, ``scratch_semivol``: the mean teacher on the whole volume a researcher has, the sections to be
  segmented included (``--unlabelled`` the held-out part's raw; transductive: its labels are never read, only
  scored), from the other data's model or from random weights;
- ``pretrain_finetune``: ``--init`` the result of ``emseg pretrain`` on the case's training raw (no labels;
  ``--pretrain-minutes``, once per case, its time reported apart from the runs' minutes).

``n`` = ``all`` is the fully supervised run (no ``--sections``), the reference of the "90% of full
supervision" goal. The labelled sections are spread evenly over the training part (the same for
every seed and arm; the spread over seeds is the training's). Cases (``../shared/data/README.md``):

=========  =====================================  ==============  ===================
case       data                                   labels from     scored on
=========  =====================================  ==============  ===================
lucchi     Lucchi (EPFL) FIB-SEM mitochondria     z 0-139         z 140-164
cdeep3m    CDeep3M SBEM mitochondria              training/       validation/
flyem      FlyEM medulla FIB-SEM neurons          z 0-109         z 110-149 (VOI)
=========  =====================================  ==============  ===================

``flyem`` is the cross-modality case: ``finetune`` starts from the ISBI 2012 ssTEM membrane model
(``membrane-sstem``, 2D), which keeps its output and learns the boundaries between the neuron ids
(:func:`emseg.fit.target_choice.choose_target`); ``scratch`` gets the plan's own target (affinities).
Both cut neurons, so the curves score the neurons' VOI (split + merge, lower is better).

Adaptation without labels (``--adapt``): the shipped ``mito-fibsem`` (Lucchi FIB-SEM) applied as it is
to CDeep3M ``validation/``, against the same model adapted by ``emseg fit RAW OUT --init mito-fibsem``
to the raw of CDeep3M ``training/`` (no labels read), both scored on ``validation/``.

Adaptation from a labelled source (``--source-adapt cdeep3m``): ``emseg fit CDEEP3M_RAW OUT --source
LUCCHI_RAW LUCCHI_LABELS`` (trained on Lucchi's labels, the mean teacher on CDeep3M ``training/``'s raw, the
model written with CDeep3M's normalisation and BatchNorm statistics) against ``emseg fit`` on Lucchi alone in
the same minutes, both scored on CDeep3M ``validation/``.

The fine-tuning curve over time is the trainer's validation IoU (``log.csv``, on the part the fit
holds out) against training seconds; points with fewer than 3 labelled sections hold nothing out and
have none. Prints one JSON object and merges it into ``--out`` (a run of some cases, counts, arms
or seeds keeps the others), writes the table to ``--markdown`` and the curves to ``--plot`` (PNG).

Usage: ``python benchmarks/few_labels.py [--cases lucchi,cdeep3m,flyem] [--counts 1,2,5,10,all]
[--arms scratch,finetune,finetune_semi] [--seeds 0,1] [--minutes 5] [--adapt cdeep3m] [--source-adapt cdeep3m]
[--work runs/bench-few]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fit as fit_bench  # noqa: E402 - the datasets' parts and accuracy.py's held-out scores, one home

CASES = {"lucchi": {"dataset": "lucchi", "other": "mito-sbem"},
         "cdeep3m": {"dataset": "cdeep3m", "other": "mito-fibsem"},
         "flyem": {"dataset": "flyem", "other": "membrane-sstem", "primary": ("voi", True)}}
"""Case -> its dataset (``benchmarks/fit.py``), the shipped model trained on other data, and the score
of the curves when it is not the foreground IoU: (metric, lower is better)."""
ARMS = {"scratch": [], "finetune": ["--init", "{other}"], "finetune_semi": ["--init", "{other}", "--semi", "mean_teacher"],
        "scratch_semi": ["--semi", "mean_teacher"], "pretrain_finetune": ["--init", "{pretrained}"],
        "scratch_propagate": ["--semi", "propagate"], "finetune_propagate": ["--init", "{other}", "--semi", "propagate"],
        "finetune_freeze": ["--init", "{other}", "--freeze", "encoder"],
        "finetune_lr01": ["--init", "{other}", "--init-lr-scale", "0.1"],
        "finetune_adabn": ["--init", "{other}", "--adabn", "32"],
        "finetune_lr01_semi": ["--init", "{other}", "--init-lr-scale", "0.1", "--semi", "mean_teacher"],
        "finetune_semivol": ["--init", "{other}", "--semi", "mean_teacher", "--unlabelled", "{heldout}"],
        "scratch_semivol": ["--semi", "mean_teacher", "--unlabelled", "{heldout}"]}
PRIMARY = "foreground_iou"


def primary(case):
    """(metric, lower is better) of ``case``'s curves: the foreground IoU, or VOI for the neurons of FlyEM."""
    return CASES.get(case, {}).get("primary", (PRIMARY, False))

META = ("goal_2_sections", "unlabelled_gain", "at_2_minutes")
"""Keys of a case's summary that are verdicts, not arms."""
ADAPT = {"cdeep3m": {"dataset": "cdeep3m", "model": "mito-fibsem"}}
SOURCE = {"cdeep3m": "lucchi"}
"""--source-adapt: the target case and the labelled source dataset it is adapted from."""


def spread_sections(labels, n, name):
    """``n`` labelled sections spread evenly over ``labels`` (a zyx array): the centre of each of ``n``
    equal parts, moved to the nearest section that holds foreground."""
    nz = labels.shape[0]
    if n > nz:
        raise SystemExit(f"{name}: {n} labelled sections asked, the training part has {nz}")
    has = np.array([bool(labels[z].any()) for z in range(nz)])
    chosen = []
    for i in range(n):
        z = int((i + 0.5) * nz / n)
        order = sorted(range(nz), key=lambda k: (abs(k - z), k))
        z = next(k for k in order if has[k] and k not in chosen)
        chosen.append(z)
    return sorted(chosen)


def pretrained(case, d, minutes, work):
    """``emseg pretrain`` on the case's training raw (kept in ``work``: run once per case); its checkpoint."""
    out = os.path.join(work, f"pretrain-{case}")
    if not os.path.exists(os.path.join(out, "latest.safetensors")):
        fit_bench._cli(["pretrain", d["train_raw"], out, "--minutes", str(minutes), "--no-progress"])
    return os.path.join(out, "latest.safetensors")


def run_point(case, d, arm, count, seed, minutes, work, pretrain_minutes=10.0):
    """One fit (arm, count of labelled sections, seed) and its held-out scores."""
    spec = CASES[case]
    tag = f"{case}-{arm}-{count}-{seed}"
    out = os.path.join(work, f"fit-{tag}")
    pre = pretrained(case, d, pretrain_minutes, work) if arm == "pretrain_finetune" else None
    args = [a.format(other=spec["other"], pretrained=pre, heldout=d["test_raw"]) for a in ARMS[arm]]
    sections = None
    if count != "all":
        sections = spread_sections(d["train_labels_array"], int(count), case)
        args += ["--sections", ",".join(map(str, sections))]
    t0 = time.perf_counter()
    fit_bench._cli(["fit", d["train_raw"], d["train_labels"], out, "--minutes", str(minutes), "--seed", str(seed),
                    "--tune-minutes", "2", "--overwrite", "--no-progress", *args])
    seconds = time.perf_counter() - t0
    metrics, _, _, seg_seconds = fit_bench.score(spec["dataset"], d, out, work, tag)
    with open(os.path.join(out, "tuning.json")) as f:
        tuning = json.load(f)
    return {"sections": sections, "seconds": round(seconds, 1), "segment_seconds": round(seg_seconds, 1),
            **fit_bench._train_stats(os.path.join(out, "train")), "curve": _curve(os.path.join(out, "train")),
            "tuning": {k: tuning.get(k) for k in ("objective", "default", "tuned", "postprocess", "note")},
            "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}}


def run_adaptation(case, d, seed, minutes, work):
    """The shipped model as it is and adapted without labels to the case's training raw; held-out scores of both."""
    spec = ADAPT[case]
    out = os.path.join(work, f"adapt-{case}-{seed}")
    t0 = time.perf_counter()
    fit_bench._cli(["fit", d["train_raw"], out, "--init", spec["model"], "--minutes", str(minutes), "--seed", str(seed),
                    "--overwrite", "--no-progress"])
    seconds = time.perf_counter() - t0
    adapted, _, _, _ = fit_bench.score(spec["dataset"], d, out, work, f"adapt-{case}-{seed}")
    shipped, _, _, _ = fit_bench.score(spec["dataset"], d, spec["model"], work, f"shipped-{case}")
    keep = (PRIMARY, "instance_mask_iou", "foreground_precision", "foreground_recall", "ap50", "pq")
    return {"model": spec["model"], "seconds": round(seconds, 1), **fit_bench._train_stats(os.path.join(out, "train")),
            "as_shipped": {k: float(shipped[k]) for k in keep}, "adapted": {k: float(adapted[k]) for k in keep}}


def run_source_adaptation(case, d, source, seed, minutes, work):
    """``emseg fit TARGET OUT --source RAW LABELS`` against the same fit on the source alone, the same minutes;
    both scored on the target's held-out part."""
    keep = (PRIMARY, "instance_mask_iou", "foreground_precision", "foreground_recall", "ap50", "pq")
    point = {"source": SOURCE[case]}
    for arm in ("source_only", "adapted"):
        out = os.path.join(work, f"{arm}-{SOURCE[case]}-to-{case}-{seed}")
        argv = (["fit", source["train_raw"], source["train_labels"], out] if arm == "source_only" else
                ["fit", d["train_raw"], out, "--source", source["train_raw"], source["train_labels"]])
        t0 = time.perf_counter()
        fit_bench._cli([*argv, "--minutes", str(minutes), "--seed", str(seed), "--tune-minutes", "2", "--overwrite",
                        "--no-progress"])
        metrics, _, _, _ = fit_bench.score(CASES[case]["dataset"], d, out, work, f"{arm}-{case}-{seed}")
        point[arm] = {k: float(metrics[k]) for k in keep}
        point[f"{arm}_seconds"] = round(time.perf_counter() - t0, 1)
    return point


def _curve(run_dir):
    """(seconds, validation IoU) of every validation in the run's log."""
    with open(os.path.join(run_dir, "log.csv")) as f:
        return [[float(r["seconds"]), float(r["val_iou"])] for r in csv.DictReader(f) if r.get("val_iou")]


def summarize(results):
    """Mean and std over seeds of the primary metric per case, arm and count; the goals' verdicts."""
    summary = {}
    for case, arms in results.items():
        rows = {}
        metric, lower = primary(case)
        for arm, counts in arms.items():
            rows[arm] = {}
            for count, seeds in counts.items():
                vals = [s["metrics"][metric] for s in seeds.values()]
                inst = [s["metrics"].get("instance_mask_iou", np.nan) for s in seeds.values()]
                steps = [s["steps"] for s in seeds.values() if s.get("steps")]
                rows[arm][count] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals),
                                    "instance_mask_iou": float(np.nanmean(inst)),
                                    "steps": int(np.mean(steps)) if steps else None}
        full = [rows[a]["all"]["mean"] for a in rows if "all" in rows[a]]
        if full and not lower:
            ref = max(full)
            rows["goal_2_sections"] = {a: rows[a]["2"]["mean"] / ref for a in rows if "2" in rows.get(a, {})}
        gains = {}  # what learning from the unlabelled rest adds over the same start, supervised only
        for arm in [a for a in rows if a.endswith(("_semi", "_semivol", "_propagate"))]:
            base = arm.rsplit("_", 1)[0]
            for count in ("1", "2"):
                if count in rows[arm] and count in rows.get(base, {}):
                    gains[f"{arm}-{count}"] = (rows[arm][count]["mean"] - rows[base][count]["mean"]) * (-1 if lower else 1)
        if gains:
            rows["unlabelled_gain"] = gains
        early = {}  # the validation IoU within the first 2 training minutes as a fraction of the run's last
        for arm, counts in arms.items():
            for count, seeds in counts.items():
                fr = [max([v for t, v in s["curve"] if t <= 120] or [0.0]) / s["curve"][-1][1]
                      for s in seeds.values() if s.get("curve") and s["curve"][-1][1] > 0]
                if fr:
                    early[f"{arm}-{count}"] = {"mean": float(np.mean(fr)), "min": float(np.min(fr)), "n": len(fr)}
        if early:
            rows["at_2_minutes"] = early
        summary[case] = rows
    return summary


def adaptation_summary(adaptation):
    out = {}
    for case, seeds in adaptation.items():
        out[case] = {arm: {"mean": float(np.mean([s[arm][PRIMARY] for s in seeds.values()])),
                           "std": float(np.std([s[arm][PRIMARY] for s in seeds.values()])), "n": len(seeds)}
                     for arm in ("as_shipped", "adapted")}
        out[case]["model"] = next(iter(seeds.values()))["model"]
    return out


def source_summary(runs):
    return {case: {"source": next(iter(seeds.values()))["source"],
                   **{arm: {"mean": float(np.mean([s[arm][PRIMARY] for s in seeds.values()])),
                            "std": float(np.std([s[arm][PRIMARY] for s in seeds.values()])), "n": len(seeds)}
                      for arm in ("source_only", "adapted")}} for case, seeds in runs.items()}


def markdown(report):
    counts = ["1", "2", "5", "10", "all"]
    lines = ["# Learning from few labels", "",
             f"Written by `benchmarks/few_labels.py` on {report['machine']}: {report['minutes']} training minutes per "
             f"run, held-out {PRIMARY} (probabilities > 0.5; FlyEM: VOI of the neurons, lower is better) as mean ± std "
             "over seeds (n; the mean training steps the minutes gave: fewer where other work shared the 2 cores, so compare "
             "arms at similar steps); columns: labelled sections of the training part (`all`: fully supervised).", ""]
    for case, rows in report.get("summary", {}).items():
        metric, lower = primary(case)
        lines += [f"## {case}" + (f" ({metric}, lower is better)" if lower else ""), "",
                  "| arm | " + " | ".join(counts) + " |", "|---" * (len(counts) + 1) + "|"]
        for arm, by_count in rows.items():
            if arm in META:
                continue
            cells = [f"{by_count[c]['mean']:.3f} ± {by_count[c]['std']:.3f} ({by_count[c]['n']}; "
                     f"{by_count[c].get('steps') or '?'} steps)" if c in by_count
                     else "" for c in counts]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        goal = rows.get("goal_2_sections")
        if goal:
            lines += ["", "2 labelled sections as a fraction of the best fully supervised run: " +
                      ", ".join(f"{a} {v:.0%}" for a, v in goal.items())]
        if rows.get("unlabelled_gain"):
            unit, scale = (f"{metric} lower by", 1) if lower else ("IoU points", 100)
            lines += ["", f"What the unlabelled rest adds over the same start without it ({unit}): " +
                      ", ".join(f"{k} {scale * v:+.{3 if lower else 1}f}" for k, v in rows["unlabelled_gain"].items())]
        if rows.get("at_2_minutes"):
            lines += ["", "Validation IoU (the part the fit holds out) within the first 2 training minutes, as a fraction "
                      "of the run's last: " + ", ".join(f"{k} {v['mean']:.0%} (min {v['min']:.0%}, n={v['n']})"
                                                       for k, v in rows["at_2_minutes"].items())]
        lines.append("")
    for case, rows in report.get("adaptation_summary", {}).items():
        lines += _two_rows(f"Adaptation without labels: {rows['model']} on {case}", f"held-out {PRIMARY}",
                           ("as shipped", rows["as_shipped"]),
                           (f"adapted (`emseg fit RAW OUT --init {rows['model']}`)", rows["adapted"]))
    for case, rows in report.get("source_summary", {}).items():
        lines += _two_rows(f"Adaptation from a labelled source: {rows['source']} labels, {case} raw without labels",
                           f"held-out {PRIMARY} on {case} (the same minutes)",
                           (f"`emseg fit` on {rows['source']} alone", rows["source_only"]),
                           (f"`emseg fit {case.upper()}_RAW OUT --source ...`", rows["adapted"]))
    return "\n".join(lines) + "\n"


def _two_rows(title, column, *rows):
    return [f"## {title}", "", f"| | {column} |", "|---|---|",
            *(f"| {name} | {v['mean']:.3f} ± {v['std']:.3f} ({v['n']}) |" for name, v in rows), ""]


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(report["summary"])
    fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 4), squeeze=False)
    for ax, case in zip(axes[0], cases):
        for arm, by_count in report["summary"][case].items():
            if arm in META:
                continue
            pts = sorted((int(c), v) for c, v in by_count.items() if c != "all")
            if pts:
                x = [p[0] for p in pts]
                ax.errorbar(x, [p[1]["mean"] for p in pts], yerr=[p[1]["std"] for p in pts], marker="o",
                            capsize=3, label=arm)
            if "all" in by_count:
                ax.axhline(by_count["all"]["mean"], linestyle=":", color="gray")
        ax.set_xscale("log")
        ax.set_xticks([1, 2, 5, 10], ["1", "2", "5", "10"])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("labelled sections")
        ax.set_ylabel(f"held-out {primary(case)[0]}" + (" (lower is better)" if primary(case)[1] else ""))
        ax.set_title(f"{case} ({report['minutes']} min per run; dotted: all labelled)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--counts", default="1,2,5,10,all")
    ap.add_argument("--arms", default="scratch,finetune,finetune_semi")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--minutes", type=float, default=5.0, help="training minutes per run")
    ap.add_argument("--pretrain-minutes", type=float, default=10.0, help="emseg pretrain's minutes (once per case)")
    ap.add_argument("--adapt", default="", help="adaptation cases without labels (cdeep3m), run after the curves")
    ap.add_argument("--source-adapt", default="", help="adaptation from a labelled source (cdeep3m: from Lucchi), "
                    "run after the curves")
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--work", default="runs/bench-few")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "few_labels.json"))
    ap.add_argument("--markdown", default=os.path.join(HERE, "few_labels.md"))
    ap.add_argument("--plot", default=os.path.join(HERE, "few_labels.png"))
    a = ap.parse_args()
    cases, arms = a.cases.split(","), a.arms.split(",")
    for name, pool in (("case", CASES), ("arm", ARMS)):
        bad = [v for v in (cases if name == "case" else arms) if v not in pool]
        if bad:
            raise SystemExit(f"--{name}s: unknown {', '.join(bad)}; valid: {', '.join(pool)}")
    if not os.path.isdir(a.data):
        raise SystemExit(f"--data {a.data}: no such folder (../shared/data)")
    os.makedirs(a.work, exist_ok=True)
    report = {"results": {}}
    if os.path.exists(a.out):
        with open(a.out) as f:
            report = json.load(f)
        if report.get("minutes") not in (None, a.minutes):
            raise SystemExit(f"--out {a.out} holds runs of {report['minutes']} minutes; give another --out for "
                             f"{a.minutes}")
    results = report["results"]
    report.update(machine=f"{platform.machine()} CPU, {os.cpu_count()} cores", date=time.strftime("%Y-%m-%d"),
                  minutes=a.minutes)
    for case in cases:
        d = fit_bench.prepare(CASES[case]["dataset"], a.data, a.work)
        for count in [c for c in a.counts.split(",") if c]:  # --counts "": only the adaptations
            for arm in arms:
                for seed in a.seeds.split(","):
                    if count == "all" and arm.endswith("_propagate"):  # nothing to propagate to
                        continue
                    print(f"{case} {arm} {count} sections, seed {seed} ...", flush=True)
                    point = run_point(case, d, arm, count, int(seed), a.minutes, a.work, a.pretrain_minutes)
                    results.setdefault(case, {}).setdefault(arm, {}).setdefault(count, {})[seed] = point
                    report.update(results=results, summary=summarize(results))
                    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
                    with open(a.out, "w") as f:
                        json.dump(report, f, indent=1)
    for case in [c for c in a.adapt.split(",") if c]:
        if case not in ADAPT:
            raise SystemExit(f"--adapt: unknown {case}; valid: {', '.join(ADAPT)}")
        d = fit_bench.prepare(ADAPT[case]["dataset"], a.data, a.work)
        for seed in a.seeds.split(","):
            print(f"adapting {ADAPT[case]['model']} to {case} without labels, seed {seed} ...", flush=True)
            report.setdefault("adaptation", {}).setdefault(case, {})[seed] = run_adaptation(case, d, int(seed),
                                                                                          a.minutes, a.work)
            report["adaptation_summary"] = adaptation_summary(report["adaptation"])
            with open(a.out, "w") as f:
                json.dump(report, f, indent=1)
    for case in [c for c in a.source_adapt.split(",") if c]:
        if case not in SOURCE:
            raise SystemExit(f"--source-adapt: unknown {case}; valid: {', '.join(SOURCE)}")
        d = fit_bench.prepare(CASES[case]["dataset"], a.data, a.work)
        source = fit_bench.prepare(SOURCE[case], a.data, a.work)
        for seed in a.seeds.split(","):
            print(f"adapting from {SOURCE[case]} labels to {case}, seed {seed} ...", flush=True)
            report.setdefault("source_adaptation", {}).setdefault(case, {})[seed] = run_source_adaptation(
                case, d, source, int(seed), a.minutes, a.work)
            report["source_summary"] = source_summary(report["source_adaptation"])
            with open(a.out, "w") as f:
                json.dump(report, f, indent=1)
    with open(a.markdown, "w") as f:
        f.write(markdown(report))
    if report.get("summary"):
        plot(report, a.plot)
    print(json.dumps({k: report.get(k) for k in ("summary", "adaptation_summary")}, indent=1))


if __name__ == "__main__":
    main()
