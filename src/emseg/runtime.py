"""Where and how networks run: the torch device, the fast memory layout, native bfloat16.

Shared by training and prediction, so neither imports the other.
"""

from __future__ import annotations

__all__ = ["torch_device", "memory_format", "cpu_bf16"]


def torch_device(name):
    """The torch device for "auto", "cpu", "cuda" or "cuda:N"; a clear error when CUDA is asked for but absent."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but no CUDA device is available; use --device cpu")
    return torch.device(name)


def memory_format(ndim):
    """channels-last for 2D/3D convolutions (NHWC/NDHWC): the fast layout of oneDNN and cuDNN."""
    import torch

    return torch.channels_last if ndim == 2 else torch.channels_last_3d


def cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (otherwise autocast to bfloat16 would be slower)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
