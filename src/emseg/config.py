"""Configuration shared by every stage: how a config is filled (YAML, ``--set key=value``, keyword
arguments), how its fields are checked, and the execution configuration every blockwise stage takes.

Each stage has one frozen dataclass whose fields are that stage's options (``TrainConfig``,
``PredictConfig``, ``PostprocessConfig``, ``EvaluateConfig``); :class:`ExecutionConfig` holds what
is about running, not about the result: workers, scheduler, resume/overwrite, progress, memory.
:func:`fill` builds any of them from a YAML file, overrides and keyword arguments; a bad value fails
at once with one line naming the key, where it came from and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

__all__ = ["ConfigError", "ExecutionConfig", "fill", "fill_stages", "split_options", "resolve", "check_number", "check_bool",
           "check_choice", "check_device"]


class ConfigError(ValueError):
    """A config value of the wrong type or out of range; ``key`` names the field."""

    def __init__(self, key, message):
        super().__init__(message)
        self.key = key


def plain(v):
    """``v`` with tuples as lists, for JSON and YAML."""
    if isinstance(v, tuple):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def tuples(v):
    """``v`` with lists as tuples (YAML gives lists; configs are frozen and hashable)."""
    return tuple(tuples(x) for x in v) if isinstance(v, list) else v


def check_number(name, v, kind, low=None, high=None, text=None, optional=False):
    """``v`` as ``kind`` (int or float) within ``low``/``high``, each a ``(bound, inclusive)`` pair or None.

    YAML reads 3e-4 as a string, so numeric strings are accepted.

    Examples
    --------
    >>> check_number("lr", "3e-4", float, (0, False))
    0.0003
    >>> check_number("steps", 0, int, (1, True), text="an integer >= 1")
    Traceback (most recent call last):
    ...
    emseg.config.ConfigError: steps must be an integer >= 1; got 0
    """
    if v is None and optional:
        return None
    what = "an integer" if kind is int else "a number"  # a value of the wrong kind; ``text`` for one out of range
    text = text or what
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise ConfigError(name, f"{name} must be {what}; got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(name, f"{name} must be {what}; got {plain(v)!r}")
    if kind is int:
        if isinstance(v, float) and not v.is_integer():
            raise ConfigError(name, f"{name} must be {what}; got {v!r}")
        v = int(v)
    elif math.isnan(v):
        raise ConfigError(name, f"{name} must be {what}; got nan")
    else:
        v = float(v)
    above = low is None or (v >= low[0] if low[1] else v > low[0])
    below = high is None or (v <= high[0] if high[1] else v < high[0])
    if not (above and below):
        raise ConfigError(name, f"{name} must be {text}; got {v!r}")
    return v


def check_device(name, v):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not isinstance(v, str) or (v not in ("auto", "cpu", "cuda") and not v.startswith("cuda:")):
        raise ConfigError(name, f"{name} must be auto, cpu, cuda or cuda:N; got {v!r}")
    return v


def check_bool(name, v):
    if not isinstance(v, bool):
        raise ConfigError(name, f"{name} must be true or false; got {v!r}")
    return v


def check_choice(name, v, options):
    if v not in options:
        raise ConfigError(name, f"{name} must be one of {', '.join(map(str, options))}; got {v!r}")
    return v


@dataclass(frozen=True)
class ExecutionConfig:
    """How a blockwise stage runs; none of it changes the result (it is not part of a run's signature).

    ``workers``: threads, or with ``scheduler="local"`` the processes of a Dask ``LocalCluster``;
    ``scheduler``: None (threads), ``"local"`` or a running scheduler's ``tcp://host:port``;
    ``resume``: continue an interrupted run of the same inputs and options; ``overwrite``: replace
    an output that holds something else (only once the new one is complete); ``progress``: a progress
    bar on stderr; ``max_block_mb``: the memory one block may take (MiB; None: the stage's default);
    ``pyramid``: the multiscale levels of a Zarr output (:mod:`emseg.io.pyramid`): None adds them to
    outputs over 256 MiB, True always, False never, or a downsampling method (``mean``, ``mode``,
    ``stride``) to use instead of the one the output's kind calls for (level 0, the result, is the same);
    ``cluster``: ``slurm``, ``pbs``, ``sge`` or ``lsf``: the scheduler runs here (``scheduler="local"``) and
    each of the ``workers`` is a job of that batch system, as ``cluster_config`` (dask-jobqueue's keyword
    arguments: queue, account, cores, memory, walltime, ...) describes it (:mod:`emseg.blockwise.cluster`).
    """

    workers: int = 2
    scheduler: str | None = None
    resume: bool = True
    overwrite: bool = False
    progress: bool = False
    max_block_mb: float | None = None
    pyramid: bool | str | None = None
    cluster: str | None = None
    cluster_config: dict | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "workers", check_number("workers", self.workers, int, (1, True), text="an integer >= 1"))
        if self.scheduler is not None and (not isinstance(self.scheduler, str) or not self.scheduler):
            raise ConfigError("scheduler", f"scheduler must be None, 'local' or an address like tcp://host:8786; "
                              f"got {self.scheduler!r}")
        for name in ("resume", "overwrite", "progress"):
            check_bool(name, getattr(self, name))
        set_(self, "max_block_mb", check_number("max_block_mb", self.max_block_mb, float, (0, False),
                                                (math.inf, False), "a positive number of MiB", optional=True))
        if self.pyramid not in (None, True, False, "mean", "mode", "stride"):
            raise ConfigError("pyramid", f"pyramid must be null, true, false, mean, mode or stride; got {self.pyramid!r}")
        if self.cluster is not None or self.cluster_config:
            from .blockwise.cluster import check_cluster

            set_(self, "cluster_config", check_cluster(self.cluster, self.cluster_config))
            if self.scheduler not in (None, "local"):
                raise ConfigError("cluster", f"cluster {self.cluster} starts its own scheduler here; it cannot use the "
                                  f"scheduler at {self.scheduler} (give one of them)")
            set_(self, "scheduler", "local")

    @property
    def max_block_bytes(self):
        return None if self.max_block_mb is None else int(self.max_block_mb * 2**20)


def split_options(options, *classes):
    """Keyword ``options`` split by the config class whose field each names; an unknown one is refused.

    Returns one dict per class, in order.

    Examples
    --------
    >>> split_options({"workers": 1, "resume": False}, ExecutionConfig)
    [{'workers': 1, 'resume': False}]
    """
    parts, names = [{} for _ in classes], [{f.name for f in dataclasses.fields(c)} for c in classes]
    for key, value in options.items():
        owners = [c.__name__ for c, fields in zip(classes, names) if key in fields]
        if len(owners) > 1:
            raise TypeError(f"option {key!r} is a field of {' and '.join(owners)}; pass it inside one of them "
                            f"(e.g. {owners[0]}({key}=...))")
        for part, fields in zip(parts, names):
            if key in fields:
                part[key] = value
                break
        else:
            valid = sorted(set().union(*names))
            raise TypeError(f"unknown option {key!r}; valid options: {', '.join(valid)}")
    return parts


def resolve(options, *configs):
    """Each ``(cls, given)`` pair of ``configs`` as a ``cls`` instance: ``given`` (or the defaults)
    with the keyword ``options`` that name its fields applied; an option no class has is refused.

    The library's blockwise functions take ``config=``, ``execution=`` and, for convenience, any of
    their fields as keywords: ``predict_blockwise(raw, model, out, block_shape=(1, 256, 256))``.

    Examples
    --------
    >>> resolve({"workers": 1}, (ExecutionConfig, None))
    [ExecutionConfig(workers=1, scheduler=None, resume=True, overwrite=False, progress=False, max_block_mb=None, pyramid=None, cluster=None, cluster_config=None)]
    """
    parts = split_options(options, *(cls for cls, _ in configs))
    out = []
    for (cls, given), part in zip(configs, parts):
        if given is not None and not isinstance(given, cls):
            raise TypeError(f"expected a {cls.__name__}; got {type(given).__name__}")
        base = given if given is not None else cls()
        out.append(dataclasses.replace(base, **part) if part else base)
    return out


def fill(cls, path=None, overrides=(), **kwargs):
    """A ``cls`` config from a YAML file, then keyword arguments, then ``key=value`` overrides (each
    later one wins).

    Unknown keys raise ``ValueError`` listing the valid ones. Override values are parsed as YAML
    (``lr=3e-4``, ``patch_shape=[32,128,128]``, ``model.features=16`` sets one key of a mapping).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For malformed YAML (with the line and column), a file whose top level is not a mapping,
        an unknown key or a bad value; the message names the file or the ``--set`` item.
    """
    import yaml

    data, origin = {}, {}
    if path is not None:
        data = _read_yaml(path)
        origin = dict.fromkeys(data, os.fspath(path))
    data.update(kwargs)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set takes key=value; got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"--set {item}: the value is not valid YAML ({_yaml_problem(err)})") from None
        if "." in key:
            head, sub = key.split(".", 1)
            if data.get(head) is True:  # "augment: true" then "--set augment.flip=false": the defaults, one changed
                data[head] = {}
            if not isinstance(data.get(head, {}), dict):
                raise ValueError(f"--set {item}: {head} is {data[head]!r}, not a mapping that could hold {sub}")
            data[head] = {**data.get(head, {}), sub: value}
        else:
            data[key] = value
        origin[key.split(".")[0]] = f"--set {item}"
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        where = f" in {path}" if path else ""
        raise ValueError(f"unknown config key(s){where}: {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    try:
        return cls(**{k: tuples(v) for k, v in data.items()})
    except ConfigError as err:
        if err.key in origin:
            raise ConfigError(err.key, f"{origin[err.key]}: {err}") from None
        raise


def fill_stages(stages, path=None, overrides=(), given=None) -> dict:
    """Several configs from one YAML file and ``--set`` items, as a command that runs several stages needs.

    ``stages`` maps a section name to a config class (``{"predict": PredictConfig, "execution":
    ExecutionConfig}``). In the file, a top-level key goes to the one class that has that field and a
    section (``predict:``) holds its class's fields; a field two classes share must sit in its section.
    ``given`` (section → options set on the command line; None values are not set) wins over the
    file, and ``--set`` items win over both (``--set tta=flips``, ``--set postprocess.min_size=100``).
    Returns section → config.

    Examples
    --------
    >>> fill_stages({"execution": ExecutionConfig}, overrides=["workers=1"])["execution"].workers
    1
    """
    data = _read_yaml(path) if path is not None else {}
    where = f"{os.fspath(path)}: " if path is not None else ""
    fields = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in stages.items()}

    def owner(key, origin):
        owners = [name for name, names in fields.items() if key in names]
        if len(owners) == 1:
            return owners[0]
        if owners:
            raise ValueError(f"{origin}{key} is an option of {' and '.join(owners)}: put it under one of them "
                             f"({owners[0]}.{key})")
        valid = sorted(set().union(*fields.values()))
        raise ValueError(f"{origin}unknown config key {key!r}; valid keys: {', '.join(valid)} (or sections "
                         f"{', '.join(stages)})")

    from_file = {name: {} for name in stages}
    for key, value in data.items():
        if key in stages:
            if not isinstance(value, dict):
                raise ValueError(f"{where}{key} must be a mapping of {stages[key].__name__} fields; got {value!r}")
            from_file[key].update(value)
        else:
            from_file[owner(key, where)][key] = value
    sets = {name: [] for name in stages}
    for item in overrides or ():
        key = item.split("=", 1)[0]
        head = key.split(".", 1)[0]
        if head in stages and "." in key:
            sets[head].append(item[len(head) + 1:])
        else:
            sets[owner(head, f"--set {item}: ")].append(item)
    out = {}
    for name, cls in stages.items():
        flags = {k: v for k, v in ((given or {}).get(name) or {}).items() if v is not None}
        try:
            out[name] = fill(cls, None, sets[name], **{**from_file[name], **flags})
        except ConfigError as err:
            if err.key in from_file[name] and err.key not in flags and not str(err).startswith("--set"):
                raise ConfigError(err.key, f"{where}{err}") from None
            raise
    return out


def _read_yaml(path):
    import yaml

    p = os.fspath(path)
    if os.path.isdir(p):
        raise ValueError(f"config {p!r} is a folder; give a YAML file")
    if not os.path.exists(p):
        raise FileNotFoundError(f"config file {p!r} does not exist")
    try:
        with open(p, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except UnicodeDecodeError:
        raise ValueError(f"config {p!r} is not a text (UTF-8) YAML file") from None
    except yaml.YAMLError as err:
        raise ValueError(f"config {p!r} is not valid YAML: {_yaml_problem(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config {p!r} holds a YAML {type(data).__name__}; a config is a mapping of "
                         "keys to values (key: value lines)")
    return data


def _yaml_problem(err):
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"
