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

import math

import torch
from torch import nn

__all__ = ["UNet", "anisotropic_plan"]

_AXES = {2: "yx", 3: "zyx"}
_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}
_OPTIONS = {"block": ("plain", "residual"), "norm": ("batch", "group", "instance", None),
            "activation": tuple(_ACTIVATIONS), "upsample": ("transposed", "nearest", "bilinear"),
            "bottleneck": ("plain", "aspp")}


def anisotropic_plan(voxel_size, depth):
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
    kernel_sizes : list of tuple of int
        ``depth + 1`` kernel sizes, one per level (the last is the bottleneck's).
    pool_sizes : list of tuple of int
        ``depth`` pool sizes.

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
    return kernel_sizes, pool_sizes


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


def _per_level(value, n, ndim, name, odd=False):
    """``value`` as ``n`` ndim-tuples: an int or flat ndim-tuple for all levels, else one entry per level."""
    flat = isinstance(value, int) or all(isinstance(v, int) for v in value)
    levels = [value] * n if flat else list(value)
    levels = [(v,) * ndim if isinstance(v, int) else tuple(v) for v in levels]
    if len(levels) != n or any(len(v) != ndim or min(v) < 1 or (odd and min(s % 2 for s in v) == 0)
                               for v in levels):
        kind = "odd positive" if odd else "positive"
        raise ValueError(f"{name} must be an int, {ndim} ints (every level) or {n} entries (one per level, "
                         f"each an int or {ndim} ints), all {kind}; got {value!r}")
    return [tuple(int(s) for s in v) for v in levels]


class UNet(nn.Module):
    """A U-Net for 2D, 3D or anisotropic data; the variants are parameters.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output (logits; no final activation).
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
        :func:`anisotropic_plan` derives both from a voxel size.
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

    Attributes
    ----------
    init_args : dict
        The constructor arguments, JSON-able and normalised: ``UNet(**model.init_args)``
        rebuilds the model.

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
    """

    def __init__(self, in_channels=1, out_channels=1, *, ndim=2, depth=4, features=32, kernel_sizes=3,
                 pool_sizes=2, block="plain", norm="batch", activation="relu", upsample="transposed",
                 bottleneck="plain", aspp_rates=(1, 2, 4)):
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3; got {ndim!r}")
        if int(depth) != depth or depth < 0:
            raise ValueError(f"depth must be a non-negative integer; got {depth!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        for name, value in (("block", block), ("norm", norm), ("activation", activation),
                            ("upsample", upsample), ("bottleneck", bottleneck)):
            if value not in _OPTIONS[name]:
                raise ValueError(f"{name} must be one of {_OPTIONS[name]}; got {value!r}")
        depth = int(depth)
        widths = [features * 2**i for i in range(depth + 1)] if isinstance(features, int) else list(features)
        if len(widths) != depth + 1 or not all(isinstance(w, int) and w > 0 for w in widths):
            raise ValueError(f"features must be a positive int or {depth + 1} positive ints; got {features!r}")
        aspp_rates = [int(r) for r in aspp_rates]
        if not aspp_rates or min(aspp_rates) < 1:
            raise ValueError(f"aspp_rates must be positive ints; got {aspp_rates!r}")
        self.kernel_sizes = _per_level(kernel_sizes, depth + 1, ndim, "kernel_sizes", odd=True)
        self.pool_sizes = _per_level(pool_sizes, depth, ndim, "pool_sizes")
        self.init_args = dict(in_channels=in_channels, out_channels=out_channels, ndim=ndim, depth=depth,
                              features=widths, kernel_sizes=[list(k) for k in self.kernel_sizes],
                              pool_sizes=[list(p) for p in self.pool_sizes], block=block, norm=norm,
                              activation=activation, upsample=upsample, bottleneck=bottleneck,
                              aspp_rates=aspp_rates)
        self.ndim, self.depth, self.in_channels, self.out_channels = ndim, depth, in_channels, out_channels
        Conv, Pool = getattr(nn, f"Conv{ndim}d"), getattr(nn, f"MaxPool{ndim}d")

        def conv_norm_act(c_in, c_out, kernel, dilation=1, act=True):
            dil = tuple(dilation if k > 1 else 1 for k in kernel)
            layers = [Conv(c_in, c_out, kernel, padding=tuple(k // 2 * d for k, d in zip(kernel, dil)),
                           dilation=dil, bias=norm is None)]
            if norm == "batch":
                layers.append(getattr(nn, f"BatchNorm{ndim}d")(c_out))
            elif norm == "group":
                layers.append(nn.GroupNorm(math.gcd(c_out, 8), c_out))
            elif norm == "instance":
                layers.append(getattr(nn, f"InstanceNorm{ndim}d")(c_out, affine=True))
            return nn.Sequential(*layers, _ACTIVATIONS[activation]()) if act else nn.Sequential(*layers)

        def make_block(c_in, c_out, kernel):
            if block == "plain":
                return nn.Sequential(conv_norm_act(c_in, c_out, kernel), conv_norm_act(c_out, c_out, kernel))
            body = nn.Sequential(conv_norm_act(c_in, c_out, kernel), conv_norm_act(c_out, c_out, kernel, act=False))
            shortcut = nn.Identity() if c_in == c_out else conv_norm_act(c_in, c_out, (1,) * ndim, act=False)
            return _Sum(body, shortcut, _ACTIVATIONS[activation]())

        inputs = [in_channels] + widths[:-1]
        self.encoder = nn.ModuleList(make_block(inputs[i], widths[i], self.kernel_sizes[i]) for i in range(depth))
        self.pools = nn.ModuleList(Pool(p, stride=p) for p in self.pool_sizes)
        if bottleneck == "plain":
            self.bottleneck = make_block(inputs[depth], widths[depth], self.kernel_sizes[depth])
        else:
            kernel, one = self.kernel_sizes[depth], (1,) * ndim
            branches = [conv_norm_act(inputs[depth], widths[depth], one)]
            branches += [conv_norm_act(inputs[depth], widths[depth], kernel, rate) for rate in aspp_rates]
            self.bottleneck = _Concat(branches, conv_norm_act(len(branches) * widths[depth], widths[depth], one))
        if upsample == "transposed":
            ConvT = getattr(nn, f"ConvTranspose{ndim}d")
            self.upsamplers = nn.ModuleList(ConvT(widths[i + 1], widths[i], p, stride=p)
                                            for i, p in enumerate(self.pool_sizes))
        else:
            mode = "nearest" if upsample == "nearest" else ("bilinear" if ndim == 2 else "trilinear")
            self.upsamplers = nn.ModuleList(
                nn.Sequential(nn.Upsample(scale_factor=p, mode=mode), Conv(widths[i + 1], widths[i], 1))
                for i, p in enumerate(self.pool_sizes))
        self.decoder = nn.ModuleList(make_block(2 * widths[i], widths[i], self.kernel_sizes[i]) for i in range(depth))
        self.head = Conv(widths[0], out_channels, 1)

    @classmethod
    def for_voxel_size(cls, voxel_size, in_channels=1, out_channels=1, *, depth=4, **kwargs):
        """A U-Net whose kernels and poolings follow :func:`anisotropic_plan` for ``voxel_size``.

        Examples
        --------
        >>> model = UNet.for_voxel_size((30, 6, 6), depth=3, features=4)
        >>> model.input_divisor, model.receptive_field
        ((2, 8, 8), (18, 100, 100))
        """
        kernel_sizes, pool_sizes = anisotropic_plan(voxel_size, depth)
        return cls(in_channels, out_channels, ndim=len(kernel_sizes[0]), depth=depth,
                   kernel_sizes=kernel_sizes, pool_sizes=pool_sizes, **kwargs)

    @classmethod
    def light2d(cls, in_channels=1, out_channels=1, **kwargs):
        """A small, fast 2D U-Net for CPU use: 8 base features, depth 4, bilinear upsampling.

        After the light U-Net of Casser et al., "Fast mitochondria detection for connectomics",
        MIDL 2020. Keyword arguments override the preset.
        """
        preset = dict(ndim=2, depth=4, features=8, upsample="bilinear", norm="batch")
        return cls(in_channels, out_channels, **{**preset, **kwargs})

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
