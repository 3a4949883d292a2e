"""The prediction configuration: one frozen dataclass whose fields are ``predict_blockwise``'s options."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError, check_device, check_choice, check_number, plain

__all__ = ["PredictConfig"]


def check_shape(name, v, minimum=1, optional=True):
    """``v`` as a tuple of ints >= ``minimum`` (None allowed when ``optional``)."""
    if v is None and optional:
        return None
    ok = isinstance(v, (tuple, list)) and len(v) > 0 and all(
        (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and x.is_integer()) for x in v)
    if not ok or min(v) < minimum:
        raise ConfigError(name, f"{name} must be a list of integers >= {minimum}, one per axis (zyx); "
                          f"got {plain(v)!r}")
    return tuple(int(x) for x in v)


def check_halo(name, v):
    """``"auto"``, an int >= 0 or one int >= 0 per axis."""
    if v == "auto" or v is None:
        return "auto"
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 0:
            raise ConfigError(name, f"{name} must be 'auto' or voxels >= 0 per axis; got {v!r}")
        return v
    return check_shape(name, v, minimum=0, optional=False)


@dataclass(frozen=True)
class PredictConfig:
    """How a volume is predicted (every field is part of the run's signature).

    ``block_shape``: write blocks, multiples of the network's input divisor and of the output's
    chunks (None: from the model and chunks); ``halo``: context read around each block, "auto" =
    the network's receptive field; ``tile_shape``: split each block's read region into
    Gaussian-blended tiles of this shape (for memory; None predicts each region at once, exactly);
    ``overlap`` of the tiles; ``tta``: None, "flips" or "d4", reduced by ``tta_reduce``
    ("mean"/"median"); ensembles reduced by ``ensemble_reduce``; ``dtype`` of the output
    ("float16", "float32", or "uint8" = round(255 p)); ``device``; ``normalization``: None (the
    model's own, also said "model"; refused when the raw's intensities are far from it), "data" (this volume's sampled
    1st-99th percentiles) or a dict/Normalization; ``batch_size`` of tiles; ``roi`` (a tuple of
    slices) and ``mask`` (an array-like at any lower resolution): only blocks that meet them are
    predicted, the rest stay 0; ``runtime``: "torch" or "onnx" (onnxruntime on the CPU,
    :func:`emseg.predict.as_predictor`).
    """

    block_shape: tuple | None = None
    halo: object = "auto"
    tile_shape: tuple | None = None
    overlap: float = 0.25
    tta: str | None = None
    tta_reduce: str = "mean"
    ensemble_reduce: str = "mean"
    dtype: str = "float16"
    device: str = "auto"
    normalization: object = None
    batch_size: int = 4
    roi: tuple | None = None
    mask: object = None
    runtime: str = "torch"

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "block_shape", check_shape("block_shape", self.block_shape))
        set_(self, "tile_shape", check_shape("tile_shape", self.tile_shape))
        set_(self, "halo", check_halo("halo", self.halo))
        set_(self, "overlap", check_number("overlap", self.overlap, float, (0, True), (1, False), "in [0, 1)"))
        set_(self, "batch_size", check_number("batch_size", self.batch_size, int, (1, True), None, "an integer >= 1"))
        tta = None if self.tta in (False, "none") else self.tta
        set_(self, "tta", check_choice("tta", tta, (None, "flips", "d4")))
        check_choice("tta_reduce", self.tta_reduce, ("mean", "median"))
        check_choice("ensemble_reduce", self.ensemble_reduce, ("mean", "median"))
        check_choice("dtype", self.dtype, ("float16", "float32", "uint8"))
        check_device("device", self.device)
        from .model import RUNTIMES

        check_choice("runtime", self.runtime, RUNTIMES)
        norm = self.normalization
        if norm == "model":  # the model's own, as None says
            set_(self, "normalization", None)
            norm = None
        if not (norm is None or norm == "data" or isinstance(norm, dict) or hasattr(norm, "as_dict")):
            raise ConfigError("normalization", f"normalization must be None (the model's), 'data' or a mapping with "
                              f"low and high; got {norm!r}")
        if self.roi is not None and not (isinstance(self.roi, tuple) and all(isinstance(s, slice) for s in self.roi)):
            raise ConfigError("roi", f"roi must be a tuple of slices (one per axis); got {self.roi!r}")
