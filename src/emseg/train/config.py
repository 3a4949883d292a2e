"""The training configuration: one frozen dataclass; YAML files and ``--set key=value`` only fill it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["TrainConfig", "load_config", "TARGETS"]

TARGETS = ("binary", "onehot", "bc", "bcd", "affinities", "boundary")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; stored in every checkpoint.

    Data: ``raw``/``labels`` paths (any format emseg reads, ``file.h5:key``), a validation part
    split by region (``val_roi`` "z0:z1" or the last ``val_fraction`` of z), the ``target``
    (``binary``, ``onehot``, ``bc``, ``bcd``, ``affinities`` with ``offsets``, ``boundary`` for
    ISBI-style membrane labels), ``patch_shape`` (2 numbers: a 2D model on sections; 3: 3D).
    Model: ``model`` holds UNet keyword arguments (``preset: light2d`` for the small 2D net).
    Optimisation: AdamW with ``lr``, ``weight_decay``, linear warm-up then cosine decay over
    ``steps``; mixed precision when ``amp`` (float16 on CUDA, bfloat16 on CPUs that compute it
    natively). Run: ``out_dir`` gets ``latest``/``best`` checkpoints and ``log.csv``; ``resume``
    continues exactly where ``latest`` stopped.
    """

    raw: tuple = ()
    labels: tuple = ()
    val_fraction: float = 0.1
    val_roi: str | None = None
    target: str = "binary"
    offsets: tuple = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))
    n_classes: int = 2
    ignore_label: int | None = None
    patch_shape: tuple = (256, 256)
    batch_size: int = 4
    foreground_fraction: float = 0.5
    normalization: str = "percentile"
    voxel_size: tuple | None = None
    augment: bool = True
    model: dict = field(default_factory=dict)
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

    def __post_init__(self):
        for f in dataclasses.fields(self):  # YAML reads 3e-4 as a string: coerce to the field's type
            v, kind = getattr(self, f.name), f.type.split(" |")[0]
            if v is not None and kind in ("int", "float") and not isinstance(v, bool):
                try:
                    object.__setattr__(self, f.name, int(v) if kind == "int" else float(v))
                except (TypeError, ValueError):
                    raise ValueError(f"{f.name} must be a number; got {v!r}") from None
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}; got {self.target!r}")
        if isinstance(self.raw, str):
            object.__setattr__(self, "raw", (self.raw,))
        if isinstance(self.labels, str):
            object.__setattr__(self, "labels", (self.labels,))
        if len(self.raw) != len(self.labels):
            raise ValueError(f"raw and labels must list the same number of volumes; got {len(self.raw)} and "
                             f"{len(self.labels)}")
        object.__setattr__(self, "patch_shape", tuple(int(p) for p in self.patch_shape))
        object.__setattr__(self, "offsets", tuple(tuple(int(v) for v in o) for o in self.offsets))
        if len(self.patch_shape) not in (2, 3) or min(self.patch_shape) < 1:
            raise ValueError(f"patch_shape must be 2 or 3 positive ints; got {self.patch_shape}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda; got {self.device!r}")
        for name in ("steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")

    def as_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def load_config(path=None, overrides=(), **kwargs) -> TrainConfig:
    """Build a :class:`TrainConfig` from a YAML file, ``key=value`` overrides and keyword arguments.

    Unknown keys raise ``ValueError`` listing the valid ones. Override values are parsed as YAML
    (``--set lr=3e-4``, ``--set patch_shape=[32,128,128]``, ``--set model.features=16``).

    Examples
    --------
    >>> load_config(overrides=["lr=3e-4", "patch_shape=[64, 64]"]).patch_shape
    (64, 64)
    """
    import yaml

    data = {}
    if path is not None:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a training config is a mapping of keys to values")
    data.update(kwargs)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set takes key=value; got {item!r}")
        key, value = item.split("=", 1)
        value = yaml.safe_load(value)
        if "." in key:
            head, sub = key.split(".", 1)
            data.setdefault(head, {})
            data[head] = {**data[head], sub: value}
        else:
            data[key] = value
    valid = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        where = f" in {path}" if path else ""
        raise ValueError(f"unknown config key(s){where}: {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    return TrainConfig(**{k: _tuples(v) for k, v in data.items()})
