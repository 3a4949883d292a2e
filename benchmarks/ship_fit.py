"""Ship an ``emseg fit`` model in place of a shipped one, where it is better on the held-out part.

For each dataset of ``benchmarks/fit.py`` named, the fit run ``--work/fit-NAME-SEED`` (made by
``benchmarks/fit.py --arms fit``) is compared with the shipped model's card, both scored by
``benchmarks/accuracy.py`` on the same held-out part (the fit run's scores are in ``--results``,
the shipped card's ``metrics`` were written by ``accuracy.py --update-cards``). Only a better fit
is shipped: its weights become ``src/emseg/zoo/MODEL.safetensors``, its plan
``configs/fit/MODEL.yaml``, and the card keeps the data, licence and citation of the old one with
``made_by: emseg fit``, the fit's architecture, training, tuned post-processing and weights; then
``accuracy.py --models MODEL --update-cards`` scores the shipped file again and writes its metrics.

Usage: ``python benchmarks/ship_fit.py --datasets flyem --results runs/fit30/fit.json --work runs/bench-fit30
[--seed 0] [--dry-run]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fit as fit_bench  # noqa: E402

ZOO = os.path.join(HERE, "..", "src", "emseg", "zoo")
LOWER_IS_BETTER = {"voi"}


def primary(name):
    """The held-out metric ``benchmarks/fit.py`` compares on for dataset ``name``."""
    from emseg.tasks import get_task
    from emseg.zoo import model_card

    task = get_task(model_card(fit_bench.DATASETS[name]["model"])["target"]).metrics
    return fit_bench.PRIMARY[task][0]


def better(key, new, old):
    return new < old if key in LOWER_IS_BETTER else new > old


def ship(name, run_dir, result, minutes):
    """Copy the fit's weights and plan into the repository and write the card (metrics follow)."""
    model = fit_bench.DATASETS[name]["model"]
    old_path = os.path.join(ZOO, f"{model}.json")
    with open(old_path) as f:
        old = json.load(f)
    with open(os.path.join(run_dir, "model.json")) as f:
        new = json.load(f)
    with open(os.path.join(run_dir, "model.safetensors"), "rb") as f:
        weights = f.read()
    with open(os.path.join(ZOO, f"{model}.safetensors"), "wb") as f:
        f.write(weights)
    os.makedirs(os.path.join(HERE, "..", "configs", "fit"), exist_ok=True)
    plan_dst = os.path.join(HERE, "..", "configs", "fit", f"{model}.yaml")
    with open(os.path.join(run_dir, "plan.yaml")) as f:
        plan = f.read()
    with open(plan_dst, "w") as f:
        f.write(f"# The plan `emseg fit` made for {model} (benchmarks/fit.py --datasets {name} --minutes {minutes:g} "
                "--arms fit; benchmarks/ship_fit.py shipped it).\n# raw/labels were the training part written by "
                "benchmarks/fit.py from ../shared/data.\n" + plan)
    t = new["training"]
    import yaml

    z0, z1 = (int(v) for v in yaml.safe_load(plan)["val_roi"].split(":"))
    card = dict(old)
    card.update(
        made_by="emseg fit",
        architecture=new["architecture"],
        postprocess=new["postprocess"],
        tuning={**new["tuning"], "on": f"sections {z0}-{z1 - 1} of the training part, held out from training"},
        weights={**new["weights"], "file": f"{model}.safetensors", "sha256": hashlib.sha256(weights).hexdigest(),
                 "bytes": len(weights)},
        training={**old["training"], "config": f"configs/fit/{model}.yaml",
                  "made_by": f"emseg fit --minutes {minutes:g} (benchmarks/fit.py --datasets {name} --arms fit)",
                  "trained_on": t["data"].rsplit(",", 1)[-1].strip(),
                  **{k: t[k] for k in ("steps", "minutes", "patches_per_second", "patch_shape", "batch_size", "machine",
                                       "final_loss") if k in t}},
    )
    if "limitations" in card:
        card["limitations"] = (card["limitations"] + f" Since this release: planned, trained ({t['minutes']:g} min) "
                               "and tuned by `emseg fit`.")
    with open(old_path, "w") as f:
        f.write(json.dumps(card, indent=1) + "\n")
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", required=True)
    ap.add_argument("--results", required=True, help="benchmarks/fit.py's --out of the fit runs")
    ap.add_argument("--work", required=True, help="benchmarks/fit.py's --work of the fit runs")
    ap.add_argument("--seed", default="0")
    ap.add_argument("--dry-run", action="store_true", help="compare only")
    a = ap.parse_args()
    from emseg.zoo import model_card

    with open(a.results) as f:
        report = json.load(f)
    verdicts, shipped = {}, []
    for name in a.datasets.split(","):
        result = report["results"][name][a.seed]["fit"]
        key = primary(name)
        model = fit_bench.DATASETS[name]["model"]
        old = model_card(model)["metrics"][key]
        new = result["metrics"][key]
        verdicts[name] = {"model": model, "metric": key, "shipped": old, "fit": new, "ship": better(key, new, old)}
        if verdicts[name]["ship"] and not a.dry_run:
            shipped.append(ship(name, os.path.join(a.work, f"fit-{name}-{a.seed}"), result, report["minutes"]))
    if shipped:
        subprocess.run([sys.executable, os.path.join(HERE, "accuracy.py"), "--models", ",".join(shipped),
                        "--update-cards"], check=True)
    print(json.dumps(verdicts, indent=1))


if __name__ == "__main__":
    main()
