"""Training targets from label arrays: foreground, one-hot classes, instance contours, the BC and
BCD targets of U3D-BC/NucMM, affinities (nearest and long range) and membrane maps.

Every function takes 2D ``(y, x)`` or 3D ``(z, y, x)`` integer labels (0 = background) and returns
a :class:`Target`: ``target`` and ``mask``, both float32 and channels first with the same shape,
ready for ``(loss(pred, target) * mask)``. ``mask`` is 0 wherever the target is undefined (voxels
of ``ignore_label``, voxels whose contour depends on them, affinities leaving the volume), and the
target is 0 wherever ``mask`` is 0.

The targets live in one module per idea: :mod:`~emseg.train.semantic_targets` (foreground,
classes), :mod:`~emseg.train.instance_targets` (contours, BC, BCD) and
:mod:`~emseg.train.boundary_targets` (affinities, membranes); what they share (the checks,
contours along chosen axes) in :mod:`~emseg.train.target_base`. Every one is importable from here.
"""

from .boundary_targets import affinities, boundary_target
from .instance_targets import bc_target, bcd_target, contour_target
from .semantic_targets import binary_target, one_hot_target
from .target_base import Target

__all__ = ["Target", "binary_target", "one_hot_target", "contour_target", "bc_target", "bcd_target",
           "affinities", "boundary_target"]
