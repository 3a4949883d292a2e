"""One configurable U-Net for 2D, 3D and anisotropic (hybrid 2D-3D) EM volumes.

Level ``l`` works at the input resolution divided by the product of ``pool_sizes[:l]``; the
bottleneck is level ``depth``. Every convolution pads "same", so the output has the input's
spatial shape whenever that shape is divisible by :attr:`UNet.input_divisor`::

    in --block0----------------------------------------- cat-block0 --> 1x1 --> out
           pool0                                          up0
           +--block1---------------------- cat-block1 ----+
                 pool1                     up1
                 +------- bottleneck ------+            (depth = 2)
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch
from torch import nn

from ..config import resolve
from .unet_config import UNetConfig

__all__ = ["UNet", "UNetConfig", "anisotropic_plan", "AnisotropicPlan"]

_AXES = {2: "yx", 3: "zyx"}
_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}  # = UNetConfig's activations


class AnisotropicPlan(NamedTuple):
    """Per-level kernel sizes (``depth + 1``, the last the bottleneck's) and pool sizes (``depth``)."""

    kernel_sizes: list
    pool_sizes: list


def anisotropic_plan(voxel_size, depth) -> AnisotropicPlan:
    """Per-level kernel and pool sizes for a voxel size, the nnU-Net way.

    At each level an axis is pooled by 2 and convolved with 3 only while its current spacing is
    below twice the finest current spacing; otherwise it gets kernel 1 and pool 1 until pooling
    of the other axes has made the voxels roughly isotropic.

    Parameters
    ----------
    voxel_size : sequence of float
        Spacing per axis (``zyx`` or ``yx``), any unit.
    depth : int
        Number of down-samplings.

    Returns
    -------
    AnisotropicPlan
        ``kernel_sizes``: ``depth + 1`` kernel sizes (tuples of int), one per level (the last is
        the bottleneck's); ``pool_sizes``: ``depth`` pool sizes.

    Examples
    --------
    >>> kernels, pools = anisotropic_plan((30, 6, 6), 3)
    >>> kernels
    [(1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3)]
    >>> pools
    [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
    """
    spacing = [float(s) for s in voxel_size]
    if len(spacing) not in (2, 3) or min(spacing, default=0) <= 0:
        raise ValueError(f"voxel_size must be 2 or 3 positive spacings; got {tuple(voxel_size)}")
    if int(depth) != depth or depth < 0:
        raise ValueError(f"depth must be a non-negative integer; got {depth!r}")
    kernel_sizes, pool_sizes = [], []
    for level in range(int(depth) + 1):
        fine = [s < 2 * min(spacing) for s in spacing]
        kernel_sizes.append(tuple(3 if f else 1 for f in fine))
        if level < depth:
            pool_sizes.append(tuple(2 if f else 1 for f in fine))
            spacing = [s * p for s, p in zip(spacing, pool_sizes[-1])]
    return AnisotropicPlan(kernel_sizes, pool_sizes)


class _Sum(nn.Module):
    """``activation(body(x) + shortcut(x))``: a residual block."""

    def __init__(self, body, shortcut, activation):
        super().__init__()
        self.body, self.shortcut, self.activation = body, shortcut, activation

    def forward(self, x):
        return self.activation(self.body(x) + self.shortcut(x))


class _Concat(nn.Module):
    """``fuse(cat(branch(x) for branch in branches))``: atrous spatial pyramid pooling (ASPP)."""

    def __init__(self, branches, fuse):
        super().__init__()
        self.branches, self.fuse = nn.ModuleList(branches), fuse

    def forward(self, x):
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))


class _Layers:
    """The layers a :class:`UNetConfig` describes: blocks, the bottleneck, the upsamplers.

    Each call creates new modules (and draws their initial weights from torch's generator), so the
    order of the calls is the order of the weights' random initialisation.
    """

    def __init__(self, config: UNetConfig):
        self.config = config
        self.Conv = getattr(nn, f"Conv{config.ndim}d")
        self.Pool = getattr(nn, f"MaxPool{config.ndim}d")

    def conv_norm_act(self, c_in, c_out, kernel, dilation=1, act=True):
        norm, ndim = self.config.norm, self.config.ndim
        dil = tuple(dilation if k > 1 else 1 for k in kernel)
        layers = [self.Conv(c_in, c_out, kernel, padding=tuple(k // 2 * d for k, d in zip(kernel, dil)),
                            dilation=dil, bias=norm is None)]
        if norm == "batch":
            layers.append(getattr(nn, f"BatchNorm{ndim}d")(c_out))
        elif norm == "group":
            layers.append(nn.GroupNorm(math.gcd(c_out, 8), c_out))
        elif norm == "instance":
            layers.append(getattr(nn, f"InstanceNorm{ndim}d")(c_out, affine=True))
        return nn.Sequential(*layers, _ACTIVATIONS[self.config.activation]()) if act else nn.Sequential(*layers)

    def block(self, c_in, c_out, kernel):
        if self.config.block == "plain":
            return nn.Sequential(self.conv_norm_act(c_in, c_out, kernel), self.conv_norm_act(c_out, c_out, kernel))
        body = nn.Sequential(self.conv_norm_act(c_in, c_out, kernel),
                             self.conv_norm_act(c_out, c_out, kernel, act=False))
        one = (1,) * self.config.ndim
        shortcut = nn.Identity() if c_in == c_out else self.conv_norm_act(c_in, c_out, one, act=False)
        return _Sum(body, shortcut, _ACTIVATIONS[self.config.activation]())

    def bottleneck(self, c_in, c_out, kernel):
        if self.config.bottleneck == "plain":
            return self.block(c_in, c_out, kernel)
        one = (1,) * self.config.ndim
        branches = [self.conv_norm_act(c_in, c_out, one)]
        branches += [self.conv_norm_act(c_in, c_out, kernel, rate) for rate in self.config.aspp_rates]
        return _Concat(branches, self.conv_norm_act(len(branches) * c_out, c_out, one))

    def upsampler(self, c_in, c_out, pool):
        upsample, ndim = self.config.upsample, self.config.ndim
        if upsample == "transposed":
            return getattr(nn, f"ConvTranspose{ndim}d")(c_in, c_out, pool, stride=pool)
        mode = "nearest" if upsample == "nearest" else ("bilinear" if ndim == 2 else "trilinear")
        return nn.Sequential(nn.Upsample(scale_factor=pool, mode=mode), self.Conv(c_in, c_out, 1))


class UNet(nn.Module):
    """A U-Net for 2D, 3D or anisotropic data; the variants are parameters.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output (logits; no final activation).
    config : UNetConfig, optional
        The architecture (default ``UNetConfig()``: 2D, depth 4, 32 features).
    **options
        Fields of :class:`UNetConfig` that replace the config's (``ndim``, ``depth``,
        ``features``, ``kernel_sizes``, ``pool_sizes``, ``block``, ``norm``, ``activation``,
        ``upsample``, ``bottleneck``, ``aspp_rates``); an unknown one is a TypeError.

    Attributes
    ----------
    config : UNetConfig
        The architecture.
    init_args : dict
        The constructor arguments, JSON-able and normalised (per-level lists): ``UNet(**model.init_args)``
        rebuilds the model; checkpoints store them.

    Notes
    -----
    :attr:`receptive_field` and :attr:`halo` follow the convolution, pooling and upsampling
    geometry; the statistics of "group" and "instance" norms (and of "batch" norm in training
    mode) couple every voxel of a sample, which this geometric field ignores.

    Examples
    --------
    >>> model = UNet(1, 2, ndim=2, depth=2, features=4)
    >>> model(torch.zeros(1, 1, 32, 32)).shape
    torch.Size([1, 2, 32, 32])
    >>> model.receptive_field, model.halo, model.input_divisor
    ((44, 44), (23, 23), (4, 4))
    >>> model.valid_shape((30, 33))
    (32, 36)
    >>> UNet(1, 2, config=UNetConfig(depth=2, features=4)).init_args == model.init_args
    True
    """

    def __init__(self, in_channels=1, out_channels=1, *, config=None, **options):
        super().__init__()
        if isinstance(in_channels, UNetConfig):
            raise TypeError("pass the UNetConfig by name: UNet(in_channels, out_channels, config=config)")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        fields = [f.name for f in dataclasses.fields(UNetConfig)]
        unknown = sorted(set(options) - set(fields))
        if unknown:  # Python's own words for it
            raise TypeError(f"UNet() got an unexpected keyword argument {unknown[0]!r}; valid: in_channels, "
                            f"out_channels, config, {', '.join(fields)}")
        config, = resolve(options, (UNetConfig, config))
        widths, self.kernel_sizes, self.pool_sizes = config.levels()
        self.config = config
        self.init_args = dict(in_channels=in_channels, out_channels=out_channels, **config.as_dict())
        self.init_args.update(features=widths, kernel_sizes=[list(k) for k in self.kernel_sizes],
                              pool_sizes=[list(p) for p in self.pool_sizes], aspp_rates=list(config.aspp_rates))
        self.ndim, self.depth = config.ndim, config.depth
        self.in_channels, self.out_channels = in_channels, out_channels
        layers, depth, inputs = _Layers(config), config.depth, [in_channels] + widths[:-1]
        self.encoder = nn.ModuleList(layers.block(inputs[i], widths[i], self.kernel_sizes[i]) for i in range(depth))
        self.pools = nn.ModuleList(layers.Pool(p, stride=p) for p in self.pool_sizes)
        self.bottleneck = layers.bottleneck(inputs[depth], widths[depth], self.kernel_sizes[depth])
        self.upsamplers = nn.ModuleList(layers.upsampler(widths[i + 1], widths[i], p)
                                        for i, p in enumerate(self.pool_sizes))
        self.decoder = nn.ModuleList(layers.block(2 * widths[i], widths[i], self.kernel_sizes[i]) for i in range(depth))
        self.head = layers.Conv(widths[0], out_channels, 1)

    @classmethod
    def for_voxel_size(cls, voxel_size, in_channels=1, out_channels=1, *, depth=4, **options):
        """A U-Net whose kernels and poolings follow :func:`anisotropic_plan` for ``voxel_size``;
        ``options`` as for :class:`UNet` (but ``ndim``, ``kernel_sizes`` and ``pool_sizes``).

        Examples
        --------
        >>> model = UNet.for_voxel_size((30, 6, 6), depth=3, features=4)
        >>> model.input_divisor, model.receptive_field
        ((2, 8, 8), (18, 100, 100))
        """
        plan = anisotropic_plan(voxel_size, depth)
        return cls(in_channels, out_channels, ndim=len(plan.kernel_sizes[0]), depth=depth,
                   kernel_sizes=plan.kernel_sizes, pool_sizes=plan.pool_sizes, **options)

    @classmethod
    def light2d(cls, in_channels=1, out_channels=1, **options):
        """A small, fast 2D U-Net for CPU use: 8 base features, depth 4, bilinear upsampling.

        After the light U-Net of Casser et al., "Fast mitochondria detection for connectomics",
        MIDL 2020. Keyword ``options`` (fields of :class:`UNetConfig`) override the preset.
        """
        preset = dict(ndim=2, depth=4, features=8, upsample="bilinear", norm="batch")
        return cls(in_channels, out_channels, **{**preset, **options})

    @property
    def input_divisor(self):
        """Per-axis factor every spatial input size must be a multiple of."""
        return tuple(math.prod(p[a] for p in self.pool_sizes) for a in range(self.ndim))

    def valid_shape(self, shape):
        """The smallest spatial shape at least ``shape`` that the network accepts."""
        return tuple(max(1, -(-int(s) // d)) * d for s, d in zip(shape, self.input_divisor))

    def check_input_shape(self, shape):
        """Raise ValueError, naming the nearest valid shapes, if spatial ``shape`` is not accepted."""
        shape, divisor = tuple(int(s) for s in shape), self.input_divisor
        if len(shape) != self.ndim:
            raise ValueError(f"input shape {shape} must have {self.ndim} spatial axes ({_AXES[self.ndim]})")
        bad = [a for a, (s, d) in enumerate(zip(shape, divisor)) if s < d or s % d]
        if bad:
            lower = tuple(s // d * d for s, d in zip(shape, divisor))
            options = [v for v in (lower, self.valid_shape(shape)) if min(v) > 0]
            raise ValueError(f"input shape {shape} is not divisible by {divisor} along "
                             f"{', '.join(_AXES[self.ndim][a] for a in bad)}; nearest valid shapes: "
                             + " or ".join(str(v) for v in options))

    def _influence(self, axis, x):
        """Input interval ``(lo, hi)`` along ``axis`` that influences output voxel ``x`` (unbounded input)."""
        kernels = [k[axis] for k in self.kernel_sizes]
        pools = [p[axis] for p in self.pool_sizes]
        rates = self.init_args["aspp_rates"] if self.init_args["bottleneck"] == "aspp" else None
        reach = [2 * (k // 2) for k in kernels]  # two convolutions per block
        reach[-1] = max(rates) * (kernels[-1] // 2) if rates else reach[-1]

        def encoder(level, lo, hi):  # interval at the output of encoder block `level` -> input interval
            lo, hi = lo - reach[level], hi + reach[level]
            if level == 0:
                return lo, hi
            q = pools[level - 1]
            return encoder(level - 1, q * lo, q * hi + q - 1)

        def decoder(level, lo, hi):  # interval at the output of decoder block `level`
            if level == self.depth:
                return encoder(level, lo, hi)
            lo, hi = lo - reach[level], hi + reach[level]
            q = pools[level]
            if self.init_args["upsample"] == "bilinear":  # source (2i + 1 - q) / 2q and its upper neighbour
                up = ((2 * lo + 1 - q) // (2 * q), -((q - 1 - 2 * hi) // (2 * q)))
            else:
                up = (lo // q, hi // q)
            skip, deep = encoder(level, lo, hi), decoder(level + 1, *up)
            return min(skip[0], deep[0]), max(skip[1], deep[1])

        return decoder(0, x, x)

    @property
    def receptive_field(self):
        """Per-axis extent (voxels) of the input that influences one output voxel, worst alignment."""
        return tuple(max(hi - lo + 1 for lo, hi in (self._influence(a, x) for x in range(d)))
                     for a, d in enumerate(self.input_divisor))

    @property
    def halo(self):
        """Per-axis context (voxels) needed on each side of an output block for exact blockwise prediction."""
        return tuple(max(max(x - lo, hi - x) for x in range(d) for lo, hi in [self._influence(a, x)])
                     for a, d in enumerate(self.input_divisor))

    def forward(self, x):
        if x.dim() != self.ndim + 2:
            raise ValueError(f"UNet(ndim={self.ndim}) expects a tensor (N, C, {', '.join(_AXES[self.ndim])}); "
                             f"got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects {self.in_channels} input channel(s); got {x.shape[1]} "
                             f"(input shape {tuple(x.shape)}, channels on axis 1)")
        self.check_input_shape(x.shape[2:])
        skips = []
        for block, pool in zip(self.encoder, self.pools):
            skips.append(block(x))
            x = pool(skips[-1])
        x = self.bottleneck(x)
        for level in reversed(range(self.depth)):
            x = self.decoder[level](torch.cat([skips[level], self.upsamplers[level](x)], dim=1))
        return self.head(x)
