"""emseg: deep-learning segmentation of large-scale electron microscopy.

Subpackages, one per stage of the data flow (``ARCHITECTURE.md``): ``io`` (read/write EM volumes
lazily in every format), ``tasks`` (what a network's output means), ``train`` (targets, augmentation,
the trainer), ``fit`` (a training run planned from the data, post-processing tuned: ``emseg fit``),
``models`` (the U-Net, checkpoints), ``predict`` (blockwise inference), ``instances``
(post-processing into instances), ``metrics`` (the field's scores), ``blockwise`` (block geometry
and execution), ``workflows`` (segment a volume, the demo), ``zoo`` (shipped models), ``datasets``
(public EM datasets: registry and fetcher), ``share`` (exported models: bioimage.io, ONNX,
TorchScript), ``measure`` (per-object tables), ``view`` (neuroglancer, napari, meshes), ``cli`` (the ``emseg`` command).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
