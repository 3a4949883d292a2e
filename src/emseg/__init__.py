"""emseg: deep-learning segmentation of large-scale electron microscopy.

Subpackages: ``io`` (read/write EM volumes lazily in every format), ``data`` (synthetic EM and
the field's datasets), ``cli`` (the ``emseg`` command).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
