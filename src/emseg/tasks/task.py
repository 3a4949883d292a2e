"""The :class:`Task` record of the registry (:mod:`emseg.tasks`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Task", "ACTIVATIONS"]

ACTIVATIONS = ("sigmoid", "clip")
"""Per-channel activations at inference: ``sigmoid`` (a probability) or ``clip`` to [0, 1] (a regressed value)."""


@dataclass(frozen=True)
class Task:
    """One training target and everything that follows from it (see the module's docstring).

    Every callable takes the task's parameters (a dict: :attr:`params` updated by the config);
    ``target(labels, params, voxel_size, ignore_label)`` returns an
    :class:`emseg.train.targets.Target`; ``activations(params, loss)`` one name of
    :data:`ACTIVATIONS` per channel; ``losses(params, loss)`` a mapping loss name → channels, or
    None for the configured loss on every channel; ``method(params)`` the default post-processing
    ``(method, method_params)``. ``loss``, when given, replaces the configured loss entirely:
    ``loss(logits, target, mask)`` on torch tensors.
    """

    name: str
    doc: str
    channels: Callable
    target: Callable
    method: Callable
    metrics: str
    params: dict = field(default_factory=dict)
    activations: Callable = None
    losses: Callable = None
    loss: Callable = None
    score: str = "loss"
    """``iou``: the foreground IoU of channel 0 (> 0.5) on the validation patches; ``loss``: the lowest loss."""
    instances: bool = False
    """The target is made from instance ids; labels that are a 0/1 mask give their connected components."""
    check: Callable = None
    """``check(params)`` raises ValueError for a parameter out of range (called when a config is built)."""
    methods: dict = field(default_factory=dict)
    """Post-processing methods this task brings (name → entry of :data:`emseg.instances.METHODS`)."""

    def channel_activations(self, params, loss=None):
        if self.activations is None:
            return ("sigmoid",) * self.channels(params)
        return tuple(self.activations(params, loss))

    def channel_losses(self, params, loss):
        return None if self.losses is None else self.losses(params, loss)
