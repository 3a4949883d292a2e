"""Benchmark emseg.measure against scikit-image; prints one JSON object to stdout.

1. Real label volumes (../shared/data): the five UroCell mitochondria instance volumes (256^3, 15x16x16 nm)
   and the FlyEM medulla neurons (150x250x250 ids, 10 nm, with its raw for the intensities).
   ``emseg.measure.region_table`` (every column, surfaces included) against
   ``skimage.measure.regionprops_table`` (area, centroid, bbox, axis lengths, intensity; ``spacing``)
   alone, and with the surface the way skimage gives it (``marching_cubes`` + ``mesh_surface_area`` per
   object on its padded mask). Each side runs in a fresh process that loads the arrays from .npy files;
   reported: seconds (best of 2, compiled code warmed on a tiny volume first), extra peak memory over the
   loaded arrays (VmHWM), the largest relative difference of the shared columns (relative to at least 1, so
   that a flat object's minor axis of 1e-7 nm against 0 is no difference), and the ratios.
2. ``gigavoxel``: the UroCell volumes tiled 4 x 4 x 4 (1.07 gigavoxels of real mitochondria, new ids per
   tile) in a uint32 Zarr, measured by ``emseg measure`` in a fresh process on 2 threads; goal: peak RSS
   < 1 GB. Every tile's objects must come out as that tile measured alone in memory (voxels, surface,
   axes; centroids shifted by the tile's place), so the blockwise merge is checked at that scale too.

Usage: ``python benchmarks/bench_measure.py [--data ../shared/data] [--workdir DIR] [--keep] [--only real|gigavoxel]``. Progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_metrics import child, log  # noqa: E402 - a fresh process per measurement, one home

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_COLUMNS = {"volume_nm3": "area", "centroid_z_nm": "centroid-0", "centroid_y_nm": "centroid-1",
                  "centroid_x_nm": "centroid-2", "bbox_z0": "bbox-0", "bbox_x1": "bbox-5",
                  "axis_major_nm": "axis_major_length", "axis_minor_nm": "axis_minor_length",
                  "intensity_mean": "intensity_mean", "surface_nm2": "surface"}

CHILD = """
import json, sys, time
def hwm_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
p = json.loads(sys.argv[1])
import numpy as np
lab = np.load(p["labels"])
raw = np.load(p["raw"]) if p["raw"] else None
vs = tuple(p["voxel_size"])
arrays_mb = (lab.nbytes + (raw.nbytes if raw is not None else 0)) / 2**20
if p["side"] == "emseg":
    from emseg.measure import region_table
    region_table(lab[:8, :8, :8], None if raw is None else raw[:8, :8, :8], voxel_size=vs)  # compiled before timing
else:
    from scipy import ndimage
    from skimage.measure import marching_cubes, mesh_surface_area, regionprops_table
base = hwm_mb()


def run():
    if p["side"] == "emseg":
        return region_table(lab, raw, voxel_size=vs, workers=p["workers"])
    props = ("label", "area", "centroid", "bbox", "axis_major_length", "axis_minor_length")
    t = regionprops_table(lab, raw, spacing=vs, properties=props + (("intensity_mean",) if raw is not None else ()))
    if p["side"] == "skimage+surface":
        areas = []
        for i, box in enumerate(ndimage.find_objects(lab), 1):
            if box is not None:
                v, f, _, _ = marching_cubes(np.pad(lab[box] == i, 1).astype(np.float32), 0.5, spacing=vs)
                areas.append(mesh_surface_area(v, f))
        t["surface"] = np.array(areas)
    return t


times = []
for _ in range(2):
    t0 = time.perf_counter()
    table = run()
    times.append(time.perf_counter() - t0)
np.savez(p["out"], **{k: np.asarray(v) for k, v in table.items()})
print(json.dumps({"seconds": min(times), "first_call_seconds": times[0], "arrays_mb": arrays_mb,
                  "extra_peak_mb": hwm_mb() - base, "peak_rss_mb": hwm_mb(), "objects": len(next(iter(table.values())))}))
"""

BIG_CHILD = """
import json, sys, time
def hwm_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
p = json.loads(sys.argv[1])
from emseg.cli import main
t0 = time.perf_counter()
rc = main(["measure", p["labels"], p["out"], "--threads", "2", "--no-progress"])
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0, "peak_rss_mb": hwm_mb()}))
"""


def urocell():
    """The UroCell mitochondria instance volumes (uint32 ids, dense from 1), each 256^3 at 15 x 16 x 16 nm."""
    import fastremap
    import nibabel

    for path in sorted((SHARED / "urocell_labels" / "mito" / "instance").glob("*.nii.gz")):
        lab = np.ascontiguousarray(np.asarray(nibabel.load(str(path)).dataobj))
        yield path.name, fastremap.renumber(lab, in_place=False)[0].astype(np.uint32)


def compare(name, lab, raw, voxel_size, workdir, workers=2):
    np.save(workdir / "labels.npy", lab)
    if raw is not None:
        np.save(workdir / "raw.npy", raw)
    params = {"labels": str(workdir / "labels.npy"), "raw": str(workdir / "raw.npy") if raw is not None else None,
              "voxel_size": list(voxel_size), "workers": workers}
    res, tables = {}, {}
    for side in ("emseg", "skimage", "skimage+surface"):
        log(f"{name}: {side} ...")
        res[side] = child(CHILD, {**params, "side": side, "out": str(workdir / f"{side}.npz")})
        with np.load(workdir / f"{side}.npz") as f:
            tables[side] = {k: f[k] for k in f.files}
    ours, ref = tables["emseg"], tables["skimage+surface"]
    diff = {}
    for a, b in SHARED_COLUMNS.items():
        if a in ours and b in ref:
            x, y = ours[a].astype(float), ref[b].astype(float)
            diff[a] = float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1.0))) if len(y) else 0.0  # 1 nm floor
    e = res["emseg"]
    return {"shape": list(lab.shape), "objects": e["objects"], "voxel_size": list(voxel_size), "workers": workers,
            **{side: r for side, r in res.items()}, "max_relative_difference": diff,
            "agree_1e-9": all(v < 1e-9 for v in diff.values()),
            "speedup_vs_regionprops": res["skimage"]["seconds"] / e["seconds"],
            "speedup_vs_regionprops_and_meshes": res["skimage+surface"]["seconds"] / e["seconds"],
            "memory_extra_mb": {side: r["extra_peak_mb"] for side, r in res.items()}}


def real(workdir):
    out = {}
    for name, lab in urocell():
        out[f"urocell/{name}"] = compare(name, lab, None, (15.0, 16.0, 16.0), workdir)
    medulla = SHARED / "flyem_medulla" / "sample2_z000-149.h5"
    if medulla.exists():
        import fastremap
        import h5py

        with h5py.File(medulla, "r") as f:
            lab = fastremap.renumber(f["volumes/labels/neuron_ids"][:], in_place=False)[0].astype(np.uint32)
            raw = f["volumes/raw"][:]
        out["flyem_medulla"] = compare("flyem_medulla", lab, raw, (10.0, 10.0, 10.0), workdir)
    return out


def gigavoxel(workdir, reps=4):
    from emseg.io import VolumeMeta, create_volume
    from emseg.measure import region_table
    from emseg.measure.write import read_table

    tiles = list(urocell())
    n = 256
    shape = (reps * n,) * 3
    vs = (15.0, 16.0, 16.0)
    path = workdir / "big.zarr"
    vol = create_volume(path, shape, np.uint32, chunks=(128, 128, 128), meta=VolumeMeta("zyx", vs), overwrite=True)
    step = 1 + max(int(t.max()) for _, t in tiles)
    expected, t_index = [], 0
    log(f"gigavoxel: writing {shape} uint32 ({np.prod(shape) / 1e9:.2f} Gvox) from {len(tiles)} UroCell volumes")
    for z in range(reps):
        for y in range(reps):
            for x in range(reps):
                name, tile = tiles[t_index % len(tiles)]
                offset = np.uint32(t_index * step)
                vol[z * n:(z + 1) * n, y * n:(y + 1) * n, x * n:(x + 1) * n] = np.where(tile > 0, tile + offset, 0)
                expected.append(((z, y, x), int(offset), t_index % len(tiles)))
                t_index += 1
    alone = [region_table(t, voxel_size=vs) for _, t in tiles]
    log("gigavoxel: emseg measure ...")
    res = child(BIG_CHILD, {"labels": str(path), "out": str(workdir / "big.csv")})
    table = read_table(workdir / "big.csv")
    worst = 0.0
    ids = table["id"]
    for (z, y, x), offset, k in expected:
        ref = alone[k]
        rows = np.searchsorted(ids, ref["id"] + offset)
        assert np.array_equal(ids[rows], ref["id"] + offset), "an object of a tile is missing"
        for col in ("voxels", "surface_nm2", "axis_major_nm", "axis_minor_nm"):
            worst = max(worst, float(np.max(np.abs(table[col][rows] - ref[col]) / np.maximum(ref[col], 1e-12))))
        shift = np.array([z, y, x]) * n * np.array(vs)
        for i, a in enumerate("zyx"):
            d = np.abs(table[f"centroid_{a}_nm"][rows] - (ref[f"centroid_{a}_nm"] + shift[i]))
            worst = max(worst, float(np.max(d / np.maximum(ref[f"centroid_{a}_nm"] + shift[i], 1e-12))))
    log(f"gigavoxel: {len(ids)} objects in {res['seconds']:.1f} s, peak RSS {res['peak_rss_mb']:.0f} MB")
    return {"shape": list(shape), "gigavoxels": float(np.prod(shape) / 1e9), "objects": int(len(ids)), **res,
            "voxels_per_second": float(np.prod(shape) / res["seconds"]),
            "tiles_match_in_memory_max_relative_difference": worst,
            "goal_peak_rss_mb": 1000, "met": res["peak_rss_mb"] < 1000 and worst < 1e-9}


def main():
    global SHARED
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", choices=("real", "gigavoxel"))
    ap.add_argument("--data", help="the real data folder (default ../shared/data)")
    a = ap.parse_args()
    SHARED = Path(a.data) if a.data else SHARED
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED}: the real data folder is absent (../shared/data)")
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="emseg-bench-measure-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    try:
        if a.only in (None, "real"):
            result["real"] = real(workdir)
        if a.only in (None, "gigavoxel"):
            result["gigavoxel"] = gigavoxel(workdir)
    finally:
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
