"""The task registry: what a network's output means, in one place.

A task is one training target. Its entry says how many channels the network outputs, how the
target and its validity mask are made from labels, which activation each channel gets at
inference (so the stored prediction is a probability map in [0, 1]), the loss of each channel,
the default post-processing method and its parameters, the metric set that scores the result
(:data:`emseg.metrics.METRIC_SETS`) and the validation score training keeps the best model by.
Training, prediction, instances, evaluation, the demo, the accuracy benchmark and the model cards
all read it; a checkpoint stores the task's name and parameters. A new target is one entry here
and its own module (see :mod:`emseg.tasks.sdt`).

Nothing here imports torch or the image libraries; the functions an entry points to import what
they need when called.

Examples
--------
>>> get_task("bc").channels({})
2
>>> get_task("bcd").activations({}, "bce_dice")
('sigmoid', 'sigmoid', 'clip')
>>> get_task("affinities").method({"offsets": [[-1, 0, 0], [0, -9, 0]]})
('mws', {})
"""

from __future__ import annotations

from . import sdt
from .task import ACTIVATIONS, Task

__all__ = ["Task", "TASKS", "OBJECTS", "get_task", "task_params", "metric_set", "ACTIVATIONS"]

def _targets():
    from ..train import targets

    return targets


def _offsets(params, ndim):
    return [list(o)[-ndim:] for o in params["offsets"]]


def _check_convention(params):
    if params["convention"] not in ("isbi", "instances"):
        raise ValueError(f"convention must be isbi (0 = membrane) or instances (boundaries between ids); got "
                         f"{params['convention']!r}")


def _affinity_method(params):
    long_range = any(max(abs(v) for v in o) > 1 for o in params["offsets"])
    return ("mws" if long_range else "agglomerate"), {}


TASKS = {t.name: t for t in (
    Task("binary", "foreground mask (semantic segmentation of one class)",
         channels=lambda p: 1, target=lambda lab, p, vs, ign: _targets().binary_target(lab, ignore_label=ign),
         method=lambda p: ("cc", {}), metrics="semantic", score="iou"),
    Task("onehot", "one channel per class (semantic segmentation of several classes)",
         channels=lambda p: int(p["n_classes"]), params={"n_classes": 2},
         target=lambda lab, p, vs, ign: _targets().one_hot_target(lab, int(p["n_classes"]), ignore_label=ign),
         method=lambda p: ("cc", {"channel": 1}), metrics="semantic"),
    Task("bc", "foreground + instance contour (U3D-BC, Wei et al. 2020)",
         channels=lambda p: 2, target=lambda lab, p, vs, ign: _targets().bc_target(lab, voxel_size=vs, ignore_label=ign),
         method=lambda p: ("bc", {}), metrics="instance", instances=True),
    Task("bcd", "foreground + contour + normalised distance (U3D-BCD, Lin et al. 2021)",
         channels=lambda p: 3,
         target=lambda lab, p, vs, ign: _targets().bcd_target(lab, voxel_size=vs, ignore_label=ign),
         # the distance channel is regressed (MSE) and clipped; a BCD model trained with MSE everywhere
         # regressed all three channels on probabilities' scale and gets a sigmoid on each (as it always did)
         activations=lambda p, loss: ("sigmoid",) * 3 if loss == "mse" else ("sigmoid", "sigmoid", "clip"),
         losses=lambda p, loss: None if loss == "mse" else {"bce_dice": [0, 1], "mse": [2]},
         method=lambda p: ("bcd", {}), metrics="instance", instances=True),
    Task("affinities", "affinities to neighbours at the given offsets (Lee et al. 2017; long range for the "
         "mutex watershed)", channels=lambda p: len(p["offsets"]),
         params={"offsets": ((-1, 0, 0), (0, -1, 0), (0, 0, -1))},
         target=lambda lab, p, vs, ign: _targets().affinities(lab, _offsets(p, lab.ndim), ignore_label=ign),
         method=_affinity_method, metrics="neurons"),
    Task("boundary", "membrane map: from ISBI 2012 labels (0 = membrane; convention isbi) or the boundaries "
         "between object ids (convention instances)", channels=lambda p: 1, params={"convention": "isbi"},
         target=lambda lab, p, vs, ign: _targets().boundary_target(lab, convention=p["convention"], ignore_label=ign),
         method=lambda p: ("watershed", {}), metrics="membranes", score="iou", check=_check_convention),
    sdt.TASK,
)}
"""Every training target by name."""

OBJECTS = {
    "mito": dict(method="cc", min_size=200),
    "nuclei": dict(method="bcd", min_size=1000),
    "neurons": dict(method="agglomerate", min_size=50),
    "membranes": dict(method="watershed", params=dict(per_section=True), min_size=20),
}
"""Settings for a kind of object (``emseg segment --objects``): a size filter and method settings. The
method itself follows the model's task; ``method`` here is used only when the task does not say."""


def get_task(name) -> Task:
    """The registry entry ``name``; an unknown name is refused listing the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def metric_set(name, params=None) -> str:
    """How task ``name``'s segmentations are scored (a set of :data:`emseg.metrics.METRIC_SETS`): the
    task's own, except a membrane map learned from object ids (``boundary``, ``convention:
    instances``), whose watershed gives those objects again: scored as neurons (VOI).

    Examples
    --------
    >>> metric_set("boundary"), metric_set("boundary", {"convention": "instances"}), metric_set("bc")
    ('membranes', 'neurons', 'instance')
    """
    if name == "boundary" and (params or {}).get("convention") == "instances":
        return "neurons"
    return get_task(name).metrics


def task_params(name, given=None) -> dict:
    """The parameters of task ``name``: its defaults updated by ``given``; an unknown key is refused.

    Examples
    --------
    >>> task_params("onehot", {"n_classes": 4})
    {'n_classes': 4}
    >>> task_params("bc", {"n_classes": 4})
    Traceback (most recent call last):
    ...
    ValueError: task 'bc' takes no parameter n_classes; its parameters: none
    """
    task = get_task(name)
    given = dict(given or {})
    unknown = sorted(set(given) - set(task.params))
    if unknown:
        raise ValueError(f"task {name!r} takes no parameter {', '.join(unknown)}; its parameters: "
                         f"{', '.join(task.params) or 'none'}")
    params = {**task.params, **given}
    if task.check is not None:
        task.check(params)
    return params
