"""A trained model as files other tools run: ONNX, TorchScript, and a bioimage.io package.

``emseg export MODEL OUT`` takes a shipped model's name, a checkpoint or an ``emseg fit`` folder. The
exported network is :class:`~emseg.share.network.EmsegNetwork`: its outputs are what ``emseg predict``
writes (probabilities, regressed channels clipped to [0, 1]), from raw normalised as the model was
trained. The bare ONNX and TorchScript files carry emseg's checkpoint header (task, normalisation,
voxel size, model card) in their metadata, so emseg reads them back as models
(:func:`emseg.share.load.onnx_header`, :func:`emseg.models.reader.read_checkpoint`).
"""

from __future__ import annotations

import json
import os

__all__ = ["FORMATS", "SUFFIXES", "exported_network", "onnx_bytes", "export_onnx", "export_torchscript", "export_model", "ONNX_OPSET"]

SUFFIXES = {"bioimageio": ".zip", "onnx": ".onnx", "torchscript": ".pt"}
FORMATS = tuple(SUFFIXES)
ONNX_OPSET = 17
METADATA_KEY = "emseg"
"""The key of emseg's checkpoint header in an ONNX model's ``metadata_props`` and a TorchScript file's extra files."""


def exported_network(model):
    """``(network, info)``: the model (name, checkpoint or fit folder) as an :class:`EmsegNetwork` in eval
    mode with its checkpoint's weights, and the :class:`~emseg.models.reader.CheckpointInfo` it was read from."""
    from ..models import load_model
    from ..models.reader import read_checkpoint
    from .network import EmsegNetwork

    info = read_checkpoint(model)
    if info.model_class != "UNet":
        raise ValueError(f"model {info.path}: a {info.model_class}; emseg export writes emseg U-Nets only")
    unet = load_model(info.path)
    net = EmsegNetwork(info.activations, **info.init_args)
    net.unet.load_state_dict(unet.state_dict())
    return net.eval(), info


def header_json(info) -> str:
    """The checkpoint header an exported file carries: emseg reads the file back as a model with it."""
    return json.dumps({"format": "emseg-model", "model_class": info.model_class, "init_args": info.init_args,
                       "extra": info.extra, "card": info.card, "activations": list(info.activations)})


def _example(net, size=None):
    import torch

    divisor = net.unet.input_divisor
    shape = tuple(size) if size else tuple(max(d, 32 // d * d) for d in divisor)
    return torch.zeros((1, net.unet.in_channels) + shape)


def onnx_bytes(net, info, opset=ONNX_OPSET) -> bytes:
    """``net`` as an ONNX model (batch and spatial sizes dynamic) with the checkpoint header in its metadata."""
    import io
    import warnings

    import torch

    try:
        import onnx
    except ImportError:
        raise ValueError("emseg export writes ONNX with the onnx package: pip install 'emseg[export]'") from None
    axes = {0: "batch", **{2 + a: "zyx"[3 - net.unet.ndim + a] for a in range(net.unet.ndim)}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated in favour of dynamo's,
        warnings.simplefilter("ignore")  # which needs onnxscript and fixes more shapes; this one is exact here
        torch.onnx.export(net, (_example(net),), buffer, dynamo=False, opset_version=opset, input_names=["raw"],
                          output_names=["probabilities"], dynamic_axes={"raw": axes, "probabilities": axes})
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, header_json(info)
    proto.producer_name = "emseg"
    return proto.SerializeToString()


def export_onnx(net, path, info, opset=ONNX_OPSET):
    """Write :func:`onnx_bytes` to ``path``, whole or not at all."""
    from ..io.atomic import write_bytes_atomic

    write_bytes_atomic(path, onnx_bytes(net, info, opset))


def export_torchscript(net, path, info):
    """Write ``net`` to ``path`` as a traced TorchScript module (the header as the extra file ``emseg.json``)."""
    import io
    import warnings

    import torch

    from ..io.atomic import write_bytes_atomic

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the U-Net's shape checks become constants
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is what bioimage.io's consumers run
        traced = torch.jit.trace(net, _example(net), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"emseg.json": header_json(info)})
    write_bytes_atomic(path, buffer.getvalue())


def export_model(model, out, fmt="bioimageio", *, overwrite=False, **options):
    """Export ``model`` (a shipped name, a checkpoint or an ``emseg fit`` folder) to ``out``.

    Parameters
    ----------
    fmt : {"bioimageio", "onnx", "torchscript"}
        A bioimage.io package (a ``.zip``: :func:`emseg.share.bioimageio.export_bioimageio`, whose
        ``options`` it takes), or the bare network.
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    str
        ``out``.

    Raises
    ------
    ValueError
        An unknown format, an existing ``out`` without ``overwrite``, or a model the format cannot describe.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    out = os.fspath(out)
    suffix = SUFFIXES[fmt]
    if not out.endswith(suffix):
        raise ValueError(f"output {out}: a {fmt} export is written as a {suffix} file; name it ...{suffix}")
    if os.path.exists(out) and not overwrite:
        raise ValueError(f"output {out} exists; pass --overwrite to replace it")
    if fmt == "bioimageio":
        from .bioimageio import export_bioimageio

        return export_bioimageio(model, out, **options)
    if options:
        raise TypeError(f"{', '.join(sorted(options))}: options of the bioimageio format only")
    net, info = exported_network(model)
    (export_onnx if fmt == "onnx" else export_torchscript)(net, out, info)
    return out
