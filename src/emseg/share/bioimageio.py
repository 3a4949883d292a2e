"""``emseg export MODEL OUT.zip``: a bioimage.io model package (spec 0.5) that bioimage.io's own tools,
ilastik, deepImageJ and BiaPy run.

The package holds, beside ``rdf.yaml``:

- the weights three ways: a PyTorch state dict with its architecture as one standalone Python file
  (:func:`emseg.share.network.standalone_source`), TorchScript and ONNX; all three compute
  :class:`~emseg.share.network.EmsegNetwork` (the model's output activations included);
- input and output axes with the voxel size (nm) as their scale, sizes as ``min + n * step`` (the
  network's input divisor), and the output halo: the border where a tile's output differs from the
  untiled output by more than 1e-3, measured on the test input (:func:`measured_halo`; emseg itself
  reads the full receptive field around each block, so its own blockwise outputs are exact);
- the intensity normalisation the model was trained with as preprocessing (``scale_linear``: raw →
  ``(raw - low) / (high - low)``, the checkpoint's own ``low``/``high``);
- test tensors (an EM-like image from :mod:`emseg.synthetic` at the model's voxel size, or ``sample``,
  and the network's output on it), a cover image, the licence and citations of the model card, and a
  README that documents the post-processing (``emseg segment`` makes instances from the outputs);
- ``emseg.safetensors`` (the checkpoint itself) and the card, so ``emseg segment --model OUT.zip``
  runs the package with everything emseg knows (:mod:`emseg.share.load`).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import tempfile
import zipfile

import numpy as np

__all__ = ["SPEC_VERSION", "export_bioimageio", "channel_names", "check_expressible", "measured_halo"]

SPEC_VERSION = "0.5.4"
"""The bioimage.io model spec version written (read by bioimageio.spec 0.5.4 and later)."""
ATTACHMENT = "emseg.safetensors"

_CHANNELS = {"binary": ["foreground"], "bc": ["foreground", "contour"], "bcd": ["foreground", "contour", "distance"],
             "boundary": ["boundary"], "sdt": ["signed_distance"]}


def channel_names(info) -> list:
    """One name per output channel of the checkpoint ``info`` (its task's meaning of each channel)."""
    n = int(info.init_args.get("out_channels", 1))
    if info.task == "affinities":
        offsets = info.task_params.get("offsets") or []
        return [f"affinity_{'_'.join(str(int(o)).replace('-', 'm') for o in off)}" for off in offsets][:n] or \
            [f"affinity_{c}" for c in range(n)]
    names = _CHANNELS.get(info.task)
    if names is None or len(names) != n:
        prefix = "class" if info.task == "onehot" else "channel"
        names = [f"{prefix}_{c}" for c in range(n)]
    return names


def check_expressible(info) -> None:
    """Raise ValueError, saying what and why, for a model whose input the bioimage.io spec cannot describe.

    A 2.5D model takes 2k+1 neighbouring sections as input channels: the spec describes an input's axes
    but not that its channels are sections of the same image at other z, so a consumer would feed it
    wrongly. A model of several input channels other than that is refused too (emseg trains one-channel EM).
    """
    if info.context:
        raise ValueError(f"model {info.path}: a 2.5D model (its input is {2 * info.context + 1} neighbouring sections "
                         "as channels, z-k..z+k); the bioimage.io spec cannot say that channels are sections, so "
                         "its input size is not expressible there: export it with --format onnx or torchscript")
    if int(info.init_args.get("in_channels", 1)) != 1:
        raise ValueError(f"model {info.path}: {info.init_args.get('in_channels')} input channels; emseg exports "
                         "bioimage.io packages of one-channel (raw EM) models only")


def _voxel_size(info, ndim):
    vs = info.voxel_size or (info.card or {}).get("input_voxel_size_nm")
    return [float(v) for v in vs][-ndim:] if vs else None


HALO_TOLERANCE = 1e-3
"""The output halo written is where a tile's output differs from the untiled output by more than this."""


def measured_halo(net, x, tolerance=HALO_TOLERANCE):
    """Per spatial axis, the border (voxels) within which the output of a tile differs from the output of
    the whole input ``x`` (normalised, (1, C, *spatial)) by more than ``tolerance``; capped at the
    network's receptive-field halo (the exact context, :attr:`emseg.models.UNet.halo`).

    Along each axis in turn the tile is ``x`` without one input divisor at both ends (whole along the
    others); an axis whose difference stays above the tolerance up to the tile's middle gets the exact halo.
    """
    import torch

    unet = net.unet
    with torch.no_grad():
        whole = net(x)
    halo = []
    for axis, (d, exact) in enumerate(zip(unet.input_divisor, unet.halo)):
        n = x.shape[2 + axis] - 2 * d
        if n < d:
            halo.append(int(exact))
            continue
        crop = [slice(None)] * x.ndim
        crop[2 + axis] = slice(d, d + n)
        with torch.no_grad():
            tile = net(x[tuple(crop)])
        diff = (whole[tuple(crop)] - tile).abs().movedim(2 + axis, 0).reshape(n, -1).amax(dim=1).numpy()
        dist = np.minimum(np.arange(n), np.arange(n)[::-1])  # distance to the tile's nearest face
        worst = np.array([diff[dist == k].max() for k in range((n + 1) // 2)])
        above = np.nonzero(worst > tolerance)[0]
        h = 0 if above.size == 0 else int(above[-1]) + 1
        halo.append(int(exact) if h >= (n + 1) // 2 else min(h, int(exact)))
    return halo


def _sizes(net, halo):
    """Per spatial axis (min, step) of the input: multiples of the network's input divisor, at least the
    smallest one that keeps output after cropping ``halo`` on both sides."""
    return [(d * max(1, -(-(2 * h + 1) // d)), d) for d, h in zip(net.unet.input_divisor, halo)]


def _test_input(net, info, sample, shape=None):
    """(1, 1, *spatial) float32 raw intensities: ``sample`` cropped to a valid size, or synthetic EM (of
    ``shape``, default a small one)."""
    ndim, divisor = net.unet.ndim, net.unet.input_divisor
    if sample is not None:
        from ..io import open_volume

        vol = open_volume(sample) if isinstance(sample, (str, os.PathLike)) else np.asarray(sample)
        if vol.ndim < ndim:
            raise ValueError(f"sample {sample}: shape {tuple(vol.shape)}; the model is {ndim}D")
        lead = tuple(s // 2 for s in vol.shape[:vol.ndim - ndim])
        want = [min(s, 256 if ndim == 2 else 64) // d * d for s, d in zip(vol.shape[-ndim:], divisor)]
        if min(want) < 1:
            raise ValueError(f"sample {sample}: shape {tuple(vol.shape)} is smaller than the network's input divisor "
                             f"{divisor}")
        start = [(s - w) // 2 for s, w in zip(vol.shape[-ndim:], want)]
        raw = np.asarray(vol[lead + tuple(slice(a, a + w) for a, w in zip(start, want))])
    else:
        from ..synthetic import synthetic_em

        vs = _voxel_size(info, 3) if ndim == 3 else (_voxel_size(info, 2) or [5.0, 5.0])
        shape = shape or ((64, 64, 64) if ndim == 3 else (256, 256))
        shape = tuple(-(-s // d) * d for s, d in zip(shape, divisor))
        raw = synthetic_em(shape, voxel_size=tuple(vs or (10.0,) * 3), seed=0).raw
    return raw.astype(np.float32)[None, None]


def _normalised(raw, info):
    norm = info.normalization
    if norm is None or norm.mode == "none":
        return raw
    return norm(raw)


def _cover(raw, out, path):
    """A 2:1 PNG: the test input's middle section beside its first output channel."""
    from PIL import Image

    def section(a):
        a = np.asarray(a, np.float32)
        a = a[a.shape[0] // 2] if a.ndim == 3 else a
        lo, hi = np.percentile(a, (1, 99))
        return (np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)

    left, right = section(raw[0, 0]), section(out[0, 0])
    img = Image.fromarray(np.concatenate([left, right], axis=1))
    h = 256
    img.resize((2 * h, h), Image.BILINEAR).save(path)


def _readme(info, names, license_text, spdx):
    card = info.card or {}
    pp = info.postprocess()
    lines = [f"# {card.get('name', os.path.basename(info.path))}", "", card.get("summary", ""), "",
             card.get("purpose", ""), "", "## Outputs", "",
             "The network's outputs are per-voxel values in [0, 1] (the activations are inside the network):", ""]
    lines += [f"- channel {c}: `{n}`" for c, n in enumerate(names)]
    lines += ["", "## Post-processing (not part of the network)", "",
              f"emseg makes instances from these outputs with the method `{pp.method}`"
              + (f" and parameters `{json.dumps(pp.params)}`" if pp.params else "")
              + (f", objects of fewer than {pp.min_size} voxels removed" if pp.min_size else "")
              + (f", a {pp.z_filter}-section median along z" if pp.z_filter else "")
              + (f", test-time augmentation `{pp.tta}`" if pp.tta else "") + ":", "",
              "```", "pip install emseg", "emseg segment --model THIS_PACKAGE.zip RAW OUT.zarr", "```", "",
              "Other tools get the probabilities; threshold the foreground at 0.5 for a mask, or run a seeded "
              "watershed on the contours for instances.", ""]
    training = card.get("training") or {}
    if training:
        lines += ["## Training", "", f"- data: {training.get('data', '')}", f"- data licence: "
                  f"{training.get('data_license', '')}", f"- citation: {training.get('citation', '')}", ""]
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["## Validation", "", f"Measured by emseg on {metrics.get('evaluated_on', 'held-out data')}:", ""]
        lines += [f"- {k}: {v}" for k, v in metrics.items() if isinstance(v, (int, float))]
        lines += [""]
    lines += ["## Licence", "", f"{spdx}: {license_text}" if license_text else spdx, "",
              "Written by `emseg export` (emseg: deep-learning segmentation of electron microscopy)."]
    return "\n".join(lines) + "\n"


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file(folder, name):
    return {"source": name, "sha256": _sha256(os.path.join(folder, name))}


def export_bioimageio(model, out, *, license=None, cite=None, authors=None, sample=None, validate=True):
    """Write ``model`` (a shipped name, a checkpoint or an ``emseg fit`` folder) as a bioimage.io package.

    Parameters
    ----------
    out : str
        The ``.zip`` to write; it appears whole (written beside, validated, then renamed) or not at all.
    license : str, optional
        SPDX identifier; default the card's ``license_spdx``.
    cite : list of dict, optional
        ``[{"text": ..., "doi": ...} or {"text": ..., "url": ...}]``; default the card's ``cite``.
    authors : list of str, optional
        Default the card's ``authors`` or "emseg".
    sample : array-like or path, optional
        Raw EM the test tensors are cut from (default: synthetic EM at the model's voxel size).
    validate : bool
        Check the package with ``bioimageio.spec`` when it is installed (``pip install 'emseg[bioimageio]'``).

    Returns
    -------
    str
        ``out``.

    Raises
    ------
    ValueError
        A model the spec cannot describe (:func:`check_expressible`), no licence or citation to write, or a
        package that ``bioimageio.spec`` finds invalid (its first errors).
    """
    import torch
    import yaml

    from .export import ONNX_OPSET, exported_network, export_onnx, export_torchscript
    from .network import standalone_source

    net, info = exported_network(model)
    check_expressible(info)
    card = info.card or {}
    spdx = license or card.get("license_spdx")
    if not spdx:
        raise ValueError(f"model {card.get('name', info.path)}: its card names no SPDX licence (it says "
                         f"{card.get('license', 'nothing')!r}); pass --license, e.g. --license CC-BY-4.0")
    cite = cite or card.get("cite") or [{"text": "emseg: deep-learning segmentation of electron microscopy",
                                          "url": "https://pypi.org/project/emseg/"}]
    ndim, names = net.unet.ndim, channel_names(info)
    axes_ids = "zyx"[3 - ndim:]
    vs = _voxel_size(info, ndim)
    folder = tempfile.mkdtemp(prefix=".emseg-export-", dir=os.path.dirname(os.path.abspath(out)) or ".")
    try:
        raw = _test_input(net, info, sample)
        halo = measured_halo(net, torch.from_numpy(_normalised(raw, info)))
        least = [lo for lo, _ in _sizes(net, halo)]
        if any(n < lo for n, lo in zip(raw.shape[2:], least)):
            if sample is not None:
                raise ValueError(f"sample {sample}: the model's output halo {halo} (measured) needs test inputs of at "
                                 f"least {least} voxels; the sample gives {list(raw.shape[2:])}: pass a larger one")
            raw = _test_input(net, info, None, tuple(max(n, lo) for n, lo in zip(raw.shape[2:], least)))
        with torch.no_grad():
            pred = net(torch.from_numpy(_normalised(raw, info))).numpy()
        np.save(os.path.join(folder, "test_input.npy"), raw)
        np.save(os.path.join(folder, "test_output.npy"), pred.astype(np.float32))
        _cover(raw, pred, os.path.join(folder, "cover.png"))
        torch.save(net.state_dict(), os.path.join(folder, "weights.pt"))
        export_torchscript(net, os.path.join(folder, "weights_torchscript.pt"), info)
        export_onnx(net, os.path.join(folder, "weights.onnx"), info)
        with open(os.path.join(folder, "emseg_network.py"), "w") as f:
            f.write(standalone_source())
        shutil.copyfile(info.path, os.path.join(folder, ATTACHMENT))
        with open(os.path.join(folder, "emseg_card.json"), "w") as f:
            json.dump(card, f, indent=1)
        with open(os.path.join(folder, "README.md"), "w") as f:
            f.write(_readme(info, names, card.get("license", ""), spdx))

        def space(i, a, out_axis):
            axis = {"type": "space", "id": a}
            if vs:
                axis.update(scale=vs[i], unit="nanometer")
            if out_axis:
                axis.update(size={"tensor_id": "raw", "axis_id": a})
                if halo[i]:
                    axis["halo"] = int(halo[i])
            else:
                lo, step = _sizes(net, halo)[i]
                axis["size"] = {"min": int(lo), "step": int(step)}
            return axis

        pre = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
        norm = info.normalization
        if norm is not None and norm.mode != "none":
            gain = 1.0 / max(norm.high - norm.low, 1e-6)
            pre.append({"id": "scale_linear", "kwargs": {"gain": gain, "offset": -norm.low * gain}})
        torch_version = torch.__version__.split("+")[0]
        rdf = {
            "type": "model", "format_version": SPEC_VERSION,
            "name": f"emseg {card.get('name', os.path.splitext(os.path.basename(info.path))[0])}"[:128],
            "description": card.get("summary") or f"{info.task} model trained with emseg",
            "authors": [{"name": a} for a in (authors or card.get("authors") or ["emseg"])],
            "cite": cite, "license": spdx, "documentation": "README.md", "covers": ["cover.png"],
            "tags": sorted({"emseg", "electron-microscopy", "segmentation", f"{ndim}d", "pytorch", "onnx",
                            *(t.lower() for t in (card.get("modality"), card.get("objects"), info.task) if t)}),
            "timestamp": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "inputs": [{"id": "raw", "description": "raw EM intensities", "axes": [
                {"type": "batch"}, {"type": "channel", "channel_names": ["raw"]},
                *(space(i, a, False) for i, a in enumerate(axes_ids))],
                "test_tensor": _file(folder, "test_input.npy"), "data": {"type": "float32"}, "preprocessing": pre}],
            "outputs": [{"id": "probabilities", "description": f"{info.task} outputs in [0, 1] ({len(names)} channels)",
                         "axes": [{"type": "batch"}, {"type": "channel", "channel_names": names},
                                  *(space(i, a, True) for i, a in enumerate(axes_ids))],
                         "test_tensor": _file(folder, "test_output.npy"),
                         "data": {"type": "float32", "range": [0.0, 1.0]}}],
            "weights": {
                "pytorch_state_dict": {**_file(folder, "weights.pt"), "pytorch_version": torch_version,
                                       "architecture": {**_file(folder, "emseg_network.py"),
                                                        "callable": "EmsegNetwork",
                                                        "kwargs": {"activations": list(info.activations),
                                                                   **info.init_args}}},
                "torchscript": {**_file(folder, "weights_torchscript.pt"), "pytorch_version": torch_version,
                                "parent": "pytorch_state_dict"},
                "onnx": {**_file(folder, "weights.onnx"), "opset_version": ONNX_OPSET, "parent": "pytorch_state_dict"}},
            "attachments": [_file(folder, ATTACHMENT), _file(folder, "emseg_card.json")],
            "config": {"emseg": {"checkpoint": ATTACHMENT, "card": "emseg_card.json", "task": info.task,
                                 "postprocess": dataclasses.asdict(info.postprocess())}},
        }
        with open(os.path.join(folder, "rdf.yaml"), "w") as f:
            yaml.safe_dump(rdf, f, sort_keys=False)
        part = os.path.join(folder, "package.zip")
        with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
            for name in sorted(os.listdir(folder)):
                if name != "package.zip":
                    z.write(os.path.join(folder, name), name)
        if validate:
            _validate(part, out)
        os.replace(part, out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def _validate(path, out):
    """Load the package with bioimageio.spec (format and file checks); ValueError with its first errors."""
    try:
        from bioimageio.spec import InvalidDescr, load_description
    except ImportError:
        import logging

        logging.getLogger(__name__).info("bioimageio.spec is not installed: %s not validated "
                                         "(pip install 'emseg[bioimageio]')", out)
        return
    descr = load_description(path, perform_io_checks=True)
    if isinstance(descr, InvalidDescr):
        errors = descr.validation_summary.errors if descr.validation_summary else []
        first = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors[:3]) or "invalid"
        raise ValueError(f"output {out}: bioimageio.spec finds the package invalid: {first}")
