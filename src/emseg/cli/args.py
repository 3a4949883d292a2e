"""Argument types of the ``emseg`` command: each turns one command-line string into a value or says why not."""

from __future__ import annotations

import argparse

__all__ = ["ints", "positive_float", "voxel_size", "halo", "positive_int", "nonnegative_int", "sections", "params"]


def ints(text, minimum=1):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64,64; got {text!r}") from None
    if any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"expected integers of at least {minimum}; got {text!r}")
    return values


def _finite_float(text, ok, what):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if value != value or value == float("inf") or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}; got {text!r}")
    return value


def positive_float(text):
    return _finite_float(text, lambda v: v > 0, "a positive number")


def nonnegative_float(text):
    return _finite_float(text, lambda v: v >= 0, "a number >= 0")


def port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number; got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535 (0: a free one); got {text!r}")
    return value


def voxel_size(text):
    from ..io.meta import parse_voxel_size

    parts = text.split(",")
    try:
        return parse_voxel_size(parts, ndim=len(parts) if len(parts) in (2, 3) else 3)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def halo(text):
    """'auto' or 0 or more voxels per axis."""
    return text if text == "auto" else ints(text, minimum=0)


def _int_at_least(text, minimum):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {minimum} or more; got {text!r}")
    return value


def positive_int(text):
    return _int_at_least(text, 1)


def nonnegative_int(text):
    return _int_at_least(text, 0)


def sections(text):
    """Distinct z indices >= 0, comma-separated: 12,40,77."""
    values = ints(text, minimum=0)
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"a z section is listed twice in {text!r}")
    return tuple(sorted(values))


def params(items):
    """``key=value`` pairs; values parsed as YAML scalars (numbers, true/false, null, lists)."""
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--param expects key=value; got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out
