"""The network as other tools run it: emseg's U-Net with its output activations inside, and the
same code as one standalone Python file (the ``architecture`` of a bioimage.io package).

Prediction in emseg applies each output channel's activation (a sigmoid on probabilities, a clip to
[0, 1] on regressed values, :mod:`emseg.tasks`) after the network. A tool that only runs the weights
(bioimage.io, ilastik, deepImageJ, onnxruntime) would miss them, so the exported network holds them:
:class:`EmsegNetwork` outputs what ``emseg predict`` writes.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ..models.unet import UNet

__all__ = ["EmsegNetwork", "standalone_source"]


class EmsegNetwork(nn.Module):
    """``UNet(**unet_args)`` followed by one activation per output channel.

    Parameters
    ----------
    activations : list of str
        ``"sigmoid"`` or ``"clip"`` (to [0, 1]) per output channel; ``"none"`` leaves a channel as it is.
    **unet_args
        The U-Net's init arguments (a checkpoint's ``init_args``).

    Examples
    --------
    >>> net = EmsegNetwork(["sigmoid", "clip"], in_channels=1, out_channels=2, ndim=2, depth=1, features=4)
    >>> y = net(torch.zeros(1, 1, 16, 16))
    >>> tuple(y.shape), bool(((y >= 0) & (y <= 1)).all())
    ((1, 2, 16, 16), True)
    """

    def __init__(self, activations, **unet_args):
        super().__init__()
        self.unet = UNet(**unet_args)
        activations = list(activations)
        if len(activations) != self.unet.out_channels or set(activations) - {"sigmoid", "clip", "none"}:
            raise ValueError(f"activations must be 'sigmoid', 'clip' or 'none' for each of the {self.unet.out_channels} "
                             f"output channels; got {activations!r}")
        shape = (1, len(activations)) + (1,) * self.unet.ndim
        # masks, not Python branches: one graph for tracing and ONNX; not saved with the weights
        self.register_buffer("sigmoid", torch.tensor([a == "sigmoid" for a in activations]).reshape(shape), False)
        self.register_buffer("clip", torch.tensor([a == "clip" for a in activations]).reshape(shape), False)

    def forward(self, x):
        y = self.unet(x)
        y = torch.where(self.sigmoid, torch.sigmoid(y), y)
        return torch.where(self.clip, y.clamp(0.0, 1.0), y)


_SHIM = '''
class ConfigError(ValueError):
    """A config value of the wrong type or out of range; ``key`` names the field."""

    def __init__(self, key, message):
        super().__init__(message)
        self.key = key


def resolve(options, *configs):
    """Each ``(cls, given)`` pair as a ``cls`` instance with ``options`` applied (emseg.config.resolve, for one class)."""
    (cls, given), = configs
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"unknown option {unknown[0]!r}; valid: {', '.join(sorted(fields))}")
    base = given if given is not None else cls()
    return [dataclasses.replace(base, **options) if options else base]
'''


def standalone_source() -> str:
    """This module's :class:`EmsegNetwork` and the U-Net it builds as one Python file that needs only torch.

    The file is made from emseg's own modules (``models/unet_config.py``, ``models/unet.py``, this one)
    with their imports of emseg replaced by a small shim, so it is always the code that trained the weights.

    Examples
    --------
    >>> namespace = {}
    >>> exec(compile(standalone_source(), "emseg_network.py", "exec"), namespace)
    >>> net = namespace["EmsegNetwork"](["sigmoid"], in_channels=1, out_channels=1, ndim=2, depth=1, features=4)
    >>> tuple(net(torch.zeros(1, 1, 8, 8)).shape)
    (1, 1, 8, 8)
    """
    from .. import __version__
    from ..models import unet, unet_config

    parts = []
    for module in (unet_config, unet, inspect.getmodule(EmsegNetwork)):
        lines = [ln for ln in inspect.getsource(module).splitlines()
                 if not ln.startswith(("from __future__", "from ..", "from .", "__all__"))]
        parts.append(f"# ---- from emseg {__version__}: {module.__name__} ----\n" + "\n".join(lines))
    head = (f'"""The network of an emseg model (emseg {__version__}): EmsegNetwork(activations, **unet_args).\n\n'
            'Written by `emseg export` from emseg\'s own modules; it needs only torch."""\n\n'
            "from __future__ import annotations\n\nimport dataclasses\n")
    return head + _SHIM + "\n\n" + "\n\n".join(parts) + "\n"
