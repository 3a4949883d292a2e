"""Benchmark emseg.metrics against scikit-image; prints one JSON object to stdout.

1. ``flyem_medulla`` (150×250×250 real neuron ids, ../shared/data) and ``synthetic_1e8``
   (100×1000×1000 neuron-like ids): adapted Rand error + VOI from emseg's one-pass table, against
   ``skimage.metrics.adapted_rand_error`` + ``variation_of_information`` (two calls, the way
   users call them). Each side runs in a fresh process that loads the two arrays from .npy
   files; reported: the best of 3 runs and the first run's seconds, extra peak memory over the two loaded arrays (VmHWM), the values
   (which must agree to 1e-9), and the ratios. Goals: ≥ 5× faster (10×), memory ≤ ~2× the arrays.
2. ``out_of_core``: two 4-gigavoxel uint32 Zarr label volumes evaluated blockwise
   (``emseg evaluate --task neurons``) in a fresh process; goal: peak RSS < 1 GB.

Usage: ``python benchmarks/bench_metrics.py [--workdir DIR] [--keep] [--only inmemory|outofcore]
[--ooc-gvox 4]``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

SEED = 0
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_T0 = time.perf_counter()

CHILD = """
import json, sys, time
def hwm_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
p = json.loads(sys.argv[1])
import numpy as np
gt, pred = np.load(p["gt"]), np.load(p["pred"])
arrays_mb = (gt.nbytes + pred.nbytes) / 2**20
if p["side"] == "emseg":
    from emseg.metrics import adapted_rand_error, contingency_table, variation_of_information
else:
    from skimage.metrics import adapted_rand_error, variation_of_information
base = hwm_mb()


def run():
    if p["side"] == "emseg":
        t = contingency_table(gt, pred)
        are, voi = adapted_rand_error(table=t), variation_of_information(table=t)
        return [are.error, are.precision, are.recall, voi.split, voi.merge]
    are = adapted_rand_error(gt, pred)
    voi = variation_of_information(gt, pred)
    return [float(v) for v in are] + [float(v) for v in voi]


times = []
for _ in range(p["repeats"]):  # imports done before: compute only, on both sides
    t0 = time.perf_counter()
    values = run()
    times.append(time.perf_counter() - t0)
seconds, first = min(times), times[0]
print(json.dumps({"seconds": seconds, "first_call_seconds": first, "arrays_mb": arrays_mb, "extra_peak_mb": hwm_mb() - base,
                  "peak_rss_mb": hwm_mb(), "values": values}))
"""


def log(msg):
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def child(code, params):
    out = subprocess.run([sys.executable, "-c", code, json.dumps(params)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def perturb(labels, rng, n_merges=20, n_splits=20):
    """Merges, splits (cut along z at the object's middle) and a one-voxel shift: a realistic error mix."""
    out = labels.copy()
    ids = np.unique(labels)
    ids = ids[ids > 0]
    for a, b in rng.choice(ids, (n_merges, 2), replace=False):
        out[out == b] = a
    nxt = int(labels.max()) + 1
    for c in rng.choice(ids, n_splits, replace=False):
        zs = np.nonzero((out == c).any(axis=(1, 2)))[0]
        if len(zs) > 1:
            mid = zs[len(zs) // 2]
            region = out[mid:] == c
            out[mid:][region] = nxt
            nxt += 1
    return np.roll(out, 1, axis=2)


def neuron_like(shape, seed):
    """Dense neuron-like ids at ``shape`` from the synthetic generator at a quarter of the in-plane size."""
    from emseg.synthetic import synthetic_em

    small = synthetic_em((shape[0], shape[1] // 4, shape[2] // 4), seed=seed, voxel_size=(30, 24, 24),
                         mito_fraction=0.0).neurons.astype(np.uint32)
    return np.repeat(np.repeat(small, 4, axis=1), 4, axis=2)


def compare(name, gt, pred, workdir, repeats=3):
    np.save(workdir / "gt.npy", gt)
    np.save(workdir / "pred.npy", pred)
    params = {"gt": str(workdir / "gt.npy"), "pred": str(workdir / "pred.npy"), "repeats": repeats}
    log(f"{name}: {gt.shape} {gt.dtype}, {len(np.unique(gt))} gt ids; emseg ...")
    ours = child(CHILD, {**params, "side": "emseg"})
    log(f"{name}: emseg {ours['seconds']:.2f} s; skimage ...")
    ref = child(CHILD, {**params, "side": "skimage"})
    log(f"{name}: skimage {ref['seconds']:.2f} s")
    diff = float(np.max(np.abs(np.array(ours["values"]) - np.array(ref["values"]))))
    return {"shape": list(gt.shape), "dtype": str(gt.dtype), "emseg": ours, "skimage": ref,
            "max_abs_difference": diff, "agree_1e-9": diff < 1e-9,
            "speedup": ref["seconds"] / ours["seconds"],
            "speedup_first_call": ref["first_call_seconds"] / ours["first_call_seconds"],
            "emseg_extra_memory_over_arrays": ours["extra_peak_mb"] / ours["arrays_mb"],
            "skimage_extra_memory_over_arrays": ref["extra_peak_mb"] / ref["arrays_mb"],
            "goal_speedup": 5, "met": ref["seconds"] / ours["seconds"] >= 5}


def in_memory(workdir):
    rng = np.random.default_rng(SEED)
    out = {}
    medulla = SHARED / "flyem_medulla/sample2_z000-149.h5"
    if medulla.exists():
        from emseg.io import read_volume

        gt = read_volume(f"{medulla}:volumes/labels/neuron_ids")
        out["flyem_medulla"] = compare("flyem_medulla", gt, perturb(gt, rng), workdir)
    else:
        log(f"{medulla} absent: skipping the real-data comparison")
    gt = neuron_like((100, 1000, 1000), SEED)
    out["synthetic_1e8"] = compare("synthetic_1e8", gt, perturb(gt, rng, 50, 50), workdir)
    return out


OOC_CHILD = """
import json, sys, time
def hwm_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
p = json.loads(sys.argv[1])
from emseg.cli import main
t0 = time.perf_counter()
rc = main(["evaluate", p["gt"], p["pred"], "--task", "neurons", "--metrics", "adapted_rand,voi", "--json", p["json"]])
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0, "peak_rss_mb": hwm_mb()}))
"""


def out_of_core(workdir, gvox):
    from emseg.io import VolumeMeta, create_volume

    z = max(1, int(round(gvox * 1e9 / (2048 * 2048))))
    shape, chunks = (z, 2048, 2048), (64, 128, 128)
    tile = neuron_like((64, 512, 512), SEED + 1)  # a 64×512×512 neuron-like tile, repeated
    tile_pred = perturb(tile, np.random.default_rng(SEED), 10, 10)
    log(f"out_of_core: writing two {shape} uint32 Zarr volumes ({np.prod(shape) / 1e9:.2f} Gvox each)")
    for name, t in (("gt", tile), ("pred", tile_pred)):
        vol = create_volume(workdir / f"{name}.zarr", shape, np.uint32, chunks=chunks, meta=VolumeMeta("zyx", (30, 6, 6)))
        for z0 in range(0, shape[0], 64):
            slab = np.tile(t, (1, 4, 4))[: shape[0] - z0]
            slab = slab + np.uint32(z0 // 64) * np.uint32(100_000)  # new ids every slab: many objects
            vol[z0:z0 + slab.shape[0]] = slab
        log(f"out_of_core: {name} written")
    t0 = time.perf_counter()
    res = child(OOC_CHILD, {"gt": str(workdir / "gt.zarr"), "pred": str(workdir / "pred.zarr"),
                            "json": str(workdir / "ooc.json")})
    log(f"out_of_core: evaluated in {time.perf_counter() - t0:.1f} s, peak RSS {res['peak_rss_mb']:.0f} MB")
    values = json.load(open(workdir / "ooc.json"))
    return {"shape": list(shape), "gigavoxels_each": float(np.prod(shape) / 1e9), "chunks": list(chunks), **res,
            "values": {k: values[k] for k in ("adapted_rand_error", "voi_split", "voi_merge")},
            "goal_peak_rss_mb": 1000, "met": res["peak_rss_mb"] < 1000}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", choices=("inmemory", "outofcore"))
    ap.add_argument("--ooc-gvox", type=float, default=4.0, help="gigavoxels per out-of-core volume")
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="emseg-bench-metrics-"))
    workdir.mkdir(parents=True, exist_ok=True)
    versions = {m: metadata.version(m) for m in ("emseg", "numpy", "scikit-image", "fastremap", "zarr")}
    result = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "versions": versions}}
    try:
        if args.only in (None, "inmemory"):
            result["adapted_rand_plus_voi"] = in_memory(workdir)
        if args.only in (None, "outofcore"):
            result["out_of_core"] = out_of_core(workdir, args.ooc_gvox)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
