"""What a training run builds: the U-Net its config describes, and how it trains it: AdamW, a linear
warm-up then cosine decay of the learning rate, and mixed precision where the device computes it
natively.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import NamedTuple

from ..runtime import cpu_bf16
from ..tasks import get_task
from .config import TrainConfig

__all__ = ["build_model", "init_weights", "InitReport", "Optimization", "make_optimization", "lr_factor"]


def build_model(config: TrainConfig, voxel_size):
    """The UNet ``config.model`` describes; a bad argument is a ValueError naming ``model.KEY``.

    ``config.model`` holds :class:`~emseg.models.UNetConfig` fields but ``ndim`` (it follows
    ``patch_shape``), or ``preset: light2d``; the channels follow the target. A 3D model without
    ``kernel_sizes`` follows the voxel size (:meth:`~emseg.models.UNet.for_voxel_size`).
    """
    from ..models import UNet, UNetConfig

    kwargs = dict(config.model)
    preset = kwargs.pop("preset", None)
    if preset not in (None, "light2d"):
        raise ValueError(f"model.preset must be light2d or absent; got {preset!r}")
    valid = [f.name for f in dataclasses.fields(UNetConfig) if f.name != "ndim"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"model.{unknown[0]} is not a UNet argument (ndim follows patch_shape, the channels the "
                         f"target); valid: preset, {', '.join(valid)}")
    ndim = len(config.patch_shape)
    common = dict(in_channels=2 * config.context + 1, out_channels=get_task(config.target).channels(config.task_params))
    try:
        if preset == "light2d":
            if ndim != 2:
                raise ValueError(f"preset light2d is a 2D network but patch_shape {config.patch_shape} is 3D")
            model = UNet.light2d(**common, **kwargs)
        elif ndim == 3 and voxel_size is not None and "kernel_sizes" not in kwargs:
            model = UNet.for_voxel_size(voxel_size, **common, **kwargs)
        else:
            model = UNet(ndim=ndim, **common, **kwargs)
        model.check_input_shape(config.patch_shape)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model {config.model} with patch_shape {list(config.patch_shape)}: {err}") from None
    return model


class InitReport(NamedTuple):
    """What :func:`init_weights` did: the source, and how many tensors it loaded and left as initialised."""

    source: str
    loaded: int
    skipped: list
    """Names of the model's tensors left with their random initialisation (no tensor of that name and shape)."""
    names: frozenset = frozenset()
    """Names of the tensors loaded."""


def init_weights(model, init) -> InitReport:
    """Load into ``model`` every tensor of checkpoint ``init`` (a path or a shipped model's name) whose
    name and shape match; the others (a new output head, other channels) keep their initialisation.

    Raises
    ------
    FileNotFoundError
        No such checkpoint, nor a shipped model of that name (the message lists the shipped ones).
    ValueError
        Not a checkpoint, or not one tensor of it fits the model (another architecture).
    """
    import torch

    from ..models.checkpoint import read_safetensors
    from ..zoo import model_names, resolve_model

    path, _ = resolve_model(init)
    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"init {init}: no such checkpoint, nor a shipped model (shipped: "
                                f"{', '.join(model_names())})")
    from ..models.checkpoint import read_model_header

    ndim = read_model_header(path).init_args.get("ndim")
    if ndim is not None and getattr(model, "ndim", ndim) != ndim:
        raise ValueError(f"init {init}: a {ndim}D model, but this run trains a {model.ndim}D one (patch_shape has "
                         f"{model.ndim} numbers); start from a {model.ndim}D model or train in {ndim}D")
    tensors = read_safetensors(path).tensors
    if read_model_header(path).extra.get("pretrain"):  # a pretrained model's head restores intensities: not loaded
        tensors = {k: v for k, v in tensors.items() if not k.startswith("head.")}
    state = model.state_dict()
    fits = {k: v for k, v in tensors.items() if k in state and tuple(v.shape) == tuple(state[k].shape)}
    learned = [k for k in state if not k.endswith("num_batches_tracked")]
    if not any(k in fits and fits[k].ndim > 1 for k in learned):  # norm parameters alone do not make a fit
        raise ValueError(f"init {init}: none of its convolutions fits this model (another architecture); its "
                         f"model has {len(tensors)} tensors, this one {len(state)}")
    with torch.no_grad():
        for k, v in fits.items():
            state[k].copy_(v.to(state[k].dtype))
    return InitReport(str(init), len(fits), [k for k in learned if k not in fits], frozenset(fits))


def lr_factor(step, config: TrainConfig, total=None) -> float:
    """The learning rate at ``step`` as a fraction of ``config.lr``: linear warm-up, then cosine
    decay to 0 at ``total`` steps (default ``config.steps``).

    Examples
    --------
    >>> from emseg.train import TrainConfig
    >>> config = TrainConfig(steps=10, warmup_steps=2)
    >>> [round(lr_factor(s, config), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    total = total or config.steps
    if step < config.warmup_steps:
        return (step + 1) / max(1, config.warmup_steps)
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass(eq=False)
class Optimization:
    """How a model is trained: optimizer, LR scheduler, gradient scaler and autocast settings.

    ``budget`` is the step the cosine decay ends at: ``config.steps``, or with ``max_minutes`` an
    estimate from the measured speed, updated as training goes (such runs resume exactly only
    up to that estimate). The scheduler reads it at every step.
    """

    optimizer: object
    scheduler: object = None
    scaler: object = None
    use_amp: bool = False
    amp_dtype: object = None
    budget: int = 0


def make_optimization(config: TrainConfig, model, device, pretrained=frozenset()) -> Optimization:
    """AdamW on ``model``'s trainable parameters with the warm-up + cosine schedule of :func:`lr_factor`
    (those named in ``pretrained``, loaded from ``config.init``, at ``lr * init_lr_scale``);
    mixed precision when ``config.amp``: float16 + loss scaling on CUDA, bfloat16 on CPUs with native
    support (AVX512-BF16/AMX)."""
    import torch

    from .finetune import param_groups

    groups = param_groups(model, pretrained, config.lr, config.init_lr_scale)
    if not groups:
        raise ValueError(f"freeze {config.freeze!r} leaves no parameter to train in model {config.model}; use "
                         "freeze: none or encoder")
    opt = Optimization(torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay),
                       budget=config.steps)
    opt.scheduler = torch.optim.lr_scheduler.LambdaLR(opt.optimizer, lambda s: lr_factor(s, config, opt.budget))
    opt.use_amp = bool(config.amp and (device.type == "cuda" or (device.type == "cpu" and cpu_bf16())))
    opt.amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    opt.scaler = torch.amp.GradScaler("cuda", enabled=opt.use_amp and device.type == "cuda")
    return opt
