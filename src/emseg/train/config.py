"""The training configuration: one frozen dataclass; YAML files and ``--set key=value`` only fill it.

Every field is checked when the config is built (type and range), so a bad value fails at once
with one line naming the key, the file or ``--set`` it came from, and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from ..config import ConfigError, check_bool, check_device, check_number, fill, plain as _plain

__all__ = ["TrainConfig", "load_config", "ConfigError", "RESUMABLE_FIELDS"]

NORMALIZATIONS = ("percentile", "fixed", "none")
from .finetune import FREEZE  # noqa: E402 - these modules import torch only inside their functions
from .pretrain import PRETRAIN  # noqa: E402
from .semi import SEMI  # noqa: E402
LOSSES = ("bce", "dice", "bce_dice", "mse", "l1")  # = emseg.train.losses.LOSSES (kept here: no torch import)
RESUMABLE_FIELDS = ("steps", "max_minutes", "val_every", "early_stopping", "device", "threads", "out_dir",
                    "resume", "overwrite")
"""Fields a resumed run may change; every other field is part of the run's signature."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; stored in every checkpoint.

    Data: ``raw``/``labels`` paths (any format emseg reads, ``file.h5:key``), a validation part
    split by region (``val_roi`` "z0:z1" or the last ``val_fraction`` of z), the ``target``: a task
    of :data:`emseg.tasks.TASKS` (``binary``, ``onehot`` with ``n_classes``, ``bc``, ``bcd``,
    ``affinities`` with ``offsets``, ``boundary`` for ISBI-style membrane labels, ``sdt``) and its
    other parameters in ``target_params`` (e.g. ``{scale: 40}`` for ``sdt``), ``patch_shape`` (2 numbers: a 2D model on sections; 3: 3D),
    ``context`` (2D on a volume: the k sections above and below as extra input channels, 2.5D).
    Sparse or partial labels (:mod:`emseg.train.sparse`): ``sections`` lists the labelled z
    indices (the others are unknown and never read), ``label_mask`` one volume per labels volume
    (nonzero where labels are known: strokes, a few objects per section), ``ignore_label`` a value
    that means unknown and ``background_label`` a painted value that means background; unknown
    voxels give no loss, nor the contours and affinities that touch them.
    Augmentation: ``augment`` is true (the defaults of :class:`~emseg.train.augment.Augmenter`),
    false (none) or a mapping that changes them, e.g. ``{flip: true, rotate90: false, elastic: 0,
    missing_section: {p: 0.1, n_sections: 2}}``: ``flip``, ``rotate90`` (true, false, yx, zyx) and
    per transform a probability or ``{p: ..., its arguments}``
    (:func:`~emseg.train.augment.check_augment`); 90° rotations never mix z with y/x on
    anisotropic voxels. Model: ``model`` holds UNet keyword arguments (``preset: light2d`` for the
    small 2D net); ``init`` starts from the weights of a shipped model (its name) or a checkpoint,
    loading every tensor whose name and shape match (a new output head otherwise); fine-tuning
    (:mod:`emseg.train.finetune`): ``freeze`` (none, encoder, all_but_head), ``init_lr_scale``
    (the loaded tensors' learning rate as a fraction of ``lr``), ``adabn_batches`` (BatchNorm
    statistics re-estimated on that many training batches before the first step; 0: off). The
    intensity normalisation is always fitted on the new data. Semi-supervised (:mod:`emseg.train.semi`):
    ``semi: mean_teacher`` adds a consistency loss on unlabelled patches (of the training region, or
    of the ``unlabelled`` raw volumes) towards an EMA teacher (``ema_decay``), on voxels where the
    teacher's probability passes ``confidence``, weighted by ``consistency_weight`` ramped up over
    the first ``consistency_rampup`` of the run; with ``confidence_start`` the threshold is scheduled,
    moving from it to ``confidence`` over that same part of the run. Without ``raw``/``labels`` (only ``unlabelled``
    volumes and an ``init`` model) the run adapts the model to them without labels: the consistency
    loss alone, BatchNorm statistics re-estimated on them first (``adabn_batches``). ``pretrain:
    masked`` (:mod:`emseg.train.pretrain`, ``emseg pretrain``) learns from ``unlabelled`` volumes alone to
    restore masked blocks of their patches; the result starts other runs as their ``init``.
    Optimisation: AdamW with ``lr``, ``weight_decay``, linear warm-up then cosine decay over
    ``steps``; mixed precision when ``amp`` (float16 on CUDA, bfloat16 on CPUs that compute it
    natively). Run: ``out_dir`` gets ``latest``/``best`` checkpoints, ``log.csv`` and
    ``run.json`` (the run's signature); with ``resume`` a rerun of the same run continues exactly
    where ``latest`` stopped (only :data:`RESUMABLE_FIELDS` may change), a different run is
    refused; ``overwrite`` deletes the trainer's own files in ``out_dir`` and starts over.
    """

    raw: tuple = ()
    labels: tuple = ()
    val_fraction: float = 0.1
    val_roi: str | None = None
    target: str = "binary"
    offsets: tuple = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))
    n_classes: int = 2
    target_params: dict = field(default_factory=dict)
    ignore_label: int | None = None
    sections: tuple | None = None
    label_mask: tuple = ()
    background_label: int | None = None
    patch_shape: tuple = (256, 256)
    context: int = 0
    batch_size: int = 4
    foreground_fraction: float = 0.5
    normalization: str = "percentile"
    voxel_size: tuple | None = None
    augment: bool | dict = True
    model: dict = field(default_factory=dict)
    init: str | None = None
    freeze: str = "none"
    semi: str = "none"
    pretrain: str = "none"
    unlabelled: tuple = ()
    ema_decay: float = 0.99
    consistency_weight: float = 1.0
    consistency_rampup: float = 0.2
    confidence: float = 0.8
    confidence_start: float | None = None
    init_lr_scale: float = 1.0
    adabn_batches: int = 0
    loss: str = "bce_dice"
    pos_weight: float | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    steps: int = 2000
    warmup_steps: int = 50
    val_every: int = 200
    val_patches: int = 16
    early_stopping: int = 0
    max_minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    amp: bool = True
    out_dir: str = "runs/train"
    resume: bool = True
    overwrite: bool = False

    def __post_init__(self):
        def set_(name, v):  # a frozen dataclass
            object.__setattr__(self, name, v)

        for name, (kind, low, high, text) in _NUMBERS.items():
            v = getattr(self, name)
            if v is None and name in _OPTIONAL:
                continue
            set_(name, check_number(name, v, kind, low, high, text))
        for name in ("amp", "resume", "overwrite"):
            check_bool(name, getattr(self, name))
        from ..tasks import TASKS, task_params

        for name, options in (("target", tuple(TASKS)), ("normalization", NORMALIZATIONS), ("loss", LOSSES),
                              ("freeze", FREEZE), ("semi", SEMI), ("pretrain", PRETRAIN)):
            if getattr(self, name) not in options:
                raise ConfigError(name, f"{name} must be one of {options}; got {getattr(self, name)!r}")
        for name in ("raw", "labels"):
            v = getattr(self, name)
            v = (v,) if isinstance(v, (str, os.PathLike)) else v
            if not isinstance(v, (tuple, list)) or not all(isinstance(p, (str, os.PathLike)) and str(p) for p in v):
                raise ConfigError(name, f"{name} must be a path or a list of paths; got {v!r}")
            set_(name, tuple(os.fspath(p) for p in v))
        if len(self.raw) != len(self.labels):
            raise ConfigError("labels", f"raw and labels must list the same number of volumes; got {len(self.raw)} "
                              f"and {len(self.labels)}")
        _check_sparse(self, set_)
        set_("patch_shape", _ints("patch_shape", self.patch_shape, (2, 3), "2 or 3 positive ints", positive=True))
        if self.context and len(self.patch_shape) != 2:
            raise ConfigError("context", f"context {self.context} (neighbouring sections as channels, 2.5D) needs a 2D "
                              f"patch_shape; got {list(self.patch_shape)} (a 3D network sees its sections already)")
        if self.context and self.pretrain != "none":
            raise ConfigError("context", f"context {self.context}: pretrain {self.pretrain} learns single sections; "
                              "pretrain with context 0 and fine-tune the result with context (its first layer is new)")
        if not isinstance(self.offsets, (tuple, list)) or not self.offsets:
            raise ConfigError("offsets", f"offsets must be a list of offsets like [-1, 0, 0]; got {self.offsets!r}")
        offsets = tuple(_ints("offsets", o, (2, 3), "lists of 2 or 3 ints") for o in self.offsets)
        if any(not any(o) for o in offsets):
            raise ConfigError("offsets", f"offsets must not hold the zero offset; got {_plain(offsets)}")
        set_("offsets", offsets)
        if not isinstance(self.target_params, dict):
            raise ConfigError("target_params", f"target_params must be a mapping of the task's parameters; got "
                              f"{self.target_params!r}")
        try:
            task_params(self.target, {**self._from_fields(), **self.target_params})
        except ValueError as err:
            raise ConfigError("target_params", f"target_params: {err}") from None
        if self.voxel_size is not None:
            vs = self.voxel_size
            if not isinstance(vs, (tuple, list)) or len(vs) not in (2, 3) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in vs):
                raise ConfigError("voxel_size", f"voxel_size must be 2 or 3 positive numbers (nm); got {vs!r}")
            set_("voxel_size", tuple(float(v) for v in vs))
        if self.val_roi is not None:
            check_val_roi(self.val_roi)
        from .augment import check_augment  # numpy and scipy only; here, so that importing emseg stays fast

        ndim = len(self.patch_shape)
        known = self.voxel_size is not None and len(self.voxel_size) >= ndim
        set_("augment", check_augment(self.augment, self.voxel_size[-ndim:] if known else None))
        if not isinstance(self.model, dict) or not all(isinstance(k, str) for k in self.model):
            raise ConfigError("model", f"model must be a mapping of UNet arguments like {{features: 8}}; "
                              f"got {self.model!r}")
        if self.init is not None and (not isinstance(self.init, (str, os.PathLike)) or not str(self.init)):
            raise ConfigError("init", f"init must be a shipped model's name or a checkpoint path; got {self.init!r}")
        if self.init is not None:
            set_("init", os.fspath(self.init))
        if self.init is None and (self.freeze != "none" or self.init_lr_scale != 1.0):
            key = "freeze" if self.freeze != "none" else "init_lr_scale"
            raise ConfigError(key, f"{key} applies to the weights of init, but init is not set; give init (a shipped "
                              f"model or a checkpoint) or leave {key} at its default")
        check_device("device", self.device)
        if not isinstance(self.out_dir, (str, os.PathLike)) or not str(self.out_dir):
            raise ConfigError("out_dir", f"out_dir must be a folder path; got {self.out_dir!r}")
        set_("out_dir", os.fspath(self.out_dir))

    def _from_fields(self):
        from ..tasks import get_task

        names = get_task(self.target).params
        return {k: getattr(self, k) for k in ("offsets", "n_classes") if k in names}

    @property
    def task_params(self) -> dict:
        """The parameters of the task (:mod:`emseg.tasks`): its defaults, ``offsets``/``n_classes`` when the
        task takes them, then ``target_params``."""
        from ..tasks import task_params

        return task_params(self.target, {**self._from_fields(), **self.target_params})

    def as_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


# name: (int or float, lower bound, upper bound, what is allowed); a bound (x, False) is exclusive
_NUMBERS = {
    "val_fraction": (float, (0, True), (1, False), "in [0, 1)"),
    "n_classes": (int, (2, True), None, "an integer >= 2"),
    "ignore_label": (int, None, None, "an integer"),
    "background_label": (int, (0, True), None, "an integer >= 0"),
    "batch_size": (int, (1, True), None, "an integer >= 1"),
    "context": (int, (0, True), (8, True), "an integer in 0-8 (sections on each side; 0: plain 2D)"),
    "foreground_fraction": (float, (0, True), (1, True), "in [0, 1]"),
    "pos_weight": (float, (0, False), (math.inf, False), "a positive number"),
    "lr": (float, (0, False), (math.inf, False), "a positive number"),
    "weight_decay": (float, (0, True), (math.inf, False), "a number >= 0"),
    "steps": (int, (1, True), None, "an integer >= 1"),
    "warmup_steps": (int, (0, True), None, "an integer >= 0"),
    "val_every": (int, (1, True), None, "an integer >= 1"),
    "val_patches": (int, (0, True), None, "an integer >= 0"),
    "early_stopping": (int, (0, True), None, "an integer >= 0 (0: off)"),
    "init_lr_scale": (float, (0, False), (math.inf, False), "a positive number (1: the same lr as new layers)"),
    "adabn_batches": (int, (0, True), None, "an integer >= 0 (0: off)"),
    "ema_decay": (float, (0, True), (1, False), "in [0, 1)"),
    "consistency_weight": (float, (0, True), (math.inf, False), "a number >= 0"),
    "consistency_rampup": (float, (0, True), (1, True), "a fraction of the run in [0, 1]"),
    "confidence": (float, (0.5, True), (1, True), "in [0.5, 1]"),
    "confidence_start": (float, (0.5, True), (1, True), "in [0.5, 1] (or leave it out: a fixed confidence)"),
    "max_minutes": (float, (0, False), (math.inf, False), "a positive number of minutes"),
    "seed": (int, (0, True), None, "an integer >= 0"),
    "threads": (int, (1, True), None, "an integer >= 1"),
}
_OPTIONAL = ("ignore_label", "background_label", "pos_weight", "max_minutes", "threads", "confidence_start")


def _check_sparse(config, set_):
    """The sparse-label fields: ``sections`` distinct z indices >= 0, one ``label_mask`` per labels volume."""
    v = config.sections
    if v is not None:
        v = [v] if isinstance(v, int) and not isinstance(v, bool) else v
        ok = isinstance(v, (tuple, list)) and v and all(isinstance(z, int) and not isinstance(z, bool) and z >= 0
                                                        for z in v)
        if not ok:
            raise ConfigError("sections", f"sections must be a list of labelled z indices >= 0 like [12, 40, 77]; "
                              f"got {config.sections!r}")
        if len(set(v)) != len(v):
            raise ConfigError("sections", f"sections lists a z index twice: {sorted(v)}")
        set_("sections", tuple(sorted(v)))
    m = config.label_mask
    m = (m,) if isinstance(m, (str, os.PathLike)) else (() if m is None else m)
    if not isinstance(m, (tuple, list)) or not all(isinstance(p, (str, os.PathLike)) and str(p) for p in m):
        raise ConfigError("label_mask", f"label_mask must be a path or a list of paths (one per labels volume); "
                          f"got {config.label_mask!r}")
    if m and len(m) != len(config.labels):
        raise ConfigError("label_mask", f"label_mask must list one volume per labels volume; got {len(m)} for "
                          f"{len(config.labels)}")
    set_("label_mask", tuple(os.fspath(p) for p in m))
    u = config.unlabelled
    u = (u,) if isinstance(u, (str, os.PathLike)) else (() if u is None else u)
    if not isinstance(u, (tuple, list)) or not all(isinstance(p, (str, os.PathLike)) and str(p) for p in u):
        raise ConfigError("unlabelled", f"unlabelled must be a path or a list of raw volumes; got {config.unlabelled!r}")
    if u and config.semi == "none" and config.pretrain == "none":
        raise ConfigError("unlabelled", "unlabelled volumes are used by semi-supervised training or pretraining; set "
                          "semi: mean_teacher (or pretrain: masked) or leave unlabelled empty")
    set_("unlabelled", tuple(os.fspath(p) for p in u))
    if config.confidence_start is not None and config.semi != "mean_teacher":
        raise ConfigError("confidence_start", f"confidence_start {config.confidence_start:g} schedules the mean "
                          f"teacher's confidence threshold; semi is {config.semi}: set semi: mean_teacher or leave "
                          "confidence_start out")
    if config.pretrain != "none":
        if config.raw or not u or config.semi != "none":
            raise ConfigError("pretrain", "pretrain: masked learns from unlabelled volumes alone: give unlabelled, no "
                              "raw/labels pairs, and semi: none")
    elif u and not config.raw and (config.consistency_weight == 0 or _regression_only(config)):
        raise ConfigError("consistency_weight", "adapting without labels learns from the consistency loss alone, on "
                          f"probability channels; consistency_weight {config.consistency_weight:g} with target "
                          f"{config.target} (loss {config.loss}) leaves nothing to learn")
    elif u and not config.raw and config.init is None:
        raise ConfigError("init", "adapting without labels (unlabelled volumes, no raw/labels pairs) needs a model "
                          "to adapt: give init (a shipped model or a checkpoint)")
    if config.background_label is not None and config.background_label == config.ignore_label:
        raise ConfigError("background_label", f"background_label and ignore_label must differ; both are "
                          f"{config.background_label}")


def _regression_only(config):
    from .semi import classification_channels

    return not classification_channels(config)


def _ints(name, v, lengths, text, positive=False):
    ok = isinstance(v, (tuple, list)) and len(v) in lengths and all(
        (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and x.is_integer()) for x in v)
    if not ok or (positive and min(v) < 1):
        raise ConfigError(name, f"{name} must be {text}; got {_plain(v)!r}")
    return tuple(int(x) for x in v)


def check_val_roi(roi):
    """Refuse a ``val_roi`` that is not a z range \"z0:z1\" with 0 <= z0 < z1 (ConfigError naming it)."""
    if not isinstance(roi, str):
        hint = (" (YAML reads an unquoted 10:12 as the base-60 number 612: quote it)"
                if isinstance(roi, int) else "")
        raise ConfigError("val_roi", f"val_roi must be a z range as a string like '140:165'; got {roi!r}{hint}")
    parts = roi.split(":")
    try:
        z0, z1 = (int(p) for p in parts)
    except ValueError:
        raise ConfigError("val_roi", f"val_roi must be a z range like '140:165'; got {roi!r}") from None
    if not 0 <= z0 < z1:
        raise ConfigError("val_roi", f"val_roi must be a z range z0:z1 with 0 <= z0 < z1; got {roi!r}")


def load_config(path=None, overrides=(), **kwargs) -> TrainConfig:
    """Build a :class:`TrainConfig` from a YAML file, ``key=value`` overrides and keyword arguments,
    as :func:`emseg.config.fill` does for every configuration (``--set model.features=16``).

    Examples
    --------
    >>> load_config(overrides=["lr=3e-4", "patch_shape=[64, 64]"]).patch_shape
    (64, 64)
    >>> load_config(overrides=["val_every=0"])
    Traceback (most recent call last):
    ...
    emseg.config.ConfigError: --set val_every=0: val_every must be an integer >= 1; got 0
    """
    return fill(TrainConfig, path, overrides, **kwargs)
