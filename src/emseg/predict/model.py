"""Models for prediction: a checkpoint path, a torch module or any numpy callable, seen as one
function plus the geometry prediction needs (dimensionality, channels, halo, input divisor)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..runtime import memory_format, torch_device

__all__ = ["Predictor", "as_predictor"]


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
    info: dict = field(default_factory=dict)


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


def _torch_fn(model, device, sigmoid, copy=False):
    import copy as _copy

    import torch

    fmt = memory_format(model.ndim) if getattr(model, "ndim", None) in (2, 3) else torch.contiguous_format
    if copy:  # a module the caller owns: leave its device and memory layout alone
        model = _copy.deepcopy(model)
    model = model.to(device).eval().to(memory_format=fmt)  # channels-last: ~2x faster convolutions on CPU

    def fn(x):
        with torch.inference_mode():
            y = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device).contiguous(memory_format=fmt))
            if sigmoid is True:
                y = torch.sigmoid(y)
            elif sigmoid:  # some channels are probabilities, the others regressed values in [0, 1] (BCD distance)
                probs = torch.sigmoid(y[:, list(sigmoid)])
                y = y.clamp(0, 1)
                y[:, list(sigmoid)] = probs
            return np.ascontiguousarray(y.float().cpu().numpy())

    return fn


def as_predictor(model, *, device="auto", sigmoid=True, cache=True) -> Predictor:
    """Wrap ``model``: a checkpoint path or a shipped model's name (``emseg.zoo``; loaded once per
    process and cached), a Predictor, a torch module with ``ndim``/``halo``/``input_divisor``
    (emseg's UNet), or a numpy callable with attributes ``ndim``, ``in_channels``,
    ``out_channels`` and optionally ``halo``/``divisor``.
    Checkpoint outputs go through a sigmoid (probabilities) unless ``sigmoid=False``; a tuple of
    channels applies it to those only and clips the others to [0, 1] (BCD checkpoints do this for
    their regressed distance channel by themselves)."""
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        import os

        from ..zoo import resolve_model

        model, card = resolve_model(model)
        path = os.fspath(model)
        if not os.path.exists(path):
            from ..zoo import model_names

            raise FileNotFoundError(f"model {path}: no such checkpoint file, nor a shipped model "
                                    f"({', '.join(model_names())})")
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_mtime_ns, st.st_size, str(device), sigmoid, card is not None)
        if cache and key in _CACHE:
            return _CACHE[key]
        from ..models import load_model, read_model_header
        from ..train.data import Normalization

        header = read_model_header(path)
        net = load_model(path)  # refuses NaN/inf weights, naming the tensor
        norm = header.extra.get("normalization")
        if sigmoid is True and header.extra.get("target") == "bcd" and \
                (header.extra.get("config") or {}).get("loss") != "mse":
            sigmoid = (0, 1)  # foreground and contour; the distance channel was regressed (MSE), clipped to [0, 1]
        pred = Predictor(_torch_fn(net, torch_device(device), sigmoid), net.ndim, net.in_channels, net.out_channels,
                         tuple(net.halo), tuple(net.input_divisor), Normalization(**norm) if norm else None,
                         tuple(header.extra["voxel_size"]) if header.extra.get("voxel_size") else None,
                         {"path": path, **header.extra, **({"card": card} if card else {})})
        _check_geometry(pred, f"checkpoint {path}")
        if cache:
            _CACHE[key] = pred
        return pred
    if hasattr(model, "state_dict") and hasattr(model, "input_divisor"):
        _check_weights(model, f"model {type(model).__name__}")
        return _check_geometry(Predictor(_torch_fn(model, torch_device(device), sigmoid, copy=True), model.ndim,
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
