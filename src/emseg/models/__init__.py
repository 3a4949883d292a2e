"""Networks for EM segmentation (imports torch): one configurable U-Net and pickle-free checkpoints.

``unet`` (:class:`UNet`, 2D/3D/anisotropic, and :func:`anisotropic_plan`), ``unet_config``
(:class:`UNetConfig`, its architecture), ``checkpoint`` (save and load a model with its init
arguments as one safetensors file), ``reader`` (what a checkpoint says about its task).
"""

from .checkpoint import MODEL_CLASSES, ModelHeader, load_model, read_model_header, save_model
from .unet import AnisotropicPlan, UNet, UNetConfig, anisotropic_plan

__all__ = ["UNet", "UNetConfig", "anisotropic_plan", "AnisotropicPlan", "save_model", "load_model",
           "read_model_header", "ModelHeader", "MODEL_CLASSES"]
