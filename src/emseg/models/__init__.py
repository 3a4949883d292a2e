"""Networks for EM segmentation (imports torch): one configurable U-Net and pickle-free checkpoints.

``unet`` (:class:`UNet`, 2D/3D/anisotropic, and :func:`anisotropic_plan`), ``io`` (save and load
a model with its init arguments as one safetensors file).
"""

from .checkpoint import MODEL_CLASSES, ModelHeader, load_model, read_model_header, save_model
from .unet import UNet, anisotropic_plan

__all__ = ["UNet", "anisotropic_plan", "save_model", "load_model", "read_model_header", "ModelHeader",
           "MODEL_CLASSES"]
