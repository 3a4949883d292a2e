"""The handlers of ``emseg plan``, ``emseg fit`` (:mod:`emseg.fit`) and ``emseg pretrain`` (:mod:`emseg.train.pretrain`)."""

from __future__ import annotations

import os
import tempfile


def cmd_plan(args):
    from ..fit.fingerprint import fingerprint
    from ..fit.plan_file import plan_yaml, write_plan
    from ..fit.planner import plan_training
    from ..fit.timing import measured_plan
    from ..io import open_volume
    from ..runtime import torch_device

    from ..fit.split import check_val_option, labelled_only

    if args.val is not None:
        check_val_option(args.val)
    out = args.out or "plan.yaml"
    if os.path.exists(out) and not args.overwrite:
        raise FileExistsError(f"--out {out} exists; pass --overwrite to replace it")
    with open_volume(args.raw) as raw, open_volume(args.labels) as labels:
        fp = fingerprint(raw, labelled_only(labels, args.sections, args.labels), voxel_size=args.voxel_size,
                         raw_name=args.raw, labels_name=args.labels)
    options = dict(raw=args.raw, labels=args.labels, minutes=args.minutes, device=torch_device(args.device).type,
                   val_roi=args.val, seed=args.seed, **({} if args.sections is None else {"sections": args.sections}),
                   **({} if args.context is None else {"context": args.context}),
                   out_dir=os.path.join("runs", os.path.splitext(os.path.basename(out))[0]))
    if args.no_measure:
        plan = plan_training(fp, **options)
    else:
        with tempfile.TemporaryDirectory(prefix="emseg-plan-") as work:
            plan = measured_plan(fp, os.path.join(work, "timing"), **options)
    write_plan(plan, out)
    print(plan_yaml(plan), end="")
    print(f"# written to {out}; train it with `emseg train {out}`")


def cmd_fit(args):
    from ..fit.run import FitConfig, fit

    if len(args.paths) > 2:
        raise ValueError(f"emseg fit takes RAW [LABELS] OUT_DIR; got {len(args.paths) + 1} paths: "
                         f"{' '.join([args.raw, *args.paths])}")
    labels, out_dir = (args.paths[0], args.paths[1]) if len(args.paths) == 2 else (None, args.paths[0])
    raw, adapt_to = args.raw, None
    if args.source:
        if labels is not None:
            raise ValueError(f"--source gives the labels (of another volume): emseg fit TARGET_RAW OUT_DIR --source "
                             f"SRC_RAW SRC_LABELS; got LABELS {labels} too")
        (raw, labels), adapt_to = args.source, args.raw
    config = FitConfig(raw, labels, out_dir, adapt_to=adapt_to, minutes=args.minutes, val_roi=args.val, init=args.init,
                       device=args.device, seed=args.seed, voxel_size=args.voxel_size,
                       tune_minutes=args.tune_minutes, sections=args.sections, freeze=args.freeze,
                       init_lr_scale=args.init_lr_scale, adabn_batches=args.adabn, semi=args.semi,
                       context=args.context, unlabelled=tuple(args.unlabelled or ()), overwrite=args.overwrite)
    r = fit(config, echo=print, progress=not args.no_progress)
    where = ("on the tuning part (optimistic: tuned there)" if adapt_to is None else "on the source's tuning part "
             "(the target has no labels)") if labels is not None else "(no labels to measure on)"
    print(f"done: {r.card.get('headline')} {where}; segment with `emseg segment IN OUT --model {r.out_dir}`")


def cmd_pretrain(args):
    from ..train import load_config, train

    if len(args.paths) < 2:
        raise ValueError("emseg pretrain takes RAW [RAW ...] OUT: at least one volume, then the output folder")
    raws, out = args.paths[:-1], args.paths[-1]
    if args.dims == "2d":
        model, patch = {"depth": args.depth, "features": args.features, "upsample": "bilinear", "norm": "batch"}, \
            args.patch or (256, 256)
    else:
        model, patch = {"depth": args.depth, "features": args.features, "norm": "batch"}, args.patch or (32, 96, 96)
    if len(patch) != (2 if args.dims == "2d" else 3):
        raise ValueError(f"--patch {','.join(map(str, patch))}: {args.dims} pretraining takes "
                         f"{2 if args.dims == '2d' else 3} numbers")
    config = load_config(raw=[], labels=[], unlabelled=raws, pretrain="masked", patch_shape=list(patch),
                         batch_size=args.batch_size, model=model, steps=10**7, max_minutes=args.minutes,
                         warmup_steps=50, val_every=500, lr=1e-3, seed=args.seed, device=args.device,
                         voxel_size=args.voxel_size, out_dir=out, overwrite=args.overwrite)
    result = train(config, progress=not args.no_progress)
    print(f"pretrained {result.steps} steps in {result.seconds:.0f} s on {len(raws)} volume(s): {result.latest}; "
          f"start a fit from it with `emseg fit RAW LABELS OUT_DIR --init {result.latest}`")
