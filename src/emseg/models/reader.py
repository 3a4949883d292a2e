"""The one checkpoint reader: a checkpoint (or a shipped model's name) read once into what every stage
needs — its task and parameters, the activation of each output channel, its normalisation, voxel
size, model card and the post-processing defaults that follow from them.

Prediction, ``emseg segment`` and the model cards read models only through :func:`read_checkpoint`;
the file format itself is :mod:`emseg.models.checkpoint`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["CheckpointInfo", "PostprocessDefaults", "read_checkpoint", "postprocess_defaults"]


@dataclass(frozen=True)
class PostprocessDefaults:
    """How a model's output becomes instances unless the user says otherwise."""

    method: str
    params: dict
    offsets: list | None = None
    min_size: int = 0
    z_filter: int = 0
    tta: str | None = None


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says, read once (:func:`read_checkpoint`)."""

    path: str
    model_class: str
    init_args: dict
    extra: dict
    task: str | None
    task_params: dict
    activations: tuple
    normalization: object = None
    voxel_size: tuple | None = None
    card: dict | None = None
    config: dict = field(default_factory=dict)
    onnx: str | None = None
    """An ONNX file of this network with its activations inside (an exported package's or file), else None."""

    @property
    def context(self) -> int:
        """A 2.5D model's sections on each side of the one it predicts (its 2k+1 input channels); else 0."""
        if int(self.init_args.get("ndim", 2)) != 2:
            return 0
        return (int(self.init_args.get("in_channels", 1)) - 1) // 2

    @property
    def name(self):
        """The shipped model's name, or the checkpoint's path."""
        return (self.card or {}).get("name", self.path)

    @property
    def offsets(self):
        return self.task_params.get("offsets")

    def postprocess(self, objects=None) -> PostprocessDefaults:
        """The post-processing defaults; see :func:`postprocess_defaults`."""
        return postprocess_defaults(self.task, self.task_params, self.card, objects)


_CACHE: dict = {}


def read_checkpoint(model) -> CheckpointInfo:
    """Read checkpoint ``model`` (a path, or a shipped model's name) once per process while the file is unchanged.

    A bioimage.io package (``.zip``) or an ONNX file that ``emseg export`` wrote reads as the checkpoint it
    was exported from (:mod:`emseg.share.load`).

    Raises
    ------
    FileNotFoundError
        No such file, nor a shipped model of that name (the message lists them).
    ValueError
        The file is not an emseg checkpoint, is damaged, or names an unknown task.
    """
    from ..zoo import model_names, resolve_model

    path, card = resolve_model(model)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model {path}: no such checkpoint file, nor a shipped model ({', '.join(model_names())})")
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size, card is not None)
    if key not in _CACHE:
        _CACHE[key] = _read_exported(path) if path.lower().endswith((".zip", ".onnx")) else _read(path, card)
    return _CACHE[key]


def _read_exported(path):
    """A package or ONNX file of ``emseg export``: the checkpoint it carries, with its card and ONNX weights."""
    import dataclasses

    from ..share.load import onnx_header, package_files
    from .checkpoint import ModelHeader, _check_init_args

    if path.lower().endswith(".zip"):
        files = package_files(path)
        try:
            return dataclasses.replace(_read(files.checkpoint, files.card), onnx=files.onnx)
        except ValueError as e:  # name the package, not the file unpacked from it
            raise ValueError(f"model {path} (its emseg.safetensors): {e}") from None
    header = onnx_header(path)
    _check_init_args(header["init_args"], path)
    model = ModelHeader(header.get("model_class", "UNet"), header["init_args"], header.get("extra") or {})
    return dataclasses.replace(_read(path, header.get("card"), model), onnx=path)


def _read(path, card, header=None):
    from ..normalization import Normalization
    from ..tasks import get_task
    from .checkpoint import read_model_header

    header = header or read_model_header(path)
    extra = header.extra
    config = extra.get("config") or {}
    task, params = _task_of(extra, config, path)
    if task is not None:
        activations = get_task(task).channel_activations(params, config.get("loss"))
    else:  # a checkpoint that does not say what it predicts: probabilities on every channel
        activations = ("sigmoid",) * int(header.init_args.get("out_channels", 1))
    norm = extra.get("normalization")
    vs = extra.get("voxel_size")
    return CheckpointInfo(path, header.model_class, header.init_args, extra, task, params, activations,
                          Normalization(**norm) if norm else None, tuple(vs) if vs else None, card, config)


def _task_of(extra, config, path):
    """(task name, parameters) a checkpoint was trained for; checkpoints written before the registry
    name only their ``target`` (and ``offsets``/``n_classes`` in the config)."""
    from ..tasks import TASKS, task_params

    stored = extra.get("task")
    if isinstance(stored, dict) and "name" in stored:
        name, given = stored["name"], stored.get("params") or {}
    else:
        name = extra.get("target")
        if name is None:
            return None, {}
        given = {}
        if name == "affinities":
            given["offsets"] = extra.get("offsets") or config.get("offsets")
        if name == "onehot":
            given["n_classes"] = config.get("n_classes", 2)
    if name not in TASKS:
        raise ValueError(f"model {path}: trained for task {name!r}, which this emseg does not know "
                         f"(known: {', '.join(TASKS)}); update emseg")
    return name, task_params(name, given)


def postprocess_defaults(task, params=None, card=None, objects=None) -> PostprocessDefaults:
    """The post-processing a model calls for.

    A shipped model's card decides when no kind of ``objects`` is named. Otherwise the task decides
    the method (binary → "cc", BC → "bc", BCD → "bcd", boundary → "watershed", SDT → "sdt",
    affinities → "mws" with long-range offsets, else "agglomerate") and ``objects`` (one of
    :data:`emseg.tasks.OBJECTS`) adds its size filter and settings; for a model without a task,
    ``objects`` names the method.

    Examples
    --------
    >>> postprocess_defaults("bc", objects="mito")
    PostprocessDefaults(method='bc', params={}, offsets=None, min_size=200, z_filter=0, tta=None)
    """
    from ..instances.methods import METHODS
    from ..tasks import OBJECTS, get_task

    params = params or {}
    offsets = [list(o) for o in params["offsets"]] if task == "affinities" and params.get("offsets") else None
    post = (card or {}).get("postprocess")
    if post and objects is None:
        return PostprocessDefaults(post["method"], dict(post.get("params", {})), offsets,
                                   int(post.get("min_size", 0)), int(post.get("z_filter") or 0), post.get("tta"))
    if objects is not None and objects not in OBJECTS:
        raise ValueError(f"unknown kind of objects {objects!r}; choose one of {', '.join(OBJECTS)}")
    preset = OBJECTS.get(objects, {})
    method, method_params = get_task(task).method(params) if task is not None else (preset.get("method"), {})
    if method is None:
        raise ValueError(f"the model does not say what it predicts, so not how to make instances; pass a method "
                         f"({', '.join(METHODS)}) or a kind of objects ({', '.join(OBJECTS)})")
    method_params = {**method_params, **{k: v for k, v in preset.get("params", {}).items()
                                         if k in METHODS[method]["params"]}}
    return PostprocessDefaults(method, method_params, offsets, int(preset.get("min_size", 0)),
                               int(preset.get("z_filter", 0)))
