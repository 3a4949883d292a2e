"""Models for prediction: a checkpoint path, a torch module or any numpy callable, seen as one
function plus the geometry prediction needs (dimensionality, channels, halo, input divisor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import os

import numpy as np

from ..runtime import memory_format, torch_device

__all__ = ["Predictor", "as_predictor", "RUNTIMES", "runs_on_onnx"]


@dataclass
class Predictor:
    """``fn`` maps (N, C_in, *spatial) float32 → (N, C_out, *spatial); the rest describes it."""

    fn: Callable
    ndim: int
    in_channels: int
    out_channels: int
    halo: tuple
    divisor: tuple
    normalization: object = None
    voxel_size: tuple | None = None
    checkpoint: object = None
    """The :class:`emseg.models.reader.CheckpointInfo` of a model loaded from a checkpoint, else None."""
    weights: str | None = None
    """The file whose weights run (the checkpoint, or the ONNX file onnxruntime runs): the model's identity."""


_CACHE: dict = {}


def _check_geometry(pred: Predictor, what) -> Predictor:
    """Refuse a model whose dimensionality, channels, halo or divisor cannot be right (named ``what``)."""
    nd = pred.ndim
    if nd not in (2, 3):
        raise ValueError(f"{what}: ndim must be 2 or 3 (a 2D or 3D network); got {nd!r}")
    for name in ("in_channels", "out_channels"):
        v = getattr(pred, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{what}: {name} must be a positive integer; got {v!r}")
    for name, low in (("halo", 0), ("divisor", 1)):
        v = getattr(pred, name)
        ints = all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= low for x in v)
        if len(v) != nd or not ints:
            raise ValueError(f"{what}: {name} must be {nd} integers >= {low} (one per axis, zyx); got {v!r}")
    return pred


def _check_weights(module, what):
    """Refuse a network with NaN or infinite weights: every output would be NaN."""
    import torch

    bad = [k for k, t in module.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"{what}: {len(bad)} weight tensor(s) hold NaN or infinite values (first: {bad[0]}); the "
                         "weights are broken (diverged training or a damaged file): use another checkpoint or retrain")


def _torch_fn(model, device, activations, copy=False):
    """``model`` as a numpy function; ``activations``: None (raw outputs) or one per channel ("sigmoid", "clip")."""
    import copy as _copy

    import torch

    fmt = memory_format(model.ndim) if getattr(model, "ndim", None) in (2, 3) else torch.contiguous_format
    if copy:  # a module the caller owns: leave its device and memory layout alone
        model = _copy.deepcopy(model)
    model = model.to(device).eval().to(memory_format=fmt)  # channels-last: ~2x faster convolutions on CPU
    sig = [c for c, a in enumerate(activations or ()) if a == "sigmoid"]
    clip = [c for c, a in enumerate(activations or ()) if a == "clip"]

    def fn(x):
        with torch.inference_mode():
            y = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device).contiguous(memory_format=fmt))
            if activations is not None and len(activations) != y.shape[1]:
                raise ValueError(f"the model outputs {y.shape[1]} channels but its task gives {len(activations)} "
                                 "activations: the checkpoint is inconsistent")
            if len(sig) == y.shape[1]:
                y = torch.sigmoid(y)
            elif sig or clip:
                probs = torch.sigmoid(y[:, sig]) if sig else None
                y = y.clamp(0, 1) if clip else y
                if sig:
                    y[:, sig] = probs
            return np.ascontiguousarray(y.float().cpu().numpy())

    return fn


def _activations(sigmoid, channels, default):
    """Per-channel activations: ``default`` (the task's) for True, none for False, a sigmoid on the given
    channels and the others clipped to [0, 1] for a tuple."""
    if sigmoid is True:
        return tuple(default) if default is not None else ("sigmoid",) * channels
    if not sigmoid:
        return None
    return tuple("sigmoid" if c in tuple(sigmoid) else "clip" for c in range(channels))


RUNTIMES = ("torch", "onnx")  # also PredictConfig's and the CLI's choices
"""How a checkpoint's network runs: PyTorch, or onnxruntime on the CPU (``pip install 'emseg[onnx]'``)."""


def _onnx_predictor(info, device, sigmoid):
    """The checkpoint ``info`` run by onnxruntime on the CPU: its exported ONNX file, or the network exported in
    memory. ``device`` "auto" means the CPU here; an explicit other device is refused."""
    import torch

    from ..models import UNet

    if sigmoid is not True:
        raise ValueError(f"model {info.path}: an ONNX network holds its activations; raw outputs (sigmoid={sigmoid!r}) "
                         "need runtime 'torch'")
    if device not in ("auto", "cpu") and torch_device(device).type != "cpu":
        raise ValueError(f"onnxruntime runs here on the CPU; got device {device!r}: give --device cpu (or auto)"
                         + ("" if info.onnx == info.path else ", or --runtime torch to run on the GPU"))
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ValueError("runtime 'onnx' needs onnxruntime: pip install 'emseg[onnx]'") from None
    from ..share.load import onnx_function

    if info.onnx is not None:
        source = info.onnx
    else:
        from ..share.export import exported_network, onnx_bytes

        source = onnx_bytes(*exported_network(info.path))
    with torch.device("meta"):
        net = UNet(**info.init_args)
    return Predictor(onnx_function(source, torch.get_num_threads()), net.ndim, net.in_channels, net.out_channels,
                     tuple(net.halo), tuple(net.input_divisor), info.normalization, info.voxel_size, info,
                     info.onnx or info.path)


def runs_on_onnx(model, runtime) -> bool:
    """Whether ``model`` (a path or name) runs through onnxruntime: ``runtime`` "onnx", or an ONNX file."""
    return runtime == "onnx" or (isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(".onnx"))


def as_predictor(model, *, device="auto", sigmoid=True, cache=True, runtime="torch") -> Predictor:
    """Wrap ``model``: a checkpoint path or a shipped model's name (``emseg.zoo``; loaded once per
    process and cached), a bioimage.io package or ONNX file that ``emseg export`` wrote, a Predictor,
    a torch module with ``ndim``/``halo``/``input_divisor`` (emseg's UNet), or a numpy callable with
    attributes ``ndim``, ``in_channels``, ``out_channels`` and optionally ``halo``/``divisor``.
    Checkpoint outputs get their task's activations (:mod:`emseg.tasks`: a sigmoid on probability
    channels, regressed ones such as BCD's distance clipped to [0, 1]) unless ``sigmoid=False`` (raw
    outputs); a tuple of channels applies a sigmoid to those only and clips the others.
    ``runtime="onnx"`` runs a checkpoint's network through onnxruntime on the CPU (a package's ONNX
    weights, or the network exported to ONNX in memory); an ONNX file always runs there."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from ..models.reader import read_checkpoint

        info = read_checkpoint(model)  # the one reader: task, activations, normalisation, card (cached)
        onnx = runs_on_onnx(info.path, runtime)
        key = (info.path, os.stat(info.path).st_mtime_ns, str(device), sigmoid, info.card is not None, onnx)
        if cache and key in _CACHE:
            return _CACHE[key]
        if onnx:
            pred = _onnx_predictor(info, device, sigmoid)
            _check_geometry(pred, f"model {info.path}")
            if cache:
                _CACHE[key] = pred
            return pred
        from ..models import load_model

        net = load_model(info.path)  # refuses NaN/inf weights, naming the tensor
        pred = Predictor(_torch_fn(net, torch_device(device), _activations(sigmoid, net.out_channels, info.activations)),
                         net.ndim, net.in_channels, net.out_channels, tuple(net.halo), tuple(net.input_divisor),
                         info.normalization, info.voxel_size, info, info.path)
        _check_geometry(pred, f"checkpoint {info.path}")
        if cache:
            _CACHE[key] = pred
        return pred
    if hasattr(model, "state_dict") and hasattr(model, "input_divisor"):
        _check_weights(model, f"model {type(model).__name__}")
        acts = _activations(sigmoid, model.out_channels, None)
        return _check_geometry(Predictor(_torch_fn(model, torch_device(device), acts, copy=True), model.ndim,
                                         model.in_channels, model.out_channels, tuple(model.halo),
                                         tuple(model.input_divisor)), f"model {type(model).__name__}")
    if callable(model) and hasattr(model, "ndim"):
        nd = model.ndim
        what = f"model {type(model).__name__}"
        if isinstance(nd, bool) or not isinstance(nd, (int, np.integer)):
            raise ValueError(f"{what}: ndim must be 2 or 3 (a 2D or 3D network); got {nd!r}")
        halo, divisor = getattr(model, "halo", (0,) * nd), getattr(model, "divisor", (1,) * nd)
        return _check_geometry(Predictor(model, int(nd), getattr(model, "in_channels", 1),
                                         getattr(model, "out_channels", 1),
                                         tuple(halo) if np.ndim(halo) else (halo,) * nd,
                                         tuple(divisor) if np.ndim(divisor) else (divisor,) * nd), what)
    raise TypeError(f"model must be a checkpoint path, an emseg UNet or a callable with an ndim attribute; "
                    f"got {type(model).__name__}")
