"""``emseg export``: its parser and handler (kept here so ``cli/__init__`` stays small)."""

from __future__ import annotations

import os


def add_export(sub):
    s = sub.add_parser("export", help="a model as a bioimage.io package (.zip: runs in ilastik, deepImageJ, BiaPy and "
                       "bioimageio.core), or the bare network as ONNX or TorchScript")
    s.add_argument("model", help="a shipped model's name, a checkpoint (.safetensors) or an emseg fit folder")
    s.add_argument("output", help="OUT.zip (bioimageio), OUT.onnx or OUT.pt (torchscript)")
    s.add_argument("--format", choices=("bioimageio", "onnx", "torchscript"),
                   help="default: from OUTPUT's suffix (.zip bioimageio, .onnx, .pt torchscript)")
    s.add_argument("--license", help="SPDX licence of the package (default: the model card's license_spdx)")
    s.add_argument("--cite", action="append", metavar="TEXT=DOI_OR_URL",
                   help="a citation (repeatable; default: the model card's)")
    s.add_argument("--author", action="append", help="an author's name (repeatable; default: the card's, or emseg)")
    s.add_argument("--sample", help="raw EM to cut the package's test tensors from (default: synthetic EM)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    s.set_defaults(func=cmd_export)


def _cite(items):
    out = []
    for item in items or ():
        text, sep, ref = item.rpartition("=")
        if not sep or not text.strip() or not ref.strip():
            raise ValueError(f"--cite {item!r}: expected TEXT=DOI or TEXT=URL, e.g. 'Lucchi et al. 2012=10.1109/...'")
        key = "url" if ref.startswith(("http://", "https://")) else "doi"
        out.append({"text": text.strip(), key: ref.strip()})
    return out or None


def cmd_export(args):
    from ..share.export import SUFFIXES, export_model

    fmt = args.format or {v: k for k, v in SUFFIXES.items()}.get(os.path.splitext(args.output)[1].lower())
    if fmt is None:
        raise ValueError(f"output {args.output}: say --format (bioimageio, onnx, torchscript) or name it .zip, .onnx "
                         "or .pt")
    options = {}
    if fmt == "bioimageio":
        options = dict(license=args.license, cite=_cite(args.cite), authors=args.author, sample=args.sample)
    else:
        given = [f"--{k}" for k in ("license", "cite", "author", "sample") if getattr(args, k)]
        if given:
            raise ValueError(f"{', '.join(given)}: options of a bioimage.io package (--format bioimageio)")
    out = export_model(args.model, args.output, fmt, overwrite=args.overwrite, **options)
    size = os.path.getsize(out) / 2**20
    print(f"{fmt} export of {args.model} -> {out} ({size:.1f} MB)")
