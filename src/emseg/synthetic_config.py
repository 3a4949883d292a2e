"""The options of :func:`emseg.synthetic.synthetic_em` as one frozen configuration."""

import math
import operator
from dataclasses import dataclass

import numpy as np

from .config import ConfigError, check_bool, check_number

__all__ = ["SyntheticConfig", "DEFECTS"]

DEFECTS = ("missing", "misaligned", "low_contrast")
"""The kinds of section defects, each with its ``KIND_sections`` field."""


@dataclass(frozen=True)
class SyntheticConfig:
    """The options of :func:`synthetic_em` (all but ``shape``); each field is also a keyword of it.

    Attributes
    ----------
    voxel_size : tuple of float, optional
        nm per axis of the shape; default ``(30, 6, 6)`` in 3D (serial-section TEM), ``(6, 6)`` in 2D.
    n_cells : int, optional
        Number of cell seeds, spread over the volume grown by half a cell on each side; default
        from ``cell_size_nm``. Seeds that win no voxel are dropped, so ``N <= n_cells``.
    mito_fraction : float
        Target fraction of voxels in mitochondria, in [0, 1); met to about 25% up to ~0.2
        (tiny images hold fewer, as a mitochondrion is 100-220 nm thick).
    noise : float
        Noise standard deviation as a fraction of the 0..255 range: half of the variance is
        constant, half grows with the signal (shot noise); neighbouring pixels are correlated.
    blur : float
        Gaussian sigma in in-plane voxels; along z it is ``blur * y_size / z_size``.
    defects : bool
        Damage ``max(1, z // 32)`` random inner sections of each kind (3D only; fewer when the
        stack is too short), for every kind not given explicitly below; all distinct.
    seed : int or sequence of int
        Seed for ``np.random.default_rng``; equal arguments give equal outputs (None: fresh
        entropy, another image every time).
    cell_size_nm : float
        Typical cell diameter. When z is at least twice as coarse as y/x (serial sections cut
        across neurites), cells are also twice as long along z.
    membrane_width_nm : float
        Width of the dark membrane band, and of ``membranes``; below ``cell_size_nm / 4``.
    missing_sections, misaligned_sections, low_contrast_sections : sequence of int, optional
        Sections replaced by a flat noisy slice (dark, grey or bright); shifted by 3-8 pixels in
        y and x (that section alone, edges repeated); or left with 20-35% of their contrast.

    A bad value raises :class:`~emseg.config.ConfigError` (a ValueError) naming the field; what
    depends on the shape is checked by :func:`synthetic_em`.

    Examples
    --------
    >>> SyntheticConfig(noise=0, missing_sections=[2])
    ... # doctest: +ELLIPSIS
    SyntheticConfig(voxel_size=None, n_cells=None, mito_fraction=0.08, noise=0.0, ..., missing_sections=(2,), ...)
    >>> SyntheticConfig(blur=-1)
    Traceback (most recent call last):
    ...
    emseg.config.ConfigError: blur must be a number >= 0; got -1.0
    """

    voxel_size: tuple | None = None
    n_cells: int | None = None
    mito_fraction: float = 0.08
    noise: float = 0.08
    blur: float = 1.0
    defects: bool = False
    seed: int | tuple | None = 0
    cell_size_nm: float = 300.0
    membrane_width_nm: float = 15.0
    missing_sections: tuple | None = None
    misaligned_sections: tuple | None = None
    low_contrast_sections: tuple | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        for name, (kind, low, high, text) in _RANGES.items():
            value = getattr(self, name)
            value = value.item() if isinstance(value, np.generic) else value  # numpy scalars as Python ones
            set_(self, name, check_number(name, value, kind, low, high, text, optional=name == "n_cells"))
        if not self.membrane_width_nm < self.cell_size_nm / 4:
            raise ConfigError("membrane_width_nm", f"membrane_width_nm must be < cell_size_nm / 4 = "
                              f"{self.cell_size_nm / 4:g}; got {self.membrane_width_nm!r}")
        if self.voxel_size is not None:
            allowed = "None or 2 or 3 positive numbers (nm, zyx)"
            vs = _sequence("voxel_size", self.voxel_size, float, allowed)
            if len(vs) not in (2, 3) or not all(0 < v < math.inf for v in vs):
                raise ConfigError("voxel_size", f"voxel_size must be {allowed}; got {self.voxel_size!r}")
            set_(self, "voxel_size", vs)
        defects = bool(self.defects) if isinstance(self.defects, np.bool_) else self.defects
        set_(self, "defects", check_bool("defects", defects))
        if self.seed is not None:
            set_(self, "seed", _seed(self.seed))
        for kind in DEFECTS:
            name = f"{kind}_sections"
            if getattr(self, name) is not None:
                set_(self, name, _sequence(name, getattr(self, name), operator.index, "a sequence of section indices"))


_RANGES = {"n_cells": (int, (1, True), None, "None or a positive int"),  # field: kind, low, high, allowed
           "mito_fraction": (float, (0, True), (1, False), "a number in [0, 1)"),
           "noise": (float, (0, True), (math.inf, False), "a number >= 0"),
           "blur": (float, (0, True), (math.inf, False), "a number >= 0"),
           "cell_size_nm": (float, (0, False), (math.inf, False), "a number > 0"),
           "membrane_width_nm": (float, (0, False), (math.inf, False), "a number > 0")}


def _seed(seed):
    """``seed`` as an int or a tuple of ints, all >= 0 (what ``np.random.default_rng`` takes)."""
    many = np.ndim(seed) > 0
    try:
        ints = [operator.index(s) for s in (seed if many else [seed])]
    except TypeError:
        ints = [-1]
    if min(ints, default=-1) < 0:
        raise ConfigError("seed", f"seed must be None, an integer >= 0 or a sequence of them; got {seed!r}")
    return tuple(ints) if many else ints[0]


def _sequence(name, values, convert, allowed):
    """``values`` as a tuple of ``convert(value)``; a ConfigError naming ``name`` otherwise."""
    try:
        if isinstance(values, str):
            raise TypeError
        return tuple(convert(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(name, f"{name} must be {allowed}; got {values!r}") from None
