"""The ``emseg`` command: one subcommand per library function.

Each subcommand parses its arguments and calls one function of the library; heavy modules are
imported inside the handlers so ``emseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys

__all__ = ["main"]


def _ints(text, minimum=1):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64,64; got {text!r}") from None
    if any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"expected integers of at least {minimum}; got {text!r}")
    return values


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}")
    return value


def _voxel_size(text):
    from .io.meta import parse_voxel_size

    parts = text.split(",")
    try:
        return parse_voxel_size(parts, ndim=len(parts) if len(parts) in (2, 3) else 3)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _print_info(info):
    vs = info["voxel_size_nm"]
    rows = [
        ("path", info["path"] + (f":{info['key']}" if info["key"] else "")),
        ("format", info["format"]),
        ("shape", " x ".join(map(str, info["shape"])) + f"  ({info['axes']})"),
        ("dtype", info["dtype"]),
        ("voxel size", "unknown" if vs is None else " x ".join(f"{v:g}" for v in vs) + " nm"),
        ("offset", "-" if info["offset_nm"] is None else " x ".join(f"{v:g}" for v in info["offset_nm"]) + " nm"),
        ("chunks", "contiguous" if info["chunks"] is None else " x ".join(map(str, info["chunks"]))),
        ("size on disk", f"{_human(info['size_on_disk_bytes'])}  (in memory {_human(info['size_in_memory_bytes'])})"),
    ]
    s = info["sample"]
    if "min" in s:
        roi = ", ".join(f"{a}:{b}" for a, b in s["roi"])
        ids = f", {s['n_ids']} distinct values" if "n_ids" in s else ""
        rows.append(("values", f"min {s['min']:g}, max {s['max']:g}, mean {s['mean']:.4g}{ids}  (sample [{roi}])"))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def cmd_info(args):
    from .io import list_datasets, volume_info
    from .io.paths import CONTAINERS, detect_format, split_key

    path, key = split_key(args.path, args.key)
    keys = [key]
    if key is None and detect_format(path) in CONTAINERS:
        found = list_datasets(path)
        if len(found) > 1:
            from .io.omezarr import ome_multiscales

            keys = found if not _is_ome_image(path, ome_multiscales) else [None]
    infos = [volume_info(path, k) for k in keys]
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2))
    else:
        for i, info in enumerate(infos):
            if i:
                print()
            _print_info(info)


def _is_ome_image(path, ome_multiscales):
    if not str(path).rstrip("/").endswith(".zarr"):
        return False
    import zarr

    node = zarr.open(str(path), mode="r")
    return isinstance(node, zarr.Group) and bool(ome_multiscales(node.attrs.asdict()))


def cmd_convert(args):
    from .io import convert_volume

    try:
        written = convert_volume(args.input, args.output, chunks=args.chunks, voxel_size=args.voxel_size, format=args.format,
                       compression=args.compression, zarr_format=args.zarr_format, overwrite=args.overwrite,
                       progress=not args.no_progress, max_block_bytes=int(args.max_block_mb * 2**20))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted; nothing was written at {args.output} (the partial conversion "
                                "was removed)") from None
    print(f"wrote {args.output}" if written else
          f"{args.output} already holds the finished result of this very conversion; nothing to do")


def cmd_evaluate(args):
    from .io import open_volume

    if args.json and os.path.isdir(args.json):
        raise ValueError(f"--json {args.json} is a folder; give a file name such as scores.json")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise FileNotFoundError(f"--json {args.json}: its folder does not exist")
    from .metrics.evaluate import evaluate

    with open_volume(args.gt) as gt, open_volume(args.pred) as pred:
        result = evaluate(gt, pred, task=args.task, metrics=args.metrics, ignore_label=args.ignore_label,
                          threshold=args.threshold, boundary_tolerance_nm=args.boundary_tolerance_nm,
                          voxel_size=gt.voxel_size, iou_threshold=args.iou_threshold)
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {'n/a' if v is None else f'{v:.6g}' if isinstance(v, float) else v}")
    if args.json:
        from .io.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps({"gt": args.gt, "pred": args.pred, "task": args.task, **result},
                                                indent=2) + "\n")


def cmd_train(args):
    from .train import load_config, train

    overrides = list(args.set or [])
    for name in ("device", "threads", "out_dir", "steps"):
        value = getattr(args, name)
        if value is not None:
            overrides.append(f"{name}={value}")
    if args.overwrite:
        overrides.append("overwrite=true")
    config = load_config(args.config, overrides)
    result = train(config, progress=not args.no_progress)
    best = "n/a" if result.best_metric is None else f"{result.best_metric:.4f} at step {result.best_step}"
    if result.start_step and result.start_step >= result.steps:
        print(f"{config.out_dir} already holds this run, finished at step {result.steps}; nothing to do "
              f"(--steps N trains it longer, --overwrite starts over); best validation {best}")
        return
    resumed = f" (resumed at step {result.start_step})" if result.start_step else ""
    print(f"trained {result.steps} steps{resumed} in {result.seconds:.0f} s "
          f"({result.patches_per_second:.1f} patches/s); "
          f"best validation {best}; checkpoints: {result.latest}" + (f", {result.best}" if result.best else ""))


def _halo(text):
    """'auto' or 0 or more voxels per axis."""
    return text if text == "auto" else _ints(text, minimum=0)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1; got {text!r}")
    return value


def _check_output(path, command, dtype=None):
    """Refuse a bad output path, format or dataset key at once, before models and data are loaded."""
    from .io.output import Output
    from .io.paths import CONTAINERS

    o = Output(path, signature={})
    if o.fmt not in CONTAINERS:
        raise ValueError(f"{path}: {command} writes a chunked volume (.zarr, .n5 or .h5); got a {o.fmt} path: write "
                         "to e.g. out.zarr, then emseg convert it")
    if o.fmt == "n5" and dtype == "float16":
        raise ValueError(f"{path}: N5 has no float16; pass --dtype float32 or --dtype uint8, or write to .zarr")


def cmd_predict(args):
    _check_output(args.output, "predict", args.dtype)
    from .predict import predict_blockwise

    models = args.model if len(args.model) > 1 else args.model[0]
    scheduler = args.scheduler or ("local" if args.workers else None)
    r = predict_blockwise(args.input, models, args.output, block_shape=args.block_shape,
                          halo=args.halo,
                          tile_shape=args.tile_shape, tta=args.tta, dtype=args.dtype, device=args.device,
                          normalization="data" if args.normalize == "data" else None,
                          workers=args.workers or args.threads, scheduler=scheduler, overwrite=args.overwrite,
                          progress=not args.no_progress)
    if r.complete_before:
        print(f"{args.output} already holds the finished result of this very run; nothing to do "
              "(--overwrite computes it again)")
        return
    print(f"predicted {r.n_computed} of {r.n_blocks} blocks ({r.n_skipped} skipped) in {r.seconds:.1f} s, "
          f"{r.voxels_per_second / 1e6:.2f} Mvoxel/s -> {args.output}")


def _params(items):
    """``key=value`` pairs; values parsed as YAML scalars (numbers, true/false, null, lists)."""
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--param expects key=value; got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _execution(args):
    return dict(workers=args.workers or args.threads, scheduler=args.scheduler or ("local" if args.workers else None),
                overwrite=args.overwrite, progress=not args.no_progress)


def cmd_segment(args):
    _check_output(args.output, "segment")
    if args.keep_probabilities:
        _check_output(args.keep_probabilities, "segment", "float16")
        from .io.paths import split_key

        if [os.path.abspath(p) if i == 0 else p for i, p in enumerate(split_key(args.keep_probabilities))] == \
                [os.path.abspath(p) if i == 0 else p for i, p in enumerate(split_key(args.output))]:
            raise ValueError(f"--keep-probabilities {args.keep_probabilities} is the output itself; give another path")
    from .instances import segment_volume

    pr, sr = segment_volume(args.input, args.output, args.model, task=args.task, method=args.method,
                            params=_params(args.param), min_size=args.min_size, z_filter=args.z_filter,
                            probabilities=args.keep_probabilities, block_shape=args.block_shape, tta=args.tta,
                            device=args.device, normalization="data" if args.normalize == "data" else None,
                            **_execution(args))
    if sr.complete_before:
        kept = "" if not args.keep_probabilities or os.path.exists(args.keep_probabilities.split(":")[0]) else \
            f"; the earlier run kept no probabilities, so {args.keep_probabilities} was not written"
        print(f"{args.output} already holds the finished result of this very run ({sr.n_objects} objects); "
              f"nothing to do (--overwrite computes it again){kept}")
        return
    print(f"predicted {pr.n_computed} of {pr.n_blocks} blocks in {pr.seconds:.1f} s; {sr.n_objects} objects "
          f"in {sr.seconds:.1f} s -> {args.output}")


def cmd_postprocess(args):
    _check_output(args.output, "postprocess")
    from .instances import segment_blockwise
    from .io import open_volume
    from .probabilities import check_probability_source

    with open_volume(args.input) as vol:
        check_probability_source(vol, args.input, fix="postprocess takes the output of emseg predict: run emseg "
                                 "predict or emseg segment")
    try:
        offsets = json.loads(args.offsets) if args.offsets else None
    except ValueError as e:
        raise ValueError(f"--offsets must be JSON like '[[-1,0,0],[0,-1,0],[0,0,-1]]'; got {args.offsets!r} ({e})") \
            from None
    r = segment_blockwise(args.input, args.output, args.method, _params(args.param), offsets=offsets,
                          block_shape=args.block_shape,
                          halo=args.halo,
                          z_filter=args.z_filter or 0, min_size=args.min_size or 0, **_execution(args))
    if r.complete_before:
        print(f"{args.output} already holds the finished result of this very run ({r.n_objects} objects); "
              "nothing to do (--overwrite computes it again)")
        return
    print(f"{r.n_objects} objects from {r.n_blocks} blocks in {r.seconds:.1f} s "
          f"({r.voxels_per_second / 1e6:.2f} Mvoxel/s) -> {args.output}")


def cmd_models(args):
    import os

    from .zoo import model_card, model_names, model_path

    if args.action == "list":
        if args.name:
            raise ValueError("emseg models list takes no name; use emseg models info NAME")
        rows = [("name", "for", "trained on", "input voxel (nm)", "held-out result", "size")]
        for name in model_names():
            c = model_card(name)
            vs = c.get("input_voxel_size_nm")
            rows.append((name, c["summary"], c["training"]["data_short"], "x".join(f"{v:g}" for v in vs) if vs else "?",
                         c.get("headline", "not measured"), _human(os.path.getsize(model_path(name)))))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        return
    if not args.name:
        raise ValueError(f"emseg models info needs a model name: {', '.join(model_names())}")
    card = model_card(args.name)
    if args.json:
        print(json.dumps({**card, "path": model_path(args.name)}, indent=2))
        return
    print(f"{args.name}: {card['summary']}")
    for key in ("purpose", "task", "modality", "target", "input_voxel_size_nm", "architecture", "license",
                "limitations"):
        if key in card:
            print(f"  {key:20s} {card[key]}")
    print(f"  {'weights':20s} {model_path(args.name)}")
    for section in ("training", "postprocess", "metrics"):
        if card.get(section):
            print(f"{section}:")
            for k, v in card[section].items():
                print(f"  {k:20s} {json.dumps(v) if isinstance(v, (dict, list)) else v}")


def cmd_demo(args):
    from .demo import run_demo

    run_demo(args.out, shape=args.shape, seed=args.seed, steps=args.steps, minutes=args.minutes)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument ends in one line ``emseg CMD: error: ...`` (``--help`` shows the usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="emseg", description="Deep-learning segmentation of electron microscopy.")
    p.add_argument("--version", action="version", version=f"emseg {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("info", help="describe a volume: shape, dtype, voxel size, chunks, size, values")
    s.add_argument("path", help="file or folder; containers as file.h5:volumes/raw")
    s.add_argument("--key", help="dataset inside an HDF5/Zarr/N5 container")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("convert", help="convert a volume to another format block by block")
    s.add_argument("input")
    s.add_argument("output", help="e.g. out.zarr, out.h5:volumes/raw, out.n5:raw, out.tif, out.mrc, out.nii.gz")
    s.add_argument("--chunks", type=_ints, help="storage chunks z,y,x of the output (HDF5/Zarr/N5)")
    s.add_argument("--voxel-size", type=_voxel_size, help="override the voxel size: z,y,x in nm")
    s.add_argument("--format", help="force the output format (default: from the suffix)")
    s.add_argument("--compression", default="default", help="codec (gzip, lzf, zstd, lz4, zlib) or 'none'")
    s.add_argument("--zarr-format", type=int, default=2, choices=(2, 3),
                   help="Zarr v2 with OME-NGFF 0.4 (default) or v3 with OME-NGFF 0.5")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    s.add_argument("--max-block-mb", type=_positive_float, default=64, help="memory per block (MiB)")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("evaluate", help="score a segmentation against ground truth")
    s.add_argument("gt", help="ground truth volume (any format emseg reads; file.h5:key)")
    s.add_argument("pred", help="prediction: mask, probability map or label volume")
    s.add_argument("--task", default="semantic", choices=("semantic", "instance", "neurons", "membranes"))
    s.add_argument("--metrics", help="comma-separated metric names, or 'all' (default: the task's usual set)")
    s.add_argument("--ignore-label", type=int, help="gt label to ignore (neurons default: 0)")
    s.add_argument("--threshold", type=float, default=0.5, help="probability threshold for masks (default 0.5)")
    s.add_argument("--iou-threshold", type=float, default=0.5, help="IoU for instance matching (default 0.5)")
    s.add_argument("--boundary-tolerance-nm", type=float, help="CREMI boundary tolerance in nm")
    s.add_argument("--json", help="also write the results to this JSON file")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("train", help="train a network from a YAML config")
    s.add_argument("config", help="YAML file with TrainConfig keys (see configs/)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"))
    s.add_argument("--threads", type=int, help="CPU threads for torch")
    s.add_argument("--steps", type=int)
    s.add_argument("--out-dir", dest="out_dir")
    s.add_argument("--overwrite", action="store_true",
                   help="delete the trainer's files in the out_dir (checkpoints, log, run.json) and start over")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("predict", help="predict a volume blockwise with a trained model")
    s.add_argument("input", help="raw volume (any format emseg reads; file.h5:key)")
    s.add_argument("output", help="output volume, e.g. pred.zarr (channels first, OME-Zarr)")
    s.add_argument("--model", required=True, action="append",
                   help="a shipped model's name or a checkpoint (.safetensors); repeat for an ensemble")
    s.add_argument("--block-shape", type=_ints, help="write block z,y,x (default: from the model and chunks)")
    s.add_argument("--halo", default="auto", type=_halo, help="'auto' (the model's receptive field) or z,y,x")
    s.add_argument("--tile-shape", type=_ints, help="split blocks into Gaussian-blended tiles of this shape")
    s.add_argument("--tta", choices=("flips", "d4"), help="test-time augmentation")
    s.add_argument("--dtype", default="float16", choices=("float16", "float32", "uint8"))
    s.add_argument("--normalize", choices=("model", "data"), default="model",
                   help="intensity normalization: the model's own (default) or fitted to this volume")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    s.add_argument("--threads", type=_positive_int, default=2, help="worker threads (default 2)")
    s.add_argument("--workers", type=_positive_int, help="start a Dask LocalCluster with N worker processes")
    s.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://host:8786")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_predict)

    from .instances.methods import METHODS, TASKS

    def execution(s):
        s.add_argument("--block-shape", type=_ints, help="block z,y,x (also the output's chunks)")
        s.add_argument("--threads", type=_positive_int, default=2, help="worker threads (default 2)")
        s.add_argument("--workers", type=_positive_int, help="start a Dask LocalCluster with N worker processes")
        s.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://host:8786")
        s.add_argument("--min-size", type=int, help="remove objects with fewer voxels (whole-volume count)")
        s.add_argument("--z-filter", type=int, help="median of the prediction over N sections first (odd N)")
        s.add_argument("--param", action="append", metavar="KEY=VALUE", help="a method parameter (repeatable)")
        s.add_argument("--overwrite", action="store_true")
        s.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("segment", help="raw EM -> instances: blockwise prediction and post-processing, resumable")
    s.add_argument("input", help="raw volume (any format emseg reads; file.h5:key)")
    s.add_argument("output", help="label volume to write, e.g. cells.zarr (OME-Zarr) or out.n5:seg")
    s.add_argument("--model", required=True, help="a shipped model's name (emseg models list) or a checkpoint")
    s.add_argument("--task", choices=tuple(TASKS), help="kind of object: sets the size filter and defaults")
    s.add_argument("--method", choices=tuple(METHODS), help="post-processing (default: from the model's target)")
    s.add_argument("--keep-probabilities", metavar="PATH", help="also keep the prediction at PATH")
    s.add_argument("--tta", choices=("flips", "d4", "none"),
                   help="test-time augmentation (default: a shipped model's card, else none)")
    s.add_argument("--normalize", choices=("model", "data"), default="model",
                   help="intensity normalization: the model's own (default) or fitted to this volume")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    execution(s)
    s.set_defaults(func=cmd_segment)

    s = sub.add_parser("postprocess", help="prediction -> instances, blockwise with global ids, resumable",
                       description="Methods: " + "; ".join(f"{k}: {v['doc']}" for k, v in METHODS.items()))
    s.add_argument("input", help="channels-first prediction (e.g. from emseg predict)")
    s.add_argument("output", help="label volume to write")
    s.add_argument("--method", required=True, choices=tuple(METHODS))
    s.add_argument("--offsets", help="affinity offsets as JSON, e.g. '[[-1,0,0],[0,-1,0],[0,0,-1]]'")
    s.add_argument("--halo", default="auto", type=_halo, help="'auto' (the method's default) or z,y,x")
    execution(s)
    s.set_defaults(func=cmd_postprocess)

    s = sub.add_parser("models", help="the shipped models: list them, or show one's model card")
    s.add_argument("action", choices=("list", "info"))
    s.add_argument("name", nargs="?", help="model name (for info)")
    s.add_argument("--json", action="store_true", help="print the model card as JSON")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("demo", help="the built-in example: synthesize, train, segment blockwise, evaluate, report")
    s.add_argument("--out", default="emseg-demo", help="output folder (default: ./emseg-demo)")
    s.add_argument("--shape", type=_ints, default=(32, 256, 256), help="synthetic volume shape z,y,x")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--steps", type=int, default=700, help="training steps (default 700, about a minute on 2 cores)")
    s.add_argument("--minutes", type=float, default=3.0, help="stop training after this many minutes (default 3)")
    s.set_defaults(func=cmd_demo)
    return p


def _message(e: BaseException) -> str:
    """One line for an exception: its text (a KeyError's without quotes), else its type, never empty."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text = f"{e.filename}: {e.strerror or text}"
    text = " ".join(text.split())  # one line
    known = (ValueError, TypeError, KeyError, OSError)
    if not text or not isinstance(e, known) or type(e).__module__ not in ("builtins", "emseg") and \
            not type(e).__module__.startswith("emseg."):
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    for i in range(len(argv) - 1):  # "--halo -1,0,0": argparse would take the value for an option
        if argv[i].startswith("--") and "=" not in argv[i] and re.match(r"^-\d", argv[i + 1] or ""):
            argv[i], argv[i + 1] = f"{argv[i]}={argv[i + 1]}", None
    argv = [a for a in argv if a is not None]
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if getattr(args, "compression", None) == "none":
        args.compression = None
    try:
        args.func(args)
    except KeyboardInterrupt as e:
        if args.debug:
            raise
        text = str(e) or ("interrupted; the finished blocks are kept: run the same command again to resume"
                          if args.command in ("predict", "segment", "postprocess") else "interrupted")
        print(f"emseg {args.command}: {text}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `emseg info x.zarr | head`: the reader left; nothing to say
        sys.stderr.close()
        return 0
    except MemoryError:
        if args.debug:
            raise
        print(f"emseg {args.command}: error: out of memory; use smaller blocks (--block-shape) or tiles "
              "(--tile-shape), or fewer threads", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - every failure ends in one line; --debug shows the traceback
        if args.debug:
            raise
        print(f"emseg {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
