"""Benchmark emseg.instances against the peer libraries on the same inputs; prints one JSON object.

Inputs (written once as .npy / Zarr, each side runs in a fresh process that loads them):

* ``components``: a smooth random foreground probability, 150×500×500 (37.5 Mvoxel, thousands of
  blobs). Peer: ``cc3d.connected_components(prob > 0.5)`` in memory. emseg: the same in memory, and
  blockwise from Zarr (64×256×256 blocks, 2 threads).
* ``watershed``: a membrane map made from the real FlyEM medulla neurons (their contours, blurred,
  with noise; ../shared/data), mirrored to 150×500×500. Peer: ``skimage.segmentation.watershed``
  with the same markers (connected regions of the smoothed map below 0.5). emseg: in memory and blockwise.
* ``agglomerate``: nearest-neighbour affinities of the same neurons with noise, 3×150×500×500.
  Peer: ``waterz.agglomerate`` (threshold 0.5) in memory. emseg: blockwise (waterz per block + stitching).
* ``big``: blockwise connected components of a ≥ 2-gigavoxel uint8 probability Zarr (``--big-gvox``);
  goal: peak RSS < 2 GB.

Reported per side: seconds, peak RSS (VmHWM) and the extra peak over the loaded input; per case the
ratios (peer seconds / emseg seconds; emseg extra memory / peer extra memory) and how far the results
agree (blockwise vs in-memory: VOI, or exact equality up to a permutation of ids for components).

Usage: ``python benchmarks/bench_instances.py [--workdir DIR] [--only components,watershed,agglomerate,big]
[--big-gvox 2.1] [--keep]``. Progress goes to stderr.
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

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHAPE = (150, 500, 500)
_T0 = time.perf_counter()

CHILD = r"""
import json, sys, time
def hwm_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
p = json.loads(sys.argv[1])
import numpy as np
case, side, w = p["case"], p["side"], p["workdir"]
if side == "blockwise":
    import emseg.instances as I
    from emseg.io import read_volume
    base = hwm_mb()
    t0 = time.perf_counter()
    kw = dict(offsets=[[-1, 0, 0], [0, -1, 0], [0, 0, -1]]) if case == "agglomerate" else {}
    method = {"components": "cc", "watershed": "watershed", "agglomerate": "agglomerate", "big": "cc"}[case]
    r = I.segment_blockwise(f"{w}/{case}.zarr", f"{w}/{case}_out.zarr", method, block_shape=(64, 256, 256),
                            workers=2, overwrite=True, **kw)
    seconds = time.perf_counter() - t0
    peak = hwm_mb()
    if case != "big":
        np.save(f"{w}/{case}_blockwise.npy", read_volume(f"{w}/{case}_out.zarr"))
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "extra_peak_mb": peak - base, "n_objects": r.n_objects}))
    sys.exit()
x = np.load(f"{w}/{case}.npy")
if side == "emseg":
    import emseg.instances as I
else:
    import cc3d, waterz
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed
base = hwm_mb()
t0 = time.perf_counter()
if side == "emseg":
    if case == "components":
        out = I.connected_components(x, 0.5)
    elif case == "watershed":
        out = I.boundary_watershed(x)
    else:
        out = I.agglomerate(x, threshold=0.5)
elif case == "components":
    out = cc3d.connected_components(x > 0.5, connectivity=6)
elif case == "watershed":
    smooth = ndi.gaussian_filter(x, 1.0)
    markers = cc3d.connected_components(smooth < 0.5, connectivity=6)
    markers = cc3d.dust(markers, 8, connectivity=6)
    out = watershed(smooth, markers)
else:
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()):
        out = next(iter(waterz.agglomerate(x, [0.5]))).copy()
seconds = time.perf_counter() - t0
peak = hwm_mb()
np.save(f"{w}/{case}_{side}.npy", out)
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "extra_peak_mb": peak - base, "input_mb": x.nbytes / 2**20,
                  "n_objects": int(len(np.unique(out)) - (out == 0).any())}))
"""


def log(msg):
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def child(params):
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(params)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def mirror(a, shape):
    """Tile ``a`` to ``shape`` with reflections (objects continue across the seams)."""
    reps = [int(np.ceil(s / n)) for s, n in zip(shape, a.shape)]
    out = np.pad(a, [(0, (r - 1) * n) for r, n in zip(reps, a.shape)], mode="symmetric")
    return out[tuple(slice(0, s) for s in shape)]


def make_inputs(workdir, cases):
    from scipy import ndimage as ndi

    from emseg.io import read_volume, write_volume
    from emseg.train.targets import affinities, bc_target

    rng = np.random.default_rng(0)
    if "components" in cases:
        p = ndi.gaussian_filter(rng.random(SHAPE, dtype=np.float32), 2.0)
        p = ((p - p.min()) / np.ptp(p)).astype(np.float32)
        np.save(workdir / "components.npy", p)
        write_volume(workdir / "components.zarr", p[None], chunks=(1, 64, 256, 256))
    if {"watershed", "agglomerate"} & set(cases):
        f = SHARED / "flyem_medulla" / "sample2_z000-149.h5"
        if not f.exists():
            raise SystemExit(f"{f} is missing: the watershed and agglomerate cases use the real medulla labels")
        gt = mirror(read_volume(f"{f}:volumes/labels/neuron_ids").astype(np.uint32), SHAPE)
        if "watershed" in cases:
            b = ndi.gaussian_filter(bc_target(gt).target[1], 1.0) * 3 + rng.normal(0, 0.1, SHAPE).astype(np.float32)
            b = np.clip(b, 0, 1).astype(np.float32)
            np.save(workdir / "watershed.npy", b)
            write_volume(workdir / "watershed.zarr", b[None], chunks=(1, 64, 256, 256))
            del b
        if "agglomerate" in cases:
            a = affinities(gt, [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]).target
            a = np.clip(a + rng.normal(0, 0.2, a.shape).astype(np.float32), 0, 1).astype(np.float32)
            np.save(workdir / "agglomerate.npy", a)
            write_volume(workdir / "agglomerate.zarr", a, chunks=(3, 64, 256, 256))


def agreement(workdir, case, a, b):
    from emseg.metrics import variation_of_information

    x, y = np.load(workdir / f"{case}_{a}.npy"), np.load(workdir / f"{case}_{b}.npy")
    voi = variation_of_information(x, y)
    return {"voi_split": voi.split, "voi_merge": voi.merge}


def compare(workdir, case):
    log(f"{case}: peer ...")
    peer = child({"case": case, "side": "peer", "workdir": str(workdir)})
    log(f"{case}: peer {peer['seconds']:.1f} s; emseg in memory ...")
    ours = child({"case": case, "side": "emseg", "workdir": str(workdir)})
    log(f"{case}: emseg {ours['seconds']:.1f} s; emseg blockwise ...")
    block = child({"case": case, "side": "blockwise", "workdir": str(workdir)})
    log(f"{case}: blockwise {block['seconds']:.1f} s")
    peer_name = {"components": "cc3d.connected_components", "watershed": "skimage.segmentation.watershed",
                 "agglomerate": "waterz.agglomerate"}[case]
    return {"shape": list(SHAPE), "peer": peer_name, "peer_in_memory": peer, "emseg_in_memory": ours,
            "emseg_blockwise": block,
            "time_ratio_peer_over_emseg_in_memory": peer["seconds"] / ours["seconds"],
            "time_ratio_peer_over_emseg_blockwise": peer["seconds"] / block["seconds"],
            "peak_rss_ratio_blockwise_over_peer": block["peak_rss_mb"] / peer["peak_rss_mb"],
            "in_memory_vs_peer": agreement(workdir, case, "emseg", "peer"),
            "blockwise_vs_in_memory": agreement(workdir, case, "blockwise", "emseg")}


def big(workdir, gvox):
    from scipy import ndimage as ndi

    from emseg.io import create_volume

    z = max(64, int(round(gvox * 1e9 / (2048 * 2048) / 64)) * 64)
    shape = (z, 2048, 2048)
    tile = ndi.gaussian_filter(np.random.default_rng(1).random((64, 512, 512), dtype=np.float32), 2.0)
    tile = np.rint((tile - tile.min()) / np.ptp(tile) * 255).astype(np.uint8)
    tile = np.pad(tile, [(0, 64), (0, 512), (0, 512)], mode="symmetric")  # 128×1024×1024, mirrored
    log(f"big: writing a {shape} uint8 probability Zarr ({np.prod(shape) / 1e9:.2f} Gvox)")
    vol = create_volume(workdir / "big.zarr", (1,) + shape, np.uint8, chunks=(1, 64, 256, 256))
    for z0 in range(0, z, 128):
        vol[0, z0:z0 + 128] = np.tile(tile, (1, 2, 2))[: z - z0]
    res = child({"case": "big", "side": "blockwise", "workdir": str(workdir)})
    log(f"big: {res['seconds']:.0f} s, peak RSS {res['peak_rss_mb']:.0f} MB, {res['n_objects']} objects")
    return {"shape": list(shape), "gigavoxels": float(np.prod(shape) / 1e9), "method": "cc", **res,
            "voxels_per_second": float(np.prod(shape)) / res["seconds"], "goal_peak_rss_mb": 2000,
            "met": res["peak_rss_mb"] < 2000}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", default="components,watershed,agglomerate,big")
    ap.add_argument("--big-gvox", type=float, default=2.1)
    args = ap.parse_args()
    cases = args.only.split(",")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="emseg-bench-instances-"))
    workdir.mkdir(parents=True, exist_ok=True)
    versions = {m: metadata.version(m) for m in ("emseg", "numpy", "scikit-image", "connected-components-3d",
                                                 "waterz", "zarr")}
    result = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "versions": versions}}
    try:
        make_inputs(workdir, cases)
        for case in ("components", "watershed", "agglomerate"):
            if case in cases:
                result[case] = compare(workdir, case)
        if "big" in cases:
            result["big"] = big(workdir, args.big_gvox)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
