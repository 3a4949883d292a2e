"""Looking at volumes: neuroglancer served from this machine (``emseg view``)."""

from .web import layer_kind, view_volumes

__all__ = ["view_volumes", "layer_kind"]
