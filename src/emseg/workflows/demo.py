"""The built-in example, the README's first command: the whole pipeline on data made on the spot.

1. synthesize two EM-like volumes with ground truth (one to train on, one to test on);
2. train a light 2D U-Net for the BC target (mitochondria foreground + contour), 700 steps (about a
   minute on 2 CPU cores);
3. segment the test volume blockwise into mitochondria instances (``segment_volume``: prediction,
   then the seeded BC watershed, stitched across blocks with global ids);
4. evaluate against the test volume's ground truth;
5. write ``report.html`` (overlays of raw / prediction / instances / ground truth, and the metric
   table) and ``report.json``.

Nothing is downloaded; every stage raises on failure, so ``emseg demo`` exits non-zero.
"""

from __future__ import annotations

import html
import json
import os
import time

import numpy as np

TARGET = "bc"  # the task trained and scored (emseg.tasks): foreground + contour, instances by marker watershed

__all__ = ["run_demo"]


def _volumes(out, shape, seed, echo):
    from ..synthetic import synthetic_em
    from ..config import ExecutionConfig
    from ..io import write_volume

    paths = {}
    for part, s in (("train", seed), ("test", seed + 1)):
        t0 = time.perf_counter()
        em = synthetic_em(tuple(shape), seed=s, defects=True)
        path = os.path.join(out, f"{part}.zarr")
        for key, data in (("raw", em.raw), ("labels/neurons", em.neurons), ("labels/mito", em.mito)):
            write_volume(f"{path}:{key}", data, voxel_size=em.voxel_size, execution=ExecutionConfig(overwrite=True))
        echo(f"[1/5] synthesized the {part} volume {em.raw.shape} at {'x'.join(f'{v:g}' for v in em.voxel_size)} nm "
             f"in {time.perf_counter() - t0:.1f} s: {int(em.neurons.max())} cells, {int(em.mito.max())} mitochondria, "
             f"defects {em.defects} -> {path}")
        paths[part] = path
    return paths


def _train(paths, out, steps, minutes, seed, echo):
    from ..train import load_config, train

    config = load_config(
        raw=[f"{paths['train']}:raw"], labels=[f"{paths['train']}:labels/mito"], target=TARGET,
        patch_shape=(128, 128), batch_size=8, foreground_fraction=0.3, model={"preset": "light2d", "features": 8},
        lr=3e-3, steps=steps, warmup_steps=20, max_minutes=minutes, val_fraction=0.125, val_every=100000,
        val_patches=8, seed=seed, out_dir=os.path.join(out, "model"), overwrite=True,
        amp=False)  # float32: the same result on every CPU (bf16 kernels differ between CPUs, and one seed
    # of this short run diverged to IoU 0.74 in bf16 on one machine while float32 gave 0.887)
    r = train(config, progress=False)
    echo(f"[2/5] trained a light 2D U-Net (BC target) for {r.steps} steps in {r.seconds:.0f} s "
         f"({r.patches_per_second:.1f} patches/s) -> {r.latest}")
    return r


def _segment(paths, checkpoint, out, echo):
    from .segment import segment_volume

    seg_path, prob_path = os.path.join(out, "instances.zarr"), os.path.join(out, "prediction.zarr")
    pr, sr = segment_volume(f"{paths['test']}:raw", seg_path, checkpoint, block_shape=(16, 128, 128),
                            probabilities=prob_path, min_size=50, overwrite=True, progress=False)
    echo(f"[3/5] segmented the test volume blockwise ({pr.n_blocks} blocks): prediction {pr.seconds:.1f} s, "
         f"instances {sr.seconds:.1f} s, {sr.n_objects} mitochondria -> {seg_path}")
    return seg_path, prob_path


_LABELS = {"ap50": "AP@0.5", "ap75": "AP@0.75", "map": "AP@[0.5:0.95]", "pq": "PQ", "sq": "SQ", "rq": "RQ",
           "aji": "AJI", "voi_split": "VOI split", "voi_merge": "VOI merge", "voi": "VOI",
           "adapted_rand_error": "adapted Rand error"}


def _evaluate(gt, seg, prob, task):
    """The probability map's foreground scores, then the metric set of the model's task (:mod:`emseg.tasks`)
    on the instances."""
    from ..metrics import evaluate
    from ..tasks import get_task

    fg = evaluate(gt > 0, prob[0], task="semantic", metrics="iou,dice,precision,recall")
    scores = {"foreground IoU": fg["iou"], "foreground Dice": fg["dice"], "precision": fg["precision"],
              "recall": fg["recall"]}
    objects = evaluate(gt, seg, task=get_task(task).metrics)
    scores.update({_LABELS.get(k, k): v for k, v in objects.items()})
    scores.update({"objects (gt)": int(len(np.unique(gt)) - 1), "objects (emseg)": int(len(np.unique(seg)) - 1)})
    return scores


def _colors(labels):
    """A fixed pseudo-random colour per id (0 stays black)."""
    ids = labels.astype(np.uint64)
    h = (ids * np.uint64(2654435761)) % np.uint64(2**32)
    rgb = np.stack([(h >> np.uint64(s)) & np.uint64(255) for s in (0, 8, 16)], -1).astype(np.float32)
    rgb = 80 + rgb * (175 / 255)  # no near-black colours
    rgb[labels == 0] = 0
    return rgb


def _overlay(raw, labels=None, heat=None, alpha=0.5):
    """RGB picture: grey raw, with instances tinted in their colours (and outlined) or a heat map in red."""
    from scipy import ndimage

    grey = np.repeat(raw.astype(np.float32)[..., None], 3, -1)
    if heat is not None:
        red = np.zeros_like(grey)
        red[..., 0] = 255
        a = alpha * np.clip((heat - 0.2) / 0.8, 0, 1)[..., None]  # probabilities above 0.2
        grey = (1 - a) * grey + a * red
    if labels is not None:
        inside = (labels > 0)[..., None]
        grey = np.where(inside, (1 - alpha) * grey + alpha * _colors(labels), grey)
        edge = (ndimage.grey_dilation(labels, size=3) != ndimage.grey_erosion(labels, size=3)) & (labels > 0)
        grey[edge] = _colors(labels)[edge]
    return np.clip(grey, 0, 255).astype(np.uint8)


def _pictures(out, raw, prob, seg, gt, z):
    from PIL import Image

    panels = {
        "raw": np.repeat(raw[z][..., None], 3, -1),
        "prediction (foreground red, contour blue)": _overlay(raw[z], heat=prob[0, z]),
        "instances (emseg)": _overlay(raw[z], labels=seg[z]),
        "ground truth": _overlay(raw[z], labels=gt[z]),
    }
    ct = np.clip((prob[1, z] - 0.3) / 0.7, 0, 1)[..., None]  # contour probability above 0.3, in blue
    p = panels["prediction (foreground red, contour blue)"].astype(np.float32)
    panels["prediction (foreground red, contour blue)"] = ((1 - 0.6 * ct) * p + 0.6 * ct * [40, 90, 255]).astype(np.uint8)
    files = {}
    for i, (title, img) in enumerate(panels.items()):
        name = f"section{z:03d}_{i}_{title.split()[0]}.png"
        Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST).save(os.path.join(out, name))
        files[title] = name
    return files


def _write_report(out, summary, pictures):
    rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" if isinstance(v, float) else
                     f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in summary["metrics"].items())
    figs = "\n".join(f'<figure><img src="{html.escape(f)}" alt="{html.escape(t)}"><figcaption>{html.escape(t)}'
                     f"</figcaption></figure>" for sec in pictures.values() for t, f in sec.items())
    stages = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{v:.1f} s</td></tr>" for k, v in summary["seconds"].items())
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>emseg demo report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}} figure{{display:inline-block;margin:4px}}
img{{width:280px;image-rendering:pixelated}} figcaption{{font-size:12px}} td{{padding:2px 12px}}</style></head>
<body><h1>emseg demo</h1>
<p>{html.escape(summary["what"])}</p>
<h2>Test volume, sections {", ".join(str(z) for z in pictures)}</h2>
{figs}
<h2>Metrics (test volume, whole 3D stack, against its ground truth)</h2>
<table>{rows}</table>
<h2>Stages</h2><table>{stages}</table>
<p>emseg {html.escape(summary["emseg"])}; full numbers in report.json.</p>
</body></html>
"""
    from ..io.atomic import write_text_atomic

    path = os.path.join(out, "report.html")
    write_text_atomic(path, page)
    write_text_atomic(os.path.join(out, "report.json"), json.dumps(summary, indent=1))
    return path


_MARK = ".emseg-demo"


def _claim(out):
    """Make ``out`` the demo's folder: new, empty, or one an earlier demo made (its files are replaced);
    a folder holding anything else is refused, so no file of the user's is ever replaced."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"--out {out} is a file; the demo writes a folder: choose another --out")
    if os.path.isdir(out):
        entries = sorted(os.listdir(out))
        if entries and _MARK not in entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise FileExistsError(f"--out {out} already holds files that are not an emseg demo's ({shown}); "
                                  "choose a new or empty folder")
    os.makedirs(out, exist_ok=True)
    from ..io.atomic import write_text_atomic

    write_text_atomic(os.path.join(out, _MARK), "made by emseg demo: its files here are replaced on the next run\n")


def run_demo(out="emseg-demo", *, shape=(32, 256, 256), seed=0, steps=700, minutes=3.0, echo=print) -> dict:
    """Run the example into folder ``out``; returns the report's summary (with ``report`` its path).

    Parameters
    ----------
    out : str
        Folder for the volumes, the model, the segmentation and the report: new, empty, or made by an
        earlier demo (then its files are replaced). A folder holding other files is refused.
    shape : tuple of int
        ``(z, y, x)`` of each synthetic volume; at least ``(8, 128, 128)``.
    seed : int
        The training volume's seed (the test volume uses ``seed + 1``) and the training seed.
    steps : int
        Training steps (batches of 8 patches of 128²): 700 take about a minute on 2 CPU cores. A
        fixed number, so the result does not depend on the machine's speed.
    minutes : float
        Training stops earlier if it takes longer than this.
    """
    from .. import __version__
    from ..io import read_volume

    shape = tuple(int(v) for v in shape)
    if len(shape) != 3 or shape[0] < 8 or min(shape[1:]) < 128:
        raise ValueError(f"shape must be z,y,x of at least 8,128,128; got {shape}")
    if not minutes > 0 or int(steps) < 1:
        raise ValueError(f"steps and minutes must be > 0; got {steps} and {minutes}")
    _claim(out)
    seconds, t = {}, time.perf_counter()
    paths = _volumes(out, shape, seed, echo)
    seconds["synthesize"], t = time.perf_counter() - t, time.perf_counter()
    r = _train(paths, out, int(steps), minutes, seed, echo)
    seconds["train"], t = time.perf_counter() - t, time.perf_counter()
    seg_path, prob_path = _segment(paths, r.latest, out, echo)
    seconds["segment (blockwise)"], t = time.perf_counter() - t, time.perf_counter()
    raw, gt = read_volume(f"{paths['test']}:raw"), read_volume(f"{paths['test']}:labels/mito")
    seg, prob = read_volume(seg_path), read_volume(prob_path).astype(np.float32)
    metrics = _evaluate(gt, seg, prob, TARGET)
    seconds["evaluate"], t = time.perf_counter() - t, time.perf_counter()
    echo("[4/5] " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    count = (gt > 0).reshape(len(gt), -1).sum(1)
    zs = sorted({int(np.argmax(count)), len(gt) // 2})
    pictures = {z: _pictures(out, raw, prob, seg, gt, z) for z in zs}
    summary = {"what": f"A light 2D U-Net trained for {r.steps} steps ({r.seconds:.0f} s) on one synthetic EM volume "
                       f"{shape} and segmented blockwise into mitochondria on another (seed {seed + 1}).",
               "emseg": __version__, "shape": list(shape), "seed": seed, "steps": r.steps, "metrics": metrics,
               "seconds": seconds, "files": {"train": paths["train"], "test": paths["test"], "model": r.latest,
                                             "prediction": prob_path, "instances": seg_path},
               "pictures": {str(z): p for z, p in pictures.items()}}
    seconds["report"] = time.perf_counter() - t
    path = _write_report(out, summary, pictures)
    echo(f"[5/5] report: {os.path.abspath(path)}")
    return {**summary, "report": path}
