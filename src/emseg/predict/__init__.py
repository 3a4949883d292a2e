"""Prediction at any scale: blockwise sliding-window inference with halo, blending, test-time
augmentation and ensembles, on threads or a Dask cluster, resumable block by block."""

from .blocks import PredictResult, plan_blocks, predict_blockwise
from .config import PredictConfig
from .model import Predictor, as_predictor
from .tiling import gaussian_weights, predict_region, tta_transforms

__all__ = ["predict_blockwise", "PredictConfig", "PredictResult", "plan_blocks", "Predictor", "as_predictor", "predict_region",
           "tta_transforms", "gaussian_weights"]
