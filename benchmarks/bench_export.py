"""onnxruntime against PyTorch for emseg's shipped models on this CPU; prints one JSON object.

For each shipped model: ``emseg predict`` (``predict_blockwise``, the model's automatic blocks and halo,
float32 output) over a synthetic EM volume at the model's voxel size, once with ``runtime="torch"``
and once with ``runtime="onnx"`` (the network exported to ONNX in memory, the same as a package's
``weights.onnx``, run by onnxruntime's CPU provider with as many threads as torch uses). Each side runs
twice in alternating order; the best time counts. Reported: voxels/s of each, ``ratio`` = onnx voxels/s
÷ torch voxels/s, and the largest difference of their outputs (the goal is 1e-4). Also the time
``emseg export`` takes to write each bioimage.io package (``--export``).

Usage: ``python benchmarks/bench_export.py [--models mito-fibsem,neurons-fibsem] [--threads 2] [--export]``
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


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def volume(model):
    from emseg.models.reader import read_checkpoint
    from emseg.synthetic import synthetic_em

    info = read_checkpoint(model)
    vs = info.voxel_size or tuple(info.card.get("input_voxel_size_nm") or (5.0, 5.0, 5.0))
    shape = (8, 768, 768) if int(info.init_args.get("ndim", 2)) == 2 else (96, 256, 256)
    return synthetic_em(shape, voxel_size=tuple(float(v) for v in vs), seed=0).raw


def run(model, raw, runtime, folder, threads):
    from emseg.config import ExecutionConfig
    from emseg.io import read_volume
    from emseg.predict import predict_blockwise

    out = os.path.join(folder, f"{runtime}-{time.perf_counter_ns()}.zarr")
    t0 = time.perf_counter()
    predict_blockwise(raw, model, out, dtype="float32", runtime=runtime, execution=ExecutionConfig(workers=threads))
    return time.perf_counter() - t0, read_volume(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mito-fibsem,membrane-sstem,neurons-fibsem")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export", action="store_true", help="also time emseg export of each package")
    a = ap.parse_args()
    import onnxruntime
    import torch

    torch.set_num_threads(a.threads)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for model in a.models.split(","):
            raw = volume(model)
            run(model, raw[: raw.shape[0] // 4 or 1], "onnx", folder, a.threads)  # warm: export and load once
            run(model, raw[: raw.shape[0] // 4 or 1], "torch", folder, a.threads)
            seconds = {"torch": [], "onnx": []}
            outs = {}
            for order in (("torch", "onnx"), ("onnx", "torch")):
                for runtime in order:
                    s, outs[runtime] = run(model, raw, runtime, folder, a.threads)
                    seconds[runtime].append(s)
            best = {k: min(v) for k, v in seconds.items()}
            r = {"shape": list(raw.shape), "voxels": int(raw.size),
                 "torch_voxels_per_s": raw.size / best["torch"], "onnx_voxels_per_s": raw.size / best["onnx"],
                 "ratio_onnx_vs_torch": best["torch"] / best["onnx"], "seconds": seconds,
                 "max_abs_difference": float(np.abs(outs["torch"] - outs["onnx"]).max())}
            if a.export:
                from emseg.share import export_model

                t0 = time.perf_counter()
                export_model(model, os.path.join(folder, f"{model}.zip"))
                r["export_seconds"] = time.perf_counter() - t0
                r["package_megabytes"] = os.path.getsize(os.path.join(folder, f"{model}.zip")) / 2**20
            results[model] = r
            log(f"{model}: torch {r['torch_voxels_per_s'] / 1e6:.2f} Mvox/s, onnx {r['onnx_voxels_per_s'] / 1e6:.2f} "
                f"Mvox/s (x{r['ratio_onnx_vs_torch']:.2f}), max difference {r['max_abs_difference']:.1e}")
    print(json.dumps({"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores", "threads": a.threads,
                      "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "models": results}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
