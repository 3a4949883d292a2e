"""Volume metadata: voxel size, offset and axis order, in one small frozen dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["VolumeMeta", "parse_voxel_size", "UNIT_TO_NM"]

# Length units as spelled by OME-NGFF, NIfTI, ImageJ and N5 viewers, in nanometres.
UNIT_TO_NM = {
    "nm": 1.0, "nanometer": 1.0, "nanometre": 1.0,
    "um": 1e3, "µm": 1e3, "\u03bcm": 1e3, "micron": 1e3, "micrometer": 1e3, "micrometre": 1e3,
    "mm": 1e6, "millimeter": 1e6, "millimetre": 1e6,
    "m": 1e9, "meter": 1e9, "metre": 1e9,
    "a": 0.1, "å": 0.1, "angstrom": 0.1, "ångström": 0.1,
    "pm": 1e-3, "picometer": 1e-3,
}


@dataclass(frozen=True)
class VolumeMeta:
    """Where a volume's voxels sit in the world.

    Parameters
    ----------
    axes : str
        Axis names of the array, slowest first: ``"zyx"``, ``"yx"``, ``"czyx"`` (channels first).
    voxel_size : tuple of float or None
        Nanometres per voxel along each *spatial* axis (the letters z, y, x of ``axes``), or None
        when the file does not say.
    offset : tuple of float or None
        World position of voxel (0, 0, 0) in nanometres, spatial axes only.

    Examples
    --------
    >>> m = VolumeMeta("zyx", (50.0, 4.0, 4.0))
    >>> m.spatial_axes, m.voxel_size
    ('zyx', (50.0, 4.0, 4.0))
    """

    axes: str = "zyx"
    voxel_size: tuple[float, ...] | None = None
    offset: tuple[float, ...] | None = None

    def __post_init__(self):
        n = len(self.spatial_axes)
        if self.voxel_size is not None:
            object.__setattr__(self, "voxel_size", parse_voxel_size(self.voxel_size, n))
        if self.offset is not None:
            object.__setattr__(self, "offset", _parse_numbers(self.offset, n, "offset", positive=False))

    @property
    def spatial_axes(self) -> str:
        return "".join(a for a in self.axes if a in "zyx")


def _parse_numbers(value, n, name, positive):
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").replace(" ", ",").split(",") if p]
    elif isinstance(value, (int, float)):
        parts = [value]
    else:
        try:
            parts = list(value)
        except TypeError:
            parts = [value]
    try:
        numbers = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {n} numbers (e.g. '30,6,6' in nm, zyx); got {value!r}") from None
    if len(numbers) != n:
        raise ValueError(f"{name} must be {n} numbers, one per spatial axis (zyx order, nm); "
                         f"got {len(numbers)}: {value!r}")
    bad = [v for v in numbers if not math.isfinite(v) or (positive and v <= 0)]
    if bad:
        kind = "positive finite" if positive else "finite"
        raise ValueError(f"{name} must be {n} {kind} numbers (nm, zyx); got {value!r}")
    return numbers


def parse_voxel_size(value, ndim: int = 3) -> tuple[float, ...]:
    """Check and normalise a voxel size: ``ndim`` positive numbers in nm, zyx order.

    Accepts a sequence or a string such as ``"30,6,6"``.

    Examples
    --------
    >>> parse_voxel_size("50,4,4")
    (50.0, 4.0, 4.0)
    >>> parse_voxel_size([4, 4], ndim=2)
    (4.0, 4.0)
    >>> parse_voxel_size((4, -1, 4))
    Traceback (most recent call last):
    ...
    ValueError: voxel_size must be 3 positive finite numbers (nm, zyx); got (4, -1, 4)
    """
    return _parse_numbers(value, ndim, "voxel_size", positive=True)


def to_nm(value: float, unit: str | None) -> float | None:
    """Convert a length in ``unit`` to nanometres; None for an unknown unit."""
    if unit is None:
        return None
    factor = UNIT_TO_NM.get(str(unit).strip().lower())
    return None if factor is None else float(value) * factor


def plausible_voxel_size(voxel_size) -> tuple[float, ...] | None:
    """Return the voxel size if every value lies between 0.01 nm and 100 µm, else None.

    Headers often hold placeholders (1 mm in NIfTI, 1/72 inch in TIFF, garbage); an EM voxel
    outside this range is certainly not one, so it is reported as unknown instead.
    """
    if voxel_size is None:
        return None
    vs = tuple(float(f"{float(v):.7g}") for v in voxel_size)  # drop float32 noise
    return vs if all(1e-2 <= v <= 1e5 for v in vs) else None
