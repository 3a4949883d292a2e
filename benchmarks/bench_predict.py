"""Benchmark blockwise prediction on this machine; prints one JSON object to stdout.

For a 2D model (``UNet.light2d``, section by section) and a 3D anisotropic model
(``UNet.for_voxel_size((30, 6, 6), depth=3, features=16)``), both with random weights (speed does
not depend on training), in one run:

- ``emseg``: ``predict_blockwise`` over an in-memory volume (threads, automatic halo) — voxels/s;
- ``bare_forward``: the model alone on the very same block inputs (pre-cut, in memory), so
  ``overhead`` = emseg / bare − 1 is what reading, padding, cropping, casting and writing cost
  (goal ≤ 15%);
- ``monai``: ``monai.inferers.sliding_window_inference`` with the same model, the same window
  (the block's read region), 25% overlap and Gaussian blending — the peer; ``ratio_vs_monai`` =
  monai seconds / emseg seconds (goal ≥ 1.5); emseg runs crop blending there, MONAI has none;
  ``monai_channels_last``: MONAI again with the model and windows in the channels-last layout that
  emseg uses by itself (the same convolution kernels on both sides);
- ``gflops``: the network's FLOPs (torch's FlopCounterMode) per second achieved, against a
  float32 matrix-multiply peak measured in the same run.
torch-em's ``predict_with_halo`` is not compared: it needs ``bioimage_cpp``, which is not on PyPI.

Optionally (``--big-gvox 2``) a ≥ 2-gigavoxel uint8 Zarr is predicted in a fresh process with a
tiny 2D network and its peak RSS is reported (goal < 2 GB).

Usage: ``python benchmarks/bench_predict.py [--big-gvox 0] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def matmul_peak(n=2048, repeats=5):
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def flops(model, shape):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model(torch.zeros(shape))
    return fc.get_total_flops()


def case(name, model, raw, block_shape, threads):
    import torch

    from emseg.predict import as_predictor, plan_blocks, predict_blockwise, predict_region

    torch.set_num_threads(threads)
    pred = as_predictor(model)
    log(f"{name}: raw {raw.shape}, halo {pred.halo}")
    with tempfile.TemporaryDirectory() as d:
        predict_blockwise(raw[: max(1, raw.shape[0] // 8)], model, f"{d}/warm.zarr", block_shape=block_shape,
                          workers=1)  # warm-up: allocator, threads
        t = time.perf_counter()
        r = predict_blockwise(raw, model, f"{d}/out.zarr", block_shape=block_shape, workers=1, dtype="float16")
        emseg_s = time.perf_counter() - t
        block_shape = r.out.chunks[1:]  # the automatic choice
    # bare forward on the same read regions, in memory, no IO/cast/write
    blocks = plan_blocks(raw.shape, r.out.chunks[1:], _halo(raw, pred, r))
    inputs = [np.asarray(raw[read], np.float32)[None] for _, read in blocks]
    t = time.perf_counter()
    for x in inputs:
        predict_region([pred.fn], x, spatial_ndim=pred.ndim, divisor=pred.divisor)
    bare_s = time.perf_counter() - t
    # MONAI sliding window with the read-region size as window
    from monai.inferers import sliding_window_inference

    # MONAI's window: the same size as emseg's read region (block + 2 halo), cut to the volume
    window = tuple(min(n, b + 2 * h) for n, b, h in zip(raw.shape[-pred.ndim:], block_shape[-pred.ndim:],
                                                          pred.halo))
    window = tuple(-(-w // d) * d for w, d in zip(window, pred.divisor))
    vol = torch.from_numpy(raw.astype(np.float32))
    x = vol[:, None] if pred.ndim == 2 else vol[None, None]
    def monai(net, fmt):
        t = time.perf_counter()
        with torch.inference_mode():
            y = sliding_window_inference(x, window, 4 if pred.ndim == 2 else 1,
                                         lambda v: torch.sigmoid(net(v.contiguous(memory_format=fmt))),
                                         overlap=0.25, mode="gaussian")
        del y
        return time.perf_counter() - t

    import copy

    monai_s = monai(model, torch.contiguous_format)  # the model as the user hands it over (NCHW)
    fmt = torch.channels_last if pred.ndim == 2 else torch.channels_last_3d
    monai_cl_s = monai(copy.deepcopy(model).to(memory_format=fmt), fmt)  # with emseg's channels-last layout
    per_block = [flops(model, (1, 1) + tuple(-(-s // d) * d for s, d in zip(xx.shape[-pred.ndim:], pred.divisor)))
                 * (xx.shape[1] if pred.ndim == 2 else 1) for xx in inputs]
    total_flops = float(sum(per_block))
    vox = raw.size
    return {"raw_shape": list(raw.shape), "block_shape": list(block_shape), "halo": list(pred.halo),
            "n_blocks": r.n_blocks, "emseg_s": emseg_s, "voxels_per_s": vox / emseg_s, "bare_forward_s": bare_s,
            "overhead": emseg_s / bare_s - 1, "goal_overhead": 0.15, "monai_s": monai_s, "monai_window": list(window),
            "ratio_vs_monai": monai_s / emseg_s, "goal_ratio_vs_monai": 1.5,
            "monai_channels_last_s": monai_cl_s, "ratio_vs_monai_channels_last": monai_cl_s / emseg_s, "gflop": total_flops / 1e9,
            "gflops_achieved": total_flops / emseg_s / 1e9}


def _halo(raw, pred, r):
    lead = raw.ndim - pred.ndim
    k = (pred.in_channels - 1) // 2 if lead else 0
    halo = (k,) * lead + tuple(pred.halo)
    return tuple(-(-h // d) * d for h, d in zip(halo, (1,) * lead + tuple(pred.divisor)))


BIG_CHILD = """
import json, sys, time
from emseg.predict import predict_blockwise
p = json.loads(sys.argv[1])
t = time.perf_counter()
r = predict_blockwise(p["raw"], p["model"], p["out"], block_shape=tuple(p["block"]), dtype="uint8", workers=2)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": hwm, "blocks": r.n_blocks}))
"""


def big(gvox, threads):
    import torch

    from emseg.io import create_volume
    from emseg.models import UNet, save_model

    z = max(1, int(round(gvox * 1e9 / 4096**2)))
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as d:
        vol = create_volume(f"{d}/raw.zarr", (z, 4096, 4096), np.uint8, chunks=(1, 1024, 1024))
        plane = (np.random.default_rng(0).random((4096, 4096)) * 255).astype(np.uint8)
        for i in range(z):
            vol[i] = np.roll(plane, i, axis=1)
        torch.manual_seed(0)
        save_model(UNet(ndim=2, features=2, depth=1, norm=None), f"{d}/tiny.safetensors")
        log(f"big: predicting {z}x4096x4096 ({z * 4096**2 / 1e9:.2f} Gvox) in a fresh process")
        params = {"raw": f"{d}/raw.zarr", "model": f"{d}/tiny.safetensors", "out": f"{d}/out.zarr", "block": [1, 1024, 1024]}
        out = subprocess.run([sys.executable, "-c", BIG_CHILD, json.dumps(params)], capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(out.stderr)
        res = json.loads(out.stdout.strip().splitlines()[-1])
    return {"shape": [z, 4096, 4096], "gigavoxels": z * 4096**2 / 1e9, **res, "goal_peak_rss_mb": 2000,
            "met": res["peak_rss_mb"] < 2000}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--big-gvox", type=float, default=0.0)
    ap.add_argument("--only-big", action="store_true", help="skip the 2D/3D model comparisons")
    args = ap.parse_args()
    import torch

    from emseg.models import UNet

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    result = {"machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": args.threads},
              "matmul_peak_gflops": matmul_peak()}
    if args.only_big:
        result["big_zarr"] = big(args.big_gvox or 2.0, args.threads)
        print(json.dumps(result, indent=1))
        return
    m2 = UNet.light2d().eval()
    result["model_2d"] = case("2d light", m2, rng.random((8, 1024, 1024)).astype(np.float32), None, args.threads)
    m3 = UNet.for_voxel_size((30, 6, 6), depth=3, features=16).eval()
    result["model_3d"] = case("3d anisotropic", m3, rng.random((48, 384, 384)).astype(np.float32), None, args.threads)
    for k in ("model_2d", "model_3d"):
        result[k]["fraction_of_matmul_peak"] = result[k]["gflops_achieved"] / result["matmul_peak_gflops"]
    if args.big_gvox:
        result["big_zarr"] = big(args.big_gvox, args.threads)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
