"""Workflows that chain the stages: raw EM → prediction → instances (:func:`segment_volume`, ``emseg segment``)
and the built-in example (:func:`run_demo`, ``emseg demo``)."""

__all__ = ["segment_volume", "run_demo"]


def __getattr__(name):
    if name == "segment_volume":
        from .segment import segment_volume

        return segment_volume
    if name == "run_demo":
        from .demo import run_demo

        return run_demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
