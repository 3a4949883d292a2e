"""Models that travel: export to ONNX, TorchScript and bioimage.io packages, and read them back.

``network`` (the exported network and its standalone source), ``export`` (bare ONNX/TorchScript),
``bioimageio`` (the package), ``load`` (emseg's reader of exported files).
"""

from .export import FORMATS, export_model

__all__ = ["FORMATS", "export_model"]
