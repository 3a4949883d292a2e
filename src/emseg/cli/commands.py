"""The handlers of the ``emseg`` subcommands: each builds its stage's configuration from the parsed
arguments, calls one library function and prints one line about what it did."""

from __future__ import annotations

import dataclasses
import json
import os

from .args import params as _params
from .cluster_options import cluster_options, print_job_script

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
    from ..io import list_datasets, volume_info
    from ..io.paths import CONTAINERS, detect_format, split_key

    path, key = split_key(args.path, args.key)
    keys = [key]
    if key is None and detect_format(path) in CONTAINERS:
        found = list_datasets(path)
        if len(found) > 1:
            from ..io.omezarr import ome_multiscales

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
    from ..config import ExecutionConfig
    from ..io import convert_volume
    from ..io.storage import StorageConfig

    storage = StorageConfig(format=args.format, compression=args.compression, zarr_format=args.zarr_format)
    execution = ExecutionConfig(overwrite=args.overwrite, progress=not args.no_progress, max_block_mb=args.max_block_mb,
                                pyramid=args.pyramid)
    from ..io import open_volume
    from ..io.pyramid import check_pyramid

    if args.pyramid:
        with open_volume(args.input) as vol:
            check_pyramid(args.output, args.pyramid, args.format, vol.dtype)
    try:
        written = convert_volume(args.input, args.output, chunks=args.chunks, voxel_size=args.voxel_size,
                                 storage=storage, execution=execution)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted; nothing was written at {args.output} (the partial conversion "
                                "was removed)") from None
    print(f"wrote {args.output}" if written else
          f"{args.output} already holds the finished result of this very conversion; nothing to do")


def cmd_evaluate(args):
    from ..io import open_volume

    if args.json and os.path.isdir(args.json):
        raise ValueError(f"--json {args.json} is a folder; give a file name such as scores.json")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise FileNotFoundError(f"--json {args.json}: its folder does not exist")
    from ..metrics import EvaluateConfig, evaluate, infer_task

    config = _configs(args, {"evaluate": EvaluateConfig},  # a bad option is refused before any volume is read
                      evaluate=dict(task=args.task, metrics=args.metrics, ignore_label=args.ignore_label,
                                    threshold=args.threshold, boundary_tolerance_nm=args.boundary_tolerance_nm,
                                    iou_threshold=args.iou_threshold))["evaluate"]
    with open_volume(args.gt) as gt, open_volume(args.pred) as pred:
        task, chosen = config.task, None
        if task is None:
            chosen = infer_task(gt, pred)
            task = chosen.task
        result = evaluate(gt, pred, config, task=task, voxel_size=gt.voxel_size)
    if chosen is not None:  # said once the scores exist: an error stays one line
        print(f"task: {task} ({chosen.reason}; --task sets it)")
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {'n/a' if v is None else f'{v:.6g}' if isinstance(v, float) else v}")
    if args.json:
        from ..io.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps({"gt": args.gt, "pred": args.pred, "task": task, **result},
                                                indent=2) + "\n")


def cmd_train(args):
    from ..train import load_config, train

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


def _check_output(path, command, dtype=None):
    """Refuse a bad output path, format or dataset key at once, before models and data are loaded."""
    from ..io.output import Output
    from ..io.paths import CONTAINERS

    o = Output(path, signature={})
    if o.fmt not in CONTAINERS:
        raise ValueError(f"{path}: {command} writes a chunked volume (.zarr, .n5 or .h5); got a {o.fmt} path: write "
                         "to e.g. out.zarr, then emseg convert it")
    if o.fmt == "n5" and dtype == "float16":
        raise ValueError(f"{path}: N5 has no float16; pass --dtype float32 or --dtype uint8, or write to .zarr")


def cmd_predict(args):
    from ..config import ExecutionConfig
    from ..predict import PredictConfig, predict_blockwise

    c = _configs(args, {"predict": PredictConfig, "execution": ExecutionConfig},
                 predict=dict(block_shape=args.block_shape, halo=args.halo, tile_shape=args.tile_shape, tta=args.tta,
                              dtype=args.dtype, device=args.device, normalization=args.normalize,
                              runtime=args.runtime))
    _check_output(args.output, "predict", c["predict"].dtype)
    models = args.model if len(args.model) > 1 else args.model[0]
    if args.job_script:
        from ..predict.memory import prediction_memory

        return print_job_script("predict", c["execution"], prediction_memory(args.input, models, c["predict"]))
    r = predict_blockwise(args.input, models, args.output, config=c["predict"], execution=c["execution"])
    if r.complete_before:
        print(f"{args.output} already holds the finished result of this very run; nothing to do "
              "(--overwrite computes it again)")
        return
    print(f"predicted {r.n_computed} of {r.n_blocks} blocks ({r.n_skipped} skipped) in {r.seconds:.1f} s, "
          f"{r.voxels_per_second / 1e6:.2f} Mvoxel/s -> {args.output}")


def _configs(args, stages, **given):
    """The stages' configs: ``--config FILE`` (YAML), then the options given on the command line, then
    ``--set KEY=VALUE``; the execution options (threads, workers, scheduler, overwrite, progress) come
    from the command line: ``--threads N`` runs N threads, ``--workers N`` a Dask LocalCluster of N
    processes (N jobs with ``--cluster``), ``--scheduler`` a running cluster."""
    from ..config import fill_stages

    if "execution" in stages:
        given["execution"] = dict(workers=args.workers or args.threads,
                                  scheduler=args.scheduler or ("local" if args.workers else None),
                                  overwrite=args.overwrite or None, progress=not args.no_progress,
                                  pyramid=getattr(args, "pyramid", None), **cluster_options(args))
        if getattr(args, "pyramid", None):
            from ..io.pyramid import check_pyramid

            check_pyramid(args.output, args.pyramid)
    return fill_stages(stages, getattr(args, "config", None), getattr(args, "set", None) or (), given)


def _postprocess_options(args, **more):
    """The post-processing options the command line set (None: not set)."""
    return dict(method=args.method, params=_params(args.param) or None, min_size=args.min_size,
                z_filter=args.z_filter, **more)


def _into(args):
    """``--into IMAGE.zarr``: the output argument names a label image of IMAGE.zarr (``IMAGE.zarr:labels/NAME``)."""
    if not getattr(args, "into", None):
        return
    from ..io.ome_labels import label_image_key

    name = args.output
    if not name or any(c in name for c in "/:\\") or name.startswith("."):
        raise ValueError(f"with --into the output is the label image's name (e.g. cells); got {name!r}")
    args.output = f"{args.into}:labels/{name}"
    if label_image_key(args.output) is None:
        raise ValueError(f"--into {args.into}: not an OME-Zarr image (a .zarr folder with multiscales); emseg convert "
                         "IN IMAGE.zarr makes one")


def cmd_segment(args):
    _into(args)
    _check_output(args.output, "segment")
    if args.keep_probabilities:
        _check_output(args.keep_probabilities, "segment", "float16")
        from ..io.paths import split_key

        if [os.path.abspath(p) if i == 0 else p for i, p in enumerate(split_key(args.keep_probabilities))] == \
                [os.path.abspath(p) if i == 0 else p for i, p in enumerate(split_key(args.output))]:
            raise ValueError(f"--keep-probabilities {args.keep_probabilities} is the output itself; give another path")
    if args.measure:
        from ..measure.write import table_format

        try:
            table_format(args.measure)
        except ValueError as e:
            raise ValueError(f"--measure {e}") from None
        if os.path.lexists(args.measure) and not args.overwrite:
            raise FileExistsError(f"--measure {args.measure} already exists; pass --overwrite to replace it, or "
                                  "give another table")
    from ..config import ExecutionConfig
    from ..instances import PostprocessConfig
    from ..predict import PredictConfig
    from ..workflows import segment_volume

    c = _configs(args, {"predict": PredictConfig, "postprocess": PostprocessConfig, "execution": ExecutionConfig},
                 predict=dict(block_shape=args.block_shape, device=args.device, normalization=args.normalize,
                              runtime=args.runtime),
                 postprocess=_postprocess_options(args, objects=args.objects))
    tta = {} if args.tta is None else {"tta": None if args.tta == "none" else args.tta}  # unset: the model card's
    if args.job_script:
        from ..workflows.segment import segment_memory

        memory = segment_memory(args.input, args.model, dataclasses.replace(c["predict"], **tta), c["postprocess"])
        return print_job_script("segment", c["execution"], memory)
    pr, sr = segment_volume(args.input, args.output, args.model, probabilities=args.keep_probabilities,
                            predict=c["predict"], postprocess=c["postprocess"], execution=c["execution"], **tta)
    if sr.complete_before:
        kept = "" if not args.keep_probabilities or os.path.exists(args.keep_probabilities.split(":")[0]) else \
            f"; the earlier run kept no probabilities, so {args.keep_probabilities} was not written"
        print(f"{args.output} already holds the finished result of this very run ({sr.n_objects} objects); "
              f"nothing to do (--overwrite computes it again){kept}")
    else:
        print(f"predicted {pr.n_computed} of {pr.n_blocks} blocks in {pr.seconds:.1f} s; {sr.n_objects} objects "
              f"in {sr.seconds:.1f} s -> {args.output}")
    if args.measure:
        from ..measure.run import measure_volume

        m = measure_volume(args.output, args.measure, args.input, execution=c["execution"])
        print(f"measured {len(m.columns['id'])} objects in {m.seconds:.1f} s -> {args.measure}")


def cmd_postprocess(args):
    _into(args)
    _check_output(args.output, "postprocess")
    from ..instances import segment_blockwise
    from ..io import open_volume
    from ..probabilities import check_probability_source

    with open_volume(args.input) as vol:
        check_probability_source(vol, args.input, fix="postprocess takes the output of emseg predict: run emseg "
                                 "predict or emseg segment")
    try:
        offsets = json.loads(args.offsets) if args.offsets else None
    except ValueError as e:
        raise ValueError(f"--offsets must be JSON like '[[-1,0,0],[0,-1,0],[0,0,-1]]'; got {args.offsets!r} ({e})") \
            from None
    from ..config import ExecutionConfig
    from ..instances import PostprocessConfig

    c = _configs(args, {"postprocess": PostprocessConfig, "execution": ExecutionConfig},
                 postprocess=_postprocess_options(args, offsets=offsets, block_shape=args.block_shape,
                                                  halo=args.halo))
    if args.job_script:
        from ..instances.memory import postprocess_memory

        return print_job_script("postprocess", c["execution"], postprocess_memory(args.input, c["postprocess"]))
    r = segment_blockwise(args.input, args.output, config=c["postprocess"], execution=c["execution"])
    if r.complete_before:
        print(f"{args.output} already holds the finished result of this very run ({r.n_objects} objects); "
              "nothing to do (--overwrite computes it again)")
        return
    print(f"{r.n_objects} objects from {r.n_blocks} blocks in {r.seconds:.1f} s "
          f"({r.voxels_per_second / 1e6:.2f} Mvoxel/s) -> {args.output}")


def cmd_models(args):
    from ..zoo import model_card, model_names, model_path

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
    for key in ("purpose", "objects", "modality", "target", "input_voxel_size_nm", "architecture", "license",
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
    from ..workflows.demo import run_demo

    run_demo(args.out, shape=args.shape, seed=args.seed, steps=args.steps, minutes=args.minutes)
