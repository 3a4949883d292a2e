"""Ship trained models: copy a training run's final checkpoint into ``src/emseg/zoo`` and record the run
in the model card (steps, minutes, patches/s, machine, parameters, checkpoint checksum).

Each model is trained with ``emseg train configs/models/NAME.yaml`` (out_dir ``runs/NAME``); its
card ``src/emseg/zoo/NAME.json`` is written by hand (purpose, data, license, post-processing) and
its ``metrics`` by ``benchmarks/accuracy.py --update-cards``.

Usage: ``python benchmarks/ship_models.py NAME [NAME ...] [--runs runs]``
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+")
    ap.add_argument("--runs", default="runs", help="folder holding runs/NAME/latest.safetensors")
    args = ap.parse_args()

    import torch

    from emseg.io.atomic import write_bytes_atomic, write_text_atomic
    from emseg.models import load_model, read_model_header
    from emseg.zoo import ZOO_DIR

    for name in args.names:
        card_path = os.path.join(ZOO_DIR, f"{name}.json")
        if not os.path.exists(card_path):
            raise SystemExit(f"{card_path}: write the model card first")
        ckpt = os.path.join(args.runs, name, "latest.safetensors")
        with open(os.path.join(args.runs, name, "log.csv")) as f:
            rows = list(csv.DictReader(f))
        header = read_model_header(ckpt)
        net = load_model(ckpt)
        config = header.extra["config"]
        steps = int(rows[-1]["step"])
        times = [float(r["seconds"]) for r in rows]  # elapsed time restarts when a run is resumed
        seconds = sum(t for t, nxt in zip(times, times[1:] + [0.0]) if nxt < t)
        dst = os.path.join(ZOO_DIR, f"{name}.safetensors")
        with open(ckpt, "rb") as f:
            data = f.read()
        write_bytes_atomic(dst, data)
        digest = hashlib.sha256(data).hexdigest()
        with open(card_path) as f:
            card = json.load(f)
        card["training"].update({
            "steps": steps, "minutes": round(seconds / 60, 1),
            "patches_per_second": round(steps * config["batch_size"] / seconds, 1),
            "patch_shape": config["patch_shape"], "batch_size": config["batch_size"],
            "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}, no GPU",
            "final_loss": round(sum(float(r["loss"]) for r in rows[-50:]) / len(rows[-50:]), 4),
        })
        card["weights"] = {"file": f"{name}.safetensors", "sha256": digest, "bytes": len(data),
                           "parameters": sum(p.numel() for p in net.parameters()),
                           "normalization": header.extra.get("normalization")}
        if header.extra.get("target") == "affinities":
            card["offsets"] = header.extra["offsets"]
        write_text_atomic(card_path, json.dumps(card, indent=1) + "\n")
        print(json.dumps({"name": name, **card["training"], **card["weights"]}))


if __name__ == "__main__":
    main()
