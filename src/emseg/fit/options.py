"""The options of ``emseg fit`` (:class:`FitConfig`), checked when built; :mod:`emseg.fit.run` runs them."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config import ConfigError, check_device, check_number

__all__ = ["FitConfig"]


@dataclass(frozen=True)
class FitConfig:
    """The options of :func:`emseg.fit.run.fit` (``emseg fit RAW LABELS OUT_DIR``); checked when built.

    ``minutes``: training time (the plan's schedule ends with it); ``val_roi``: the labelled z range
    held out for tuning ("z0:z1"; chosen by the planner when None); ``init``: a shipped model or a
    checkpoint to start from (its architecture is kept, its weights loaded where shapes match);
    ``tune_minutes``: the most the post-processing search may take; ``voxel_size`` (nm, zyx) when
    the files do not say. Few labels: ``sections``, the labelled z indices (every other section is
    unknown and never read; the last labelled one is held out for tuning unless ``val_roi``
    says otherwise); fine-tuning an ``init`` model: ``freeze``, ``init_lr_scale``,
    ``adabn_batches`` (:mod:`emseg.train.finetune`); ``semi``: ``mean_teacher`` also learns from the
    unlabelled rest of the training part (:mod:`emseg.train.semi`), ``propagate`` spreads the labels of
    ``sections`` to their neighbours in rounds (:mod:`emseg.fit.propagate`, 4S). ``context``: a 2D network sees the
    k sections above and below as input channels (2.5D); None: the planner decides. ``adapt_to``: the
    unlabelled volume of another microscope the model is for (``emseg fit TARGET OUT --source RAW
    LABELS``): ``raw``/``labels`` are then the labelled source, the mean teacher learns from the
    target, and the model written for it carries the target's normalisation and BatchNorm statistics.
    ``unlabelled``: with ``semi`` ``mean_teacher``, more raw volumes of the same kind as ``raw`` (the
    sections to be segmented, say): the mean teacher draws from ``raw`` whole (its held-out sections'
    raw too, never their labels) and from these, each normalised on its own; the model keeps ``raw``'s
    normalisation.
    """

    raw: str
    labels: str | None
    out_dir: str
    minutes: float = 30.0
    val_roi: str | None = None
    init: str | None = None
    device: str = "auto"
    seed: int = 0
    voxel_size: tuple | None = None
    tune_minutes: float = 5.0
    sections: tuple | None = None
    freeze: str = "none"
    init_lr_scale: float = 1.0
    adabn_batches: int = 0
    semi: str = "none"
    context: int | None = None
    adapt_to: str | None = None
    unlabelled: tuple = ()
    overwrite: bool = False

    def __post_init__(self):
        for name in ("raw", "labels", "out_dir", "adapt_to"):
            v = getattr(self, name)
            if v is None and name in ("labels", "adapt_to"):  # labels: adapting an --init model (emseg.fit.adapt)
                continue
            if not isinstance(v, (str, os.PathLike)) or not str(v):
                raise ConfigError(name, f"{name} must be a path; got {v!r}")
            object.__setattr__(self, name, _absolute(os.fspath(v)))  # a rerun from another folder finds them
        if isinstance(self.unlabelled, (str, os.PathLike)) or not all(
                isinstance(p, (str, os.PathLike)) and str(p) for p in self.unlabelled):
            raise ConfigError("unlabelled", f"unlabelled must be a list of raw volume paths; got {self.unlabelled!r}")
        object.__setattr__(self, "unlabelled", tuple(_absolute(os.fspath(p)) for p in self.unlabelled))
        from ..io.paths import split_key

        for path in self.unlabelled:
            if not os.path.exists(split_key(path)[0]):
                raise FileNotFoundError(f"--unlabelled {path}: no such file or folder")
        if self.unlabelled and (self.semi != "mean_teacher" or self.adapt_to is not None or self.labels is None):
            found = (f"got --semi {self.semi}" if self.semi != "mean_teacher" else
                     "got --source (whose target is the unlabelled volume)" if self.adapt_to is not None else
                     "got no LABELS")
            raise ConfigError("unlabelled", "--unlabelled gives the mean teacher more raw of RAW's kind: it needs LABELS "
                              f"and --semi mean_teacher; {found}")
        object.__setattr__(self, "minutes", check_number("minutes", self.minutes, float, (0, False), None,
                                                         "a positive number of minutes"))
        object.__setattr__(self, "tune_minutes", check_number("tune_minutes", self.tune_minutes, float, (0, False),
                                                              None, "a positive number of minutes"))
        object.__setattr__(self, "seed", check_number("seed", self.seed, int, (0, True), None, "an integer >= 0"))
        check_device("device", self.device)
        from ..train.config import TrainConfig

        if self.adapt_to is not None and (self.labels is None or self.semi == "propagate"):
            raise ConfigError("source", "--source RAW LABELS trains on a labelled source and adapts to TARGET with the "
                              "mean teacher" + ("; --semi propagate spreads labels within one volume: leave it out"
                                                if self.labels is not None else ": give both the raw and the labels"))
        if self.semi == "propagate" and self.sections is None:
            raise ConfigError("semi", "--semi propagate spreads labels from the labelled sections to their neighbours: "
                              "give --sections (the labelled z indices), or --semi mean_teacher")
        try:  # the training options are TrainConfig's: checked there, named as options of fit
            TrainConfig(sections=self.sections, freeze=self.freeze, init_lr_scale=self.init_lr_scale,
                        adabn_batches=self.adabn_batches, init=self.init, context=self.context or 0,
                        semi="none" if self.semi == "propagate" else self.semi)
        except ConfigError as err:
            raise ConfigError(err.key, str(err).replace(err.key, "--" + err.key.replace("_", "-"), 1)) from None
        if self.sections is not None:
            object.__setattr__(self, "sections", tuple(sorted(int(z) for z in self.sections)))
        if self.labels is None:
            if self.init is None:
                raise ConfigError("labels", "without LABELS, emseg fit adapts a model to RAW: give --init MODEL (a "
                                  "shipped model or a checkpoint), or give LABELS")
            given = [k for k, default in (("val_roi", None), ("sections", None), ("semi", "none"), ("freeze", "none"),
                                          ("init_lr_scale", 1.0), ("adabn_batches", 0), ("tune_minutes", 5.0),
                                          ("context", None))
                     if getattr(self, k) != default]
            if given:
                flag = {"adabn_batches": "adabn"}.get(given[0], given[0]).replace("_", "-")
                raise ConfigError(given[0], f"--{flag} needs LABELS; adapting without labels takes --init, --minutes, "
                                  "--device, --seed and --voxel-size (AdaBN and the mean teacher are its own)")
        if self.val_roi is not None:
            from .split import check_val_option

            check_val_option(self.val_roi)


def _absolute(path):
    """``path`` (``file.h5:key`` too) with its file part absolute."""
    from ..io.paths import split_key

    file, key = split_key(path)
    return os.path.abspath(file) + (f":{key}" if key else "")
