"""The architecture of a :class:`~emseg.models.UNet` as one frozen configuration (no torch needed).

Its fields are the U-Net's keyword arguments; a model's channels (``in_channels``,
``out_channels``) follow the data and the task, so they stay arguments of the model itself. A
checkpoint stores both as the model's ``init_args`` (:mod:`emseg.models.checkpoint`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

from ..config import ConfigError

__all__ = ["UNetConfig", "Levels"]

_OPTIONS = {"block": ("plain", "residual"), "norm": ("batch", "group", "instance", None),
            "activation": ("relu", "elu", "leaky_relu"),  # the layers: emseg.models.unet._ACTIVATIONS
            "upsample": ("transposed", "nearest", "bilinear"), "bottleneck": ("plain", "aspp")}


class Levels(NamedTuple):
    """Per-level sizes of a U-Net: ``depth + 1`` widths and kernel sizes (the last: the bottleneck's),
    ``depth`` pool sizes; each size an ``ndim``-tuple."""

    widths: list
    kernel_sizes: list
    pool_sizes: list


@dataclass(frozen=True)
class UNetConfig:
    """A U-Net's architecture; each field is also a keyword of
    ``UNet(in_channels, out_channels, config=None, **options)``.

    Attributes
    ----------
    ndim : {2, 3}
        Spatial dimensions.
    depth : int
        Number of down-samplings.
    features : int or sequence of int
        Width of level 0, doubled at every level, or ``depth + 1`` explicit widths.
    kernel_sizes : int or sequence
        Odd kernel sizes: an int or ``ndim`` ints for every level, or ``depth + 1`` entries (one
        per level, the last for the bottleneck), each an int or ``ndim`` ints. Default 3.
    pool_sizes : int or sequence
        Max-pooling factors, given like ``kernel_sizes`` with ``depth`` entries. Default 2.
        :func:`~emseg.models.anisotropic_plan` derives both from a voxel size.
    block : {"plain", "residual"}
        Two conv-norm-activation layers, or the same with a (1x1 conv) shortcut.
    norm : {"batch", "group", "instance", None}
        Normalisation after each conv; "group" uses ``gcd(channels, 8)`` groups.
    activation : {"relu", "elu", "leaky_relu"}
    upsample : {"transposed", "nearest", "bilinear"}
        Transposed convolution (kernel = stride = pool size), or interpolation followed by a 1x1
        convolution (the light variant; "bilinear" is trilinear in 3D).
    bottleneck : {"plain", "aspp"}
        A plain block, or parallel dilated convolutions (rates ``aspp_rates`` plus a 1x1 branch)
        fused by a 1x1 convolution.
    aspp_rates : sequence of int
        Dilation rates of the ASPP bottleneck; unused otherwise.

    Lists are kept as tuples; a bad value raises :class:`~emseg.config.ConfigError` (a ValueError)
    naming the field.

    Examples
    --------
    >>> config = UNetConfig(depth=2, features=4, kernel_sizes=[3, [3, 5], 3])
    >>> config.kernel_sizes
    (3, (3, 5), 3)
    >>> config.levels()
    Levels(widths=[4, 8, 16], kernel_sizes=[(3, 3), (3, 5), (3, 3)], pool_sizes=[(2, 2), (2, 2)])
    >>> UNetConfig(norm="layer")
    Traceback (most recent call last):
    ...
    emseg.config.ConfigError: norm must be one of ('batch', 'group', 'instance', None); got 'layer'
    """

    ndim: int = 2
    depth: int = 4
    features: int | tuple = 32
    kernel_sizes: int | tuple = 3
    pool_sizes: int | tuple = 2
    block: str = "plain"
    norm: str | None = "batch"
    activation: str = "relu"
    upsample: str = "transposed"
    bottleneck: str = "plain"
    aspp_rates: tuple = (1, 2, 4)

    def __post_init__(self):
        set_ = object.__setattr__
        if self.ndim not in (2, 3):
            raise ConfigError("ndim", f"ndim must be 2 or 3; got {self.ndim!r}")
        if int(self.depth) != self.depth or self.depth < 0:
            raise ConfigError("depth", f"depth must be a non-negative integer; got {self.depth!r}")
        set_(self, "ndim", int(self.ndim))
        set_(self, "depth", int(self.depth))
        for name, options in _OPTIONS.items():
            if getattr(self, name) not in options:
                raise ConfigError(name, f"{name} must be one of {options}; got {getattr(self, name)!r}")
        _widths(self.features, self.depth)
        rates = [int(r) for r in self.aspp_rates]
        if not rates or min(rates) < 1:
            raise ConfigError("aspp_rates", f"aspp_rates must be positive ints; got {rates!r}")
        set_(self, "aspp_rates", tuple(rates))
        self.levels()  # kernel and pool sizes fit ndim and depth
        for name in ("features", "kernel_sizes", "pool_sizes"):  # checked as given, kept hashable
            set_(self, name, _frozen(getattr(self, name)))

    def levels(self) -> Levels:
        """The widths, kernel sizes and pool sizes of every level."""
        return Levels(_widths(self.features, self.depth),
                      _per_level(self.kernel_sizes, self.depth + 1, self.ndim, "kernel_sizes", odd=True),
                      _per_level(self.pool_sizes, self.depth, self.ndim, "pool_sizes"))

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _widths(features, depth):
    widths = [features * 2**i for i in range(depth + 1)] if isinstance(features, int) else list(features)
    if len(widths) != depth + 1 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ConfigError("features", f"features must be a positive int or {depth + 1} positive ints; "
                          f"got {features!r}")
    return widths


def _per_level(value, n, ndim, name, odd=False):
    """``value`` as ``n`` ndim-tuples: an int or flat ndim-tuple for all levels, else one entry per level."""
    flat = isinstance(value, int) or all(isinstance(v, int) for v in value)
    levels = [value] * n if flat else list(value)
    levels = [(v,) * ndim if isinstance(v, int) else tuple(v) for v in levels]
    if len(levels) != n or any(len(v) != ndim or min(v) < 1 or (odd and min(s % 2 for s in v) == 0)
                               for v in levels):
        kind = "odd positive" if odd else "positive"
        raise ConfigError(name, f"{name} must be an int, {ndim} ints (every level) or {n} entries (one per level, "
                          f"each an int or {ndim} ints), all {kind}; got {value!r}")
    return [tuple(int(s) for s in v) for v in levels]



def _frozen(value):
    """``value`` with every list or tuple inside it a tuple (YAML gives lists; a config is hashable)."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value
