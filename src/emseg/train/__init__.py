"""Training: targets from labels, EM augmentation, losses, patch sampling and the resumable trainer."""

from .config import TrainConfig, load_config
from .trainer import TrainResult, make_target, train

__all__ = ["TrainConfig", "load_config", "train", "TrainResult", "make_target"]
