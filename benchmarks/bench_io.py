"""Benchmark emseg.io on volumes larger than memory; prints one JSON object to stdout.

1. ``tiff_to_zarr``: convert a 2 GiB TIFF stack to OME-Zarr with ``emseg convert`` in a fresh
   process (peak RSS, time, MB/s), against the usual peer recipe: tifffile's Zarr view of the
   TIFF copied by ``dask.array.from_zarr(...).rechunk(...).to_zarr(...)``, same chunks and codec.
2. ``zarr_16gib_open_read``: open a 16 GiB Zarr and read one aligned and one unaligned 128³
   block, each trial in a fresh process with the touched chunk files evicted from the page cache,
   against plain ``zarr.open`` and tensorstore (when installed).

Usage: ``python benchmarks/bench_io.py [--workdir DIR] [--keep] [--tiff-gb 2] [--zarr-gib 16]``.
Progress goes to stderr; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata

import numpy as np

from emseg.blockwise import aligned_block_shape, block_slices
from emseg.config import ExecutionConfig
from emseg.io import VolumeMeta, create_volume, write_volume

SEED = 0
PLANE = (2048, 2048)            # yx of the TIFF stack
ZARR_FULL = (1024, 4096, 4096)  # 16 GiB uint8, halved (largest axis first) for --zarr-gib < 16
ZARR_CHUNKS = (64, 64, 64)
BLOCK = 128
GOAL_RSS_MB, GOAL_READ_S = 500, 1.0
_T0 = time.perf_counter()


def log(msg):
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# --- data made on demand ----------------------------------------------------------------------

class SmoothNoiseStack:
    """A lazy (z, y, x) uint8 stack: a few pre-generated smooth-noise planes, cycled and shifted.

    Has ``shape``, ``dtype`` and slicing with slices, so ``write_volume`` streams it page by page.
    """

    def __init__(self, shape, n_planes=8, seed=SEED):
        from scipy.ndimage import gaussian_filter

        rng = np.random.default_rng(seed)
        self.shape, self.dtype = tuple(shape), np.dtype(np.uint8)
        planes = []
        for _ in range(n_planes):  # cell-sized blobs + fine texture + shot noise, like EM
            noise = rng.standard_normal(shape[1:], dtype=np.float32)
            p = 3 * gaussian_filter(noise, 24) + 0.5 * gaussian_filter(noise, 1.5) + 0.08 * noise
            p = (p - p.mean()) / p.std()
            planes.append(np.clip(128 + 40 * p, 0, 255).astype(np.uint8))
        self.planes = np.stack(planes)

    def plane(self, z):
        n = len(self.planes)
        return np.roll(self.planes[z % n], 101 * (z // n), axis=-1)

    def __getitem__(self, key):
        zs, ys, xs = (k if isinstance(k, slice) else slice(k, k + 1) for k in key)
        return np.stack([self.plane(z)[ys, xs] for z in range(*zs.indices(self.shape[0]))])


class RampVolume:
    """Low-entropy, non-constant content for the big Zarr: a ramp plus sparse ±1 noise.

    The noise comes from a pool of 4 pre-generated write blocks, picked per block, so any
    region's expected values can be recomputed exactly (``region``) for verification.
    """

    def __init__(self, shape, block, seed=SEED):
        rng = np.random.default_rng(seed)
        self.shape, self.block = tuple(shape), tuple(block)
        self.pool = (rng.integers(0, 16, size=(4, *block), dtype=np.uint8) == 0).view(np.uint8)

    def _ramp(self, roi):
        z, y, x = (np.arange(s.start, s.stop) // d for s, d in zip(roi, (16, 256, 256)))
        return (z.astype(np.uint8)[:, None, None] + y.astype(np.uint8)[None, :, None]
                + x.astype(np.uint8)[None, None, :])

    def write_block(self, roi):
        """Values of a block of the write grid (cheap: a ramp plus a slice of the pool)."""
        k = sum(s.start // b for s, b in zip(roi, self.block)) % len(self.pool)
        return self._ramp(roi) + self.pool[(k, *(slice(0, s.stop - s.start) for s in roi))]

    def region(self, roi):
        """Values of any region (slow path, fancy indexing; for small verification reads)."""
        z, y, x = np.ix_(*(np.arange(s.start, s.stop) for s in roi))
        k = (z // self.block[0] + y // self.block[1] + x // self.block[2]) % len(self.pool)
        return self._ramp(roi) + self.pool[k, z % self.block[0], y % self.block[1], x % self.block[2]]


# --- helpers ----------------------------------------------------------------------------------

def run_child(code, params, timeout=7200):
    """Run ``code`` in a fresh interpreter; it prints a JSON line last. Returns that dict."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(params)], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0
    return result


def evict(paths):
    """Drop files from the page cache (flush, then POSIX_FADV_DONTNEED) so the next read is cold."""
    for p in paths:
        if os.path.isfile(p):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def disk_bytes(path):
    if os.path.isfile(path):
        return os.stat(path).st_blocks * 512
    return sum(os.stat(os.path.join(d, f)).st_blocks * 512 for d, _, fs in os.walk(path) for f in fs)


def random_rois(rng, shape, n, size=BLOCK, align=None):
    rois = []
    for _ in range(n):
        start = [int(rng.integers(0, s - min(size, s) + 1)) for s in shape]
        if align:
            start = [a - a % align for a in start]
        rois.append(tuple(slice(a, a + min(size, s)) for a, s in zip(start, shape)))
    return rois


def summary(values):
    return {"median": statistics.median(values), "max": max(values), "min": min(values)}


def versions():
    out = {}
    for name in ("emseg", "numpy", "zarr", "tifffile", "numcodecs", "dask", "tensorstore"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine():
    import psutil

    return {"cpu_count": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions()}


# --- 1. TIFF -> Zarr --------------------------------------------------------------------------

# Peak RSS is VmHWM of the child's own address space. ru_maxrss is not used: on Linux it carries
# the parent's high-water mark across fork + exec, so a child of a big parent reports the parent's.
PRELUDE = """
import json, sys, time
def hwm_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
p = json.loads(sys.argv[1])
t0 = time.perf_counter()
import numpy, numcodecs, tifffile, zarr
rss0 = hwm_mb()
"""
RESULT = """
print(json.dumps({"import_s": t1 - t0, "seconds": t2 - t1, "rss_after_imports_mb": rss0, "peak_rss_mb": hwm_mb()}))
"""
CONVERT_EMSEG = PRELUDE + """
from emseg.cli import main
t1 = time.perf_counter()
main(["convert", p["src"], p["dst"], "--no-progress"])
t2 = time.perf_counter()
""" + RESULT
CONVERT_DASK = PRELUDE + """
import dask.array as da
t1 = time.perf_counter()
store = tifffile.imread(p["src"], aszarr=True)
src = zarr.open(store, mode="r")
out = zarr.create_array(p["dst"], shape=src.shape, chunks=p["chunks"], dtype=src.dtype, fill_value=0,
                        compressors=numcodecs.get_codec(p["compressor"]), zarr_format=2,
                        chunk_key_encoding={"name": "v2", "separator": "/"})
da.from_zarr(src).rechunk(p["chunks"]).to_zarr(out)
store.close()
t2 = time.perf_counter()
""" + RESULT


def bench_tiff_to_zarr(workdir, tiff_gb, n_check=8):
    import tifffile
    import zarr

    n_z = 64 * math.ceil(tiff_gb * 1e9 / (PLANE[0] * PLANE[1]) / 64)  # whole 64-plane slabs
    shape = (n_z, *PLANE)
    nbytes = math.prod(shape)
    tif, dst, peer = (os.path.join(workdir, n) for n in ("big.tif", "big.zarr", "peer.zarr"))
    log(f"tiff_to_zarr: building {tif} {shape} uint8 ({nbytes / 1e9:.2f} GB) from a lazy generator")
    stack = SmoothNoiseStack(shape)
    t = time.perf_counter()
    write_volume(tif, stack, voxel_size=(8, 8, 8), execution=ExecutionConfig(overwrite=True))
    build_s = time.perf_counter() - t
    log(f"  built in {build_s:.1f} s, {disk_bytes(tif) / 1e9:.2f} GB on disk")

    res = {"shape": shape, "bytes": nbytes, "tiff_disk_bytes": disk_bytes(tif), "build_seconds": build_s,
           "command": f"emseg convert {tif} {dst} --no-progress", "page_cache": "tiff evicted before each run"}
    evict([tif])
    log("  emseg convert (fresh process)")
    res["emseg"] = run_child(CONVERT_EMSEG, {"src": tif, "dst": dst})
    with open(os.path.join(dst, "0", ".zarray")) as f:
        zmeta = json.load(f)
    evict([tif])
    log(f"  peer: dask from_zarr(tifffile aszarr).rechunk({zmeta['chunks']}).to_zarr (fresh process)")
    res["peer_dask"] = run_child(CONVERT_DASK, {"src": tif, "dst": peer, "chunks": zmeta["chunks"],
                                                "compressor": zmeta["compressor"]})
    for name in ("emseg", "peer_dask"):
        r = res[name]
        r["mb_per_s"] = nbytes / 1e6 / r["seconds"]
        r["disk_bytes"] = disk_bytes(dst if name == "emseg" else peer)
        log(f"  {name}: {r['seconds']:.1f} s, {r['mb_per_s']:.0f} MB/s, peak RSS {r['peak_rss_mb']:.0f} MB")
    res["chunks"], res["compressor"] = zmeta["chunks"], zmeta["compressor"]

    rng = np.random.default_rng(SEED)
    store = tifffile.imread(tif, aszarr=True)
    try:
        src, ours, theirs = zarr.open(store, mode="r"), zarr.open(dst, mode="r")["0"], zarr.open(peer, mode="r")
        ok = True
        for roi in random_rois(rng, shape, n_check, size=100) + [tuple(slice(s - 37, s) for s in shape)]:
            ref = src[roi]
            ok &= all(np.array_equal(ref, other[roi]) for other in (stack, ours, theirs))
    finally:
        store.close()
    res["verified_blocks"], res["verified"] = n_check + 1, bool(ok)
    res["ratio_time"] = res["emseg"]["seconds"] / res["peer_dask"]["seconds"]
    res["ratio_rss"] = res["emseg"]["peak_rss_mb"] / res["peer_dask"]["peak_rss_mb"]
    res["goal_peak_rss_mb"] = GOAL_RSS_MB
    res["met"] = bool(res["emseg"]["peak_rss_mb"] < GOAL_RSS_MB and ok)
    return res


# --- 2. open a big Zarr, read 128³ blocks ----------------------------------------------------

READ = """
import json, sys, time
p = json.loads(sys.argv[1])
t0 = time.perf_counter()
import numpy as np, zarr
if p["lib"] == "emseg":
    from emseg.io import open_volume
elif p["lib"] == "tensorstore":
    import tensorstore as ts
t1 = time.perf_counter()
if p["lib"] == "emseg":
    a = open_volume(p["path"])
    read = lambda roi: a[roi]
elif p["lib"] == "zarr":
    a = zarr.open(p["path"], mode="r")["0"]
    read = lambda roi: a[roi]
else:
    a = ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": p["path"] + "/0"}}, read=True).result()
    read = lambda roi: a[roi].read().result()
t2 = time.perf_counter()
out = {"import_s": t1 - t0, "open_s": t2 - t1, "sums": []}
for name, roi in zip(("read_aligned_s", "read_unaligned_s"), p["rois"]):
    t = time.perf_counter()
    block = np.asarray(read(tuple(slice(a, a + n) for a, n in roi)))
    out[name] = time.perf_counter() - t
    out["sums"].append(int(block.sum(dtype=np.int64)) if block.shape == tuple(n for _, n in roi) else -1)
out["total_s"] = time.perf_counter() - t1
print(json.dumps(out))
"""


def zarr_shape(gib):
    shape = list(ZARR_FULL)
    while math.prod(shape) > gib * 2**30 and max(shape) > 2 * BLOCK:
        shape[shape.index(max(shape))] //= 2
    return tuple(shape)


def chunk_files(path, rois):
    files = {os.path.join(path, n) for n in (".zgroup", ".zattrs", "0/.zarray", "0/.zattrs")}
    for roi in rois:
        ranges = [range(s.start // c, (s.stop - 1) // c + 1) for s, c in zip(roi, ZARR_CHUNKS)]
        files.update(os.path.join(path, "0", str(i), str(j), str(k)) for i in ranges[0] for j in ranges[1]
                     for k in ranges[2])
    return sorted(files)


def bench_open_read(workdir, gib, trials):
    try:
        import tensorstore  # noqa: F401
        libs = ("emseg", "zarr", "tensorstore")
    except ImportError:
        libs = ("emseg", "zarr")
    shape = zarr_shape(gib)
    path = os.path.join(workdir, "big16.zarr")
    block = aligned_block_shape(shape, ZARR_CHUNKS, 1, 64 * 2**20)
    log(f"zarr_open_read: writing {path} {shape} uint8 ({math.prod(shape) / 2**30:.1f} GiB), chunks "
        f"{ZARR_CHUNKS}, every chunk, in blocks of {block}")
    content = RampVolume(shape, block)
    t = time.perf_counter()
    vol = create_volume(path, shape, "uint8", chunks=ZARR_CHUNKS, meta=VolumeMeta("zyx", (8, 8, 8)), overwrite=True)
    blocks = block_slices(shape, block)
    for i, roi in enumerate(blocks):
        vol[roi] = content.write_block(roi)
        if (i + 1) % max(1, len(blocks) // 10) == 0:
            log(f"  {i + 1}/{len(blocks)} blocks")
    vol.close()
    build_s = time.perf_counter() - t
    res = {"shape": shape, "chunks": ZARR_CHUNKS, "bytes": math.prod(shape), "disk_bytes": disk_bytes(path),
           "build_seconds": build_s, "block": BLOCK, "trials": trials,
           "page_cache": "touched chunk files evicted (fadvise DONTNEED) before each trial; fresh process each"}
    log(f"  built in {build_s:.1f} s, {res['disk_bytes'] / 1e9:.2f} GB on disk")

    rng = np.random.default_rng(SEED + 1)
    aligned = random_rois(rng, shape, trials, align=ZARR_CHUNKS[0])
    unaligned = random_rois(rng, shape, trials)
    fixed = (500, 1777, 2901)
    if all(a + BLOCK <= s for a, s in zip(fixed, shape)):
        unaligned[0] = tuple(slice(a, a + BLOCK) for a in fixed)
    runs = {lib: [] for lib in libs}
    ok = True
    for i, pair in enumerate(zip(aligned, unaligned)):
        expected = [int(content.region(roi).sum(dtype=np.int64)) for roi in pair]
        for lib in libs[i % len(libs):] + libs[:i % len(libs)]:  # rotate who goes first
            evict(chunk_files(path, pair))
            r = run_child(READ, {"lib": lib, "path": path, "rois": [[(s.start, BLOCK) for s in roi] for roi in pair]})
            ok &= r.pop("sums") == expected
            runs[lib].append(r)
        log(f"  trial {i + 1}/{trials}: " + ", ".join(f"{lib} {runs[lib][-1]['total_s'] * 1e3:.0f} ms" for lib in libs))
    res["rois"] = {name: [[s.start for s in r] for r in rois] for name, rois in (("aligned", aligned),
                                                                              ("unaligned", unaligned))}
    for lib in libs:
        res[lib if lib == "emseg" else f"peer_{lib}"] = {
            k: summary([r[k] for r in runs[lib]]) for k in ("import_s", "open_s", "read_aligned_s", "read_unaligned_s",
                                                           "total_s", "process_s")}
    med = {lib: statistics.median(r["total_s"] for r in runs[lib]) for lib in libs}
    for lib in libs[1:]:
        res[f"ratio_total_vs_{lib}"] = med["emseg"] / med[lib]
    res["verified"] = bool(ok)
    res["goal_s"] = GOAL_READ_S
    res["met"] = bool(res["emseg"]["total_s"]["max"] < GOAL_READ_S and ok)
    return res


# --- main -------------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", help="scratch folder for the big files (default: a new folder under /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the big files")
    p.add_argument("--tiff-gb", type=float, default=2.0, help="TIFF size in GB, rounded up to 64 planes (2.15)")
    p.add_argument("--zarr-gib", type=float, default=16.0, help="Zarr size in GiB (default 16)")
    p.add_argument("--trials", type=int, default=5, help="fresh-process trials per reader (default 5)")
    p.add_argument("--only", choices=("convert", "open"), help="run one of the two parts")
    args = p.parse_args(argv)

    own = args.workdir is None
    workdir = tempfile.mkdtemp(prefix="emseg-bench-", dir="/tmp") if own else args.workdir
    os.makedirs(workdir, exist_ok=True)
    need = (0 if args.only == "open" else 3.2 * args.tiff_gb * 1e9) + \
           (0 if args.only == "convert" else 0.25 * args.zarr_gib * 2**30) + 1e9
    free = shutil.disk_usage(workdir).free
    if free < need:
        sys.exit(f"{workdir}: {free / 1e9:.1f} GB free, the benchmark needs about {need / 1e9:.1f} GB; "
                 "use --workdir elsewhere or smaller --tiff-gb/--zarr-gib")
    log(f"workdir {workdir} ({free / 1e9:.0f} GB free)")
    out = {"machine": machine(), "workdir": workdir}
    made = []
    try:
        if args.only != "open":
            made += ["big.tif", "big.zarr", "peer.zarr"]
            out["tiff_to_zarr"] = bench_tiff_to_zarr(workdir, args.tiff_gb)
        if args.only != "convert":
            made.append("big16.zarr")
            out["zarr_16gib_open_read"] = bench_open_read(workdir, args.zarr_gib, args.trials)
    finally:
        if not args.keep:
            for name in made:
                target = os.path.join(workdir, name)
                shutil.rmtree(target, ignore_errors=True) if os.path.isdir(target) else (
                    os.path.exists(target) and os.remove(target))
            if own:
                shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
