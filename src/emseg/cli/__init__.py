"""The ``emseg`` command: one subcommand per library function.

Each subcommand parses its arguments and calls one function of the library; heavy modules are
imported inside the handlers so ``emseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from . import args, commands, data_commands, fit_commands, look_commands, share_commands

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument ends in one line ``emseg CMD: error: ...`` (``--help`` shows the usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``emseg`` parser: one sub-parser per command, each added by its own function below."""
    from .. import __version__

    p = _Parser(prog="emseg", description="Deep-learning segmentation of electron microscopy.")
    p.add_argument("--version", action="version", version=f"emseg {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_info, _add_convert, _add_evaluate, _add_plan, _add_fit, _add_pretrain, _add_train, _add_predict, _add_segment,
                _add_postprocess, _add_measure, _add_pyramid_command, _add_view, _add_mesh, _add_models, _add_datasets,
                share_commands.add_export, _add_demo):
        add(sub)
    return p


def _add_info(sub):
    s = sub.add_parser("info", help="describe a volume: shape, dtype, voxel size, chunks, size, values")
    s.add_argument("path", help="file or folder; containers as file.h5:volumes/raw")
    s.add_argument("--key", help="dataset inside an HDF5/Zarr/N5 container")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=commands.cmd_info)


def _add_convert(sub):
    s = sub.add_parser("convert", help="convert a volume to another format block by block")
    s.add_argument("input")
    s.add_argument("output", help="e.g. out.zarr, out.h5:volumes/raw, out.n5:raw, out.tif, out.mrc, out.nii.gz")
    s.add_argument("--chunks", type=args.ints, help="storage chunks z,y,x of the output (HDF5/Zarr/N5)")
    s.add_argument("--voxel-size", type=args.voxel_size, help="override the voxel size: z,y,x in nm")
    s.add_argument("--format", help="force the output format (default: from the suffix)")
    s.add_argument("--compression", default="default", help="codec (gzip, lzf, zstd, lz4, zlib) or 'none'")
    s.add_argument("--zarr-format", type=int, default=2, choices=(2, 3),
                   help="Zarr v2 with OME-NGFF 0.4 (default) or v3 with OME-NGFF 0.5")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    s.add_argument("--max-block-mb", type=args.positive_float, default=64, help="memory per block (MiB)")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_pyramid(s)
    s.set_defaults(func=commands.cmd_convert)


def _add_pyramid(s):
    """``--pyramid [METHOD]`` / ``--no-pyramid``: :attr:`emseg.config.ExecutionConfig.pyramid`."""
    g = s.add_mutually_exclusive_group()
    g.add_argument("--pyramid", nargs="?", const=True, choices=("mean", "mode", "stride"), metavar="METHOD",
                   help="add OME-Zarr multiscale levels (default: for Zarr outputs over 256 MiB); METHOD: mean (raw, "
                   "probabilities), mode or stride (labels); default: from the kind of output")
    g.add_argument("--no-pyramid", dest="pyramid", action="store_false", help="write the full resolution only")


def _add_pyramid_command(sub):
    s = sub.add_parser("pyramid", help="add OME-Zarr multiscale levels to an existing image (replacing earlier ones)")
    s.add_argument("path", help="an OME-Zarr image (an emseg .zarr output, or emseg convert IN OUT.zarr)")
    s.add_argument("--method", choices=("mean", "mode", "stride"),
                   help="mean (raw, probabilities), mode or stride (labels); default: from the image's kind")
    s.add_argument("--min-size", type=args.positive_int, default=64,
                   help="stop when every axis fits in this many voxels (default 64)")
    s.add_argument("--threads", type=args.positive_int, default=2)
    s.set_defaults(func=look_commands.cmd_pyramid)


def _add_evaluate(sub):
    s = sub.add_parser("evaluate", help="score a segmentation against ground truth")
    s.add_argument("gt", help="ground truth volume (any format emseg reads; file.h5:key)")
    s.add_argument("pred", help="prediction: mask, probability map or label volume")
    s.add_argument("--task", help="the metric set: semantic, instance, neurons or membranes (default: inferred from "
                   "the inputs, and said)")
    s.add_argument("--metrics", help="comma-separated metric names, or 'all' (default: the task's usual set)")
    s.add_argument("--ignore-label", type=int, help="gt label to ignore (neurons default: 0)")
    s.add_argument("--threshold", type=float, help="probability threshold for masks (default 0.5)")
    s.add_argument("--iou-threshold", type=float, help="IoU for instance matching (default 0.5)")
    s.add_argument("--boundary-tolerance-nm", type=float, help="CREMI boundary tolerance in nm")
    s.add_argument("--json", help="also write the results to this JSON file")
    _add_config_file(s, "EvaluateConfig")
    s.set_defaults(func=commands.cmd_evaluate)


def _add_fit_inputs(s, labels=True):
    s.add_argument("raw", help="raw volume (any format emseg reads; file.h5:key)")
    if labels:
        s.add_argument("labels", help="labels of the same shape: a mask, object ids, neuron ids or ISBI membrane "
                       "labels")
    s.add_argument("--minutes", type=args.positive_float, default=30.0, help="training time (default 30)")
    s.add_argument("--val", metavar="Z0:Z1", help="labelled sections held out for validation and tuning "
                   "(default: the last 15%% of the labelled ones)")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    s.add_argument("--voxel-size", type=args.voxel_size, help="z,y,x in nm, when the files do not say")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sections", type=args.sections, metavar="Z,Z,...", help="only these z sections are labelled "
                   "(e.g. 12,40,77); every other voxel is unknown, not background, and never read")
    s.add_argument("--context", type=args.nonnegative_int, metavar="K", help="a 2D network sees the K sections above "
                   "and below as input channels (2.5D; default 0: plain 2D, or the --init model's)")


def _add_plan(sub):
    s = sub.add_parser("plan", help="a training plan from the data: fingerprint, network, target, schedule, each "
                       "choice with its reason")
    _add_fit_inputs(s)
    s.add_argument("--out", metavar="PLAN.yaml", help="where to write the plan (default plan.yaml)")
    s.add_argument("--no-measure", action="store_true", help="estimate the step time instead of measuring a few "
                   "real steps here")
    s.add_argument("--overwrite", action="store_true", help="replace an existing plan file")
    s.set_defaults(func=fit_commands.cmd_plan)


def _add_fit(sub):
    s = sub.add_parser("fit", help="plan, train in a time budget, tune the post-processing, write a model card "
                       "(resumable); without LABELS, adapt an --init model to RAW", usage="emseg fit RAW [LABELS] "
                       "OUT_DIR [options]")
    _add_fit_inputs(s, labels=False)
    s.add_argument("paths", nargs="+", metavar="[LABELS] OUT_DIR",
                   help="labels of the same shape as RAW (a mask, object ids, neuron ids or ISBI membrane labels; "
                   "leave out to adapt --init MODEL to RAW without labels), then the run's folder: `emseg segment "
                   "--model OUT_DIR` uses it")
    s.add_argument("--init", metavar="MODEL", help="start from a shipped model or a checkpoint (its architecture; "
                   "weights loaded where shapes match)")
    s.add_argument("--source", nargs=2, metavar=("SRC_RAW", "SRC_LABELS"), help="RAW has no labels: train on this "
                   "labelled source volume and adapt to RAW with the mean teacher (emseg fit RAW OUT_DIR --source ...)")
    s.add_argument("--freeze", choices=("none", "encoder", "all_but_head"), default="none",
                   help="with --init: parts of the model that keep their weights (default none)")
    s.add_argument("--init-lr-scale", type=args.positive_float, default=1.0,
                   help="with --init: the learning rate of its weights as a fraction of the new layers' (default 1)")
    s.add_argument("--adabn", type=args.nonnegative_int, default=0, metavar="BATCHES",
                   help="re-estimate BatchNorm statistics on this many batches of the data before training (AdaBN)")
    s.add_argument("--semi", choices=("none", "mean_teacher", "propagate"), default="none",
                   help="mean_teacher: also learn from the unlabelled rest of the volume; propagate: with --sections, "
                   "pseudo-label their neighbours in rounds (4S) (default none)")
    s.add_argument("--unlabelled", nargs="+", metavar="RAW", help="with --semi mean_teacher: more raw of the same "
                   "kind for the mean teacher besides RAW, e.g. the sections you want segmented (transductive)")
    s.add_argument("--tune-minutes", type=args.positive_float, default=5.0,
                   help="the most the post-processing search may take (default 5)")
    s.add_argument("--overwrite", action="store_true", help="delete the fit's own files in OUT_DIR and start over")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=fit_commands.cmd_fit)


def _add_pretrain(sub):
    s = sub.add_parser("pretrain", help="self-supervised pretraining on unlabelled volumes (masked-image modelling); "
                       "its result starts `emseg fit --init`", usage="emseg pretrain RAW [RAW ...] OUT [options]")
    s.add_argument("paths", nargs="+", metavar="RAW [RAW ...] OUT", help="unlabelled raw volumes (any format emseg "
                   "reads, read lazily), then the output folder (a training run folder: OUT/latest.safetensors)")
    s.add_argument("--minutes", type=args.positive_float, default=30.0, help="training time (default 30)")
    s.add_argument("--dims", choices=("2d", "3d"), default="2d", help="a 2D network on sections (default) or 3D")
    s.add_argument("--features", type=args.positive_int, default=8, help="features at the first level (default 8)")
    s.add_argument("--depth", type=args.positive_int, default=4, help="U-Net depth (default 4)")
    s.add_argument("--patch", type=args.ints, help="patch shape, e.g. 256,256 (2d) or 32,96,96 (3d)")
    s.add_argument("--batch-size", type=args.positive_int, default=4)
    s.add_argument("--voxel-size", type=args.voxel_size, help="z,y,x in nm, when the files do not say")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true", help="delete the trainer's files in OUT and start over")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=fit_commands.cmd_pretrain)


def _add_train(sub):
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
    s.set_defaults(func=commands.cmd_train)


def _add_config_file(s, configs):
    s.add_argument("--config", metavar="FILE", help=f"YAML file of {configs} fields; the options given here win")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="set one config field (repeatable; wins "
                   "over --config and the options)")


def _add_execution(s, threads_help="worker threads (default 2)"):
    """The options of :class:`emseg.config.ExecutionConfig`."""
    from .cluster_options import add_cluster_options

    s.add_argument("--threads", type=args.positive_int, default=2, help=threads_help)
    s.add_argument("--workers", type=args.positive_int, help="start a Dask LocalCluster with N worker processes")
    s.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://host:8786")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--no-progress", action="store_true")
    add_cluster_options(s)  # --cluster, --cluster-config, --job-script


def _add_predict(sub):
    s = sub.add_parser("predict", help="predict a volume blockwise with a trained model")
    s.add_argument("input", help="raw volume (any format emseg reads; file.h5:key)")
    s.add_argument("output", help="output volume, e.g. pred.zarr (channels first, OME-Zarr)")
    s.add_argument("--model", required=True, action="append",
                   help="a shipped model's name or a checkpoint (.safetensors); repeat for an ensemble")
    s.add_argument("--block-shape", type=args.ints, help="write block z,y,x (default: from the model and chunks)")
    s.add_argument("--halo", type=args.halo, help="'auto' (default: the model's receptive field) or z,y,x")
    s.add_argument("--tile-shape", type=args.ints, help="split blocks into Gaussian-blended tiles of this shape")
    s.add_argument("--tta", choices=("flips", "d4"), help="test-time augmentation")
    s.add_argument("--dtype", choices=("float16", "float32", "uint8"), help="output type (default float16)")
    _add_model_options(s)
    _add_execution(s)
    _add_pyramid(s)
    _add_config_file(s, "PredictConfig (and ExecutionConfig)")
    s.set_defaults(func=commands.cmd_predict)


def _add_model_options(s):
    s.add_argument("--normalize", choices=("model", "data"),
                   help="intensity normalization: the model's own (default) or fitted to this volume")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: auto")
    s.add_argument("--runtime", choices=("torch", "onnx"), help="run the network with PyTorch (default) or "
                   "onnxruntime on the CPU (pip install 'emseg[onnx]')")


def _add_postprocess_options(s):
    """The options of :class:`emseg.instances.PostprocessConfig` both segment and postprocess take."""
    s.add_argument("--block-shape", type=args.ints, help="block z,y,x (postprocess: also the output's chunks; "
                   "segment: the prediction's blocks)")
    s.add_argument("--min-size", type=int, help="remove objects with fewer voxels (whole-volume count)")
    s.add_argument("--z-filter", type=int, help="median of the prediction over N sections first (odd N)")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="a method parameter (repeatable)")


def _add_segment(sub):
    from ..instances.methods import METHODS
    from ..tasks import OBJECTS

    s = sub.add_parser("segment", help="raw EM -> instances: blockwise prediction and post-processing, resumable")
    s.add_argument("input", help="raw volume (any format emseg reads; file.h5:key)")
    s.add_argument("output", help="label volume to write, e.g. cells.zarr (OME-Zarr) or out.n5:seg")
    s.add_argument("--model", required=True, help="a shipped model's name (emseg models list) or a checkpoint")
    s.add_argument("--objects", "--task", dest="objects", choices=tuple(OBJECTS),
                   help="kind of object: sets the size filter and defaults (instead of a shipped model's card)")
    s.add_argument("--method", choices=tuple(METHODS), help="post-processing (default: from the model's task)")
    s.add_argument("--keep-probabilities", metavar="PATH", help="also keep the prediction at PATH")
    s.add_argument("--into", metavar="IMAGE.zarr", help="write the labels as the OME-NGFF label image OUTPUT of "
                   "this raw image (IMAGE.zarr:labels/OUTPUT), a label layer over the raw in viewers")
    s.add_argument("--measure", metavar="TABLE", help="then measure the objects into TABLE (.csv or .parquet; "
                   "as emseg measure OUTPUT TABLE --raw INPUT)")
    s.add_argument("--tta", choices=("flips", "d4", "none"),
                   help="test-time augmentation (default: a shipped model's card, else none)")
    _add_model_options(s)
    _add_postprocess_options(s)
    _add_execution(s)
    _add_pyramid(s)
    _add_config_file(s, "PredictConfig and PostprocessConfig (sections predict:, postprocess:)")
    s.set_defaults(func=commands.cmd_segment)


def _add_postprocess(sub):
    from ..instances.methods import METHODS

    s = sub.add_parser("postprocess", help="prediction -> instances, blockwise with global ids, resumable",
                       description="Methods: " + "; ".join(f"{k}: {v['doc']}" for k, v in METHODS.items()))
    s.add_argument("input", help="channels-first prediction (e.g. from emseg predict)")
    s.add_argument("output", help="label volume to write")
    s.add_argument("--method", choices=tuple(METHODS), help="the method (here or in --config)")
    s.add_argument("--offsets", help="affinity offsets as JSON, e.g. '[[-1,0,0],[0,-1,0],[0,0,-1]]'")
    s.add_argument("--halo", type=args.halo, help="'auto' (default: the method's) or z,y,x")
    s.add_argument("--into", metavar="IMAGE.zarr", help="write the labels as the OME-NGFF label image OUTPUT of "
                   "this raw image (IMAGE.zarr:labels/OUTPUT)")
    _add_postprocess_options(s)
    _add_execution(s)
    _add_pyramid(s)
    _add_config_file(s, "PostprocessConfig")
    s.set_defaults(func=commands.cmd_postprocess)


def _add_measure(sub):
    s = sub.add_parser("measure", help="one row per object: volume, surface, centroid, box, axes, shape, intensity "
                       "(nm), blockwise, resumable")
    s.add_argument("labels", help="label volume (integer ids, 0 = background; any format emseg reads)")
    s.add_argument("output", help="the table: OUT.csv or OUT.parquet")
    s.add_argument("--raw", help="the raw volume the labels were made from: adds mean/min/max intensity")
    s.add_argument("--voxel-size", type=args.voxel_size, help="z,y,x in nm, when the labels do not say")
    s.add_argument("--block-shape", type=args.ints, help="block z,y,x (default: about 8 million voxels)")
    s.add_argument("--report", metavar="DIR", help="also write DIR/index.html: summary, histograms, the largest "
                   "and smallest objects (needs matplotlib)")
    _add_execution(s)
    s.set_defaults(func=look_commands.cmd_measure)


def _add_view(sub):
    s = sub.add_parser("view", help="look at volumes in neuroglancer (raw as image, labels as segmentation, "
                       "predictions with a colour map), served from this machine")
    s.add_argument("paths", nargs="+", metavar="PATH", help="volumes emseg reads (file.h5:key allowed), or a "
                   "precomputed folder from emseg mesh (served with its meshes)")
    s.add_argument("--bind", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=args.port, default=0, help="port (default: a free one)")
    s.set_defaults(func=look_commands.cmd_view)


def _add_mesh(sub):
    s = sub.add_parser("mesh", help="labels -> a neuroglancer precomputed segmentation with a 3D mesh per object")
    s.add_argument("labels", help="label volume (integer ids, 0 = background; any format emseg reads)")
    s.add_argument("output", help="the precomputed folder to write (serve it, open precomputed://http://HOST/OUT)")
    s.add_argument("--voxel-size", type=args.voxel_size, help="z,y,x in nm, when the labels do not say")
    s.add_argument("--simplify", type=args.nonnegative_float, default=0.0, metavar="NM",
                   help="simplify the meshes by at most NM nanometres (default 0: the marching-cubes mesh)")
    s.add_argument("--threads", type=args.positive_int, default=2)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=look_commands.cmd_mesh)


def _add_models(sub):
    s = sub.add_parser("models", help="the shipped models: list them, or show one's model card")
    s.add_argument("action", choices=("list", "info"))
    s.add_argument("name", nargs="?", help="model name (for info)")
    s.add_argument("--json", action="store_true", help="print the model card as JSON")
    s.set_defaults(func=commands.cmd_models)


def _add_datasets(sub):
    s = sub.add_parser("datasets", help="public EM datasets: list them, show one, fetch one (download with resume, "
                       "verify, convert to OME-Zarr)", usage="emseg datasets {list,info,fetch} [NAME] [options]")
    s.add_argument("action", choices=("list", "info", "fetch"))
    s.add_argument("name", nargs="?", help="dataset name (for info and fetch; emseg datasets list shows them)")
    s.add_argument("--to", default=".", metavar="DIR", help="fetch: the folder that receives NAME/ (default: here)")
    s.add_argument("--no-convert", action="store_true", help="fetch: download and unpack only (NAME/source/)")
    s.add_argument("--json", action="store_true", help="list, info: the registry entries as JSON")
    s.add_argument("--registry", metavar="FILE.json", help="a registry file of your own (default: the shipped one)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=data_commands.cmd_datasets)


def _add_demo(sub):
    s = sub.add_parser("demo", help="the built-in example: synthesize, train, segment blockwise, evaluate, report")
    s.add_argument("--out", default="emseg-demo", help="output folder (default: ./emseg-demo)")
    s.add_argument("--shape", type=args.ints, default=(32, 256, 256), help="synthetic volume shape z,y,x")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--steps", type=int, default=700, help="training steps (default 700, about a minute on 2 cores)")
    s.add_argument("--minutes", type=float, default=3.0, help="stop training after this many minutes (default 3)")
    s.set_defaults(func=commands.cmd_demo)


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
        text = _message(e)
        option = "--" + str(getattr(e, "key", "") or "").replace("_", "-")  # a config field the command line set
        if option != "--" and any(a == option or a.startswith(option + "=") for a in argv) and \
                not text.startswith(option):
            text = f"{option}: {text}"
        print(f"emseg {args.command}: error: {text}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
