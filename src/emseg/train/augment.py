"""Seeded augmentation of EM training patches: geometry, intensity and serial-section defects,
composed with probabilities by :class:`Augmenter`, which :func:`build_augmenter` builds from a
training config's ``augment``.

Every transform is a plain function ``f(raw, labels, rng, **params) -> Patch(raw, labels)``
(:class:`emseg.train.patches.Patch`, a named pair):

- ``raw``: floating point (any normalisation: zero mean/unit std or [0, 1]), shaped ``(z, y, x)``,
  ``(c, z, y, x)``, ``(y, x)`` or ``(c, y, x)``. The number of spatial axes is ``ndim`` (default
  ``len(voxel_size)`` where a transform takes one, else 2 for 2D raw and 3 otherwise, so
  ``(c, y, x)`` needs ``ndim=2``).
- ``labels``: None, one array or a list of arrays (returned the same way), each with raw's spatial
  shape and optionally one leading channel axis. Geometry moves them exactly like raw: integer
  and bool labels by nearest neighbour, float targets by linear interpolation (as raw).
  Direction-dependent targets (affinities, flow) are not re-oriented: compute them afterwards.
- ``rng``: a ``np.random.Generator`` (or an int seed); the only source of randomness.

Inputs are never modified; outputs have the input shapes and dtypes. The transforms live in
:mod:`~emseg.train.augment_geometric` (flips and 90° rotations, elastic, rotate_scale) and
:mod:`~emseg.train.augment_intensity` (photometric changes and serial-section defects, which change
raw only, except :func:`misalignment` in ``"step"`` mode); every one is importable from here.
"""

import inspect
from collections.abc import Mapping

import numpy as np

from ..config import ConfigError, check_number, plain
from .augment_geometric import ROTATE90, elastic, random_flip_rotate, rotate_scale
from .augment_intensity import (brightness_contrast, gamma, gaussian_blur, gaussian_noise, low_contrast_section,
                                misalignment, missing_parts, missing_section, motion_blur, per_section_intensity)
from .patches import Patch

__all__ = ["Augmenter", "DEFAULT_P", "build_augmenter", "check_augment", "AUGMENT_OPTIONS", "ROTATE90",
           "random_flip_rotate", "elastic", "rotate_scale", "brightness_contrast", "gamma", "gaussian_blur",
           "gaussian_noise", "per_section_intensity", "missing_section", "misalignment", "missing_parts",
           "low_contrast_section", "motion_blur"]

_PIPELINE = {f.__name__: f for f in (
    random_flip_rotate, rotate_scale, elastic, misalignment, brightness_contrast,
    per_section_intensity, gamma, gaussian_blur, low_contrast_section, motion_blur, gaussian_noise,
    missing_parts, missing_section)}

DEFAULT_P = {"random_flip_rotate": 1.0, "rotate_scale": 0.2, "elastic": 0.3, "misalignment": 0.1,
             "brightness_contrast": 0.5, "per_section_intensity": 0.3, "gamma": 0.3,
             "gaussian_blur": 0.2, "low_contrast_section": 0.05, "motion_blur": 0.05,
             "gaussian_noise": 0.3, "missing_parts": 0.05, "missing_section": 0.05}

_GIVEN = ("raw", "labels", "rng", "voxel_size", "ndim")  # arguments the Augmenter passes itself

AUGMENT_OPTIONS = ("flip", "rotate90") + tuple(n for n in _PIPELINE if n != "random_flip_rotate")
"""The keys of a training config's ``augment`` mapping (see :func:`check_augment`)."""


def _param_names(name):
    """The keyword arguments of transform ``name`` that may be set."""
    return tuple(k for k in inspect.signature(_PIPELINE[name]).parameters if k not in _GIVEN)


def _kwargs(name, params, vs):
    """Transform ``name``'s keyword arguments for voxel size ``vs`` (its defaults, then ``params``),
    tried once on a tiny patch so that a bad value fails now, not in a data-loader worker hours later."""
    f = _PIPELINE[name]
    kw = {"alpha_nm": 2 * vs[-1], "sigma_nm": 10 * vs[-1]} if name == "elastic" else {}
    kw.update(params)
    if "voxel_size" in inspect.signature(f).parameters:
        kw["voxel_size"] = vs
    else:
        kw["ndim"] = len(vs)
    f(np.zeros((4, 16, 16)[3 - len(vs):], np.float32), None, 0, **kw)
    return kw


class Augmenter:
    """Seeded composition of the transforms, each applied with its probability, in this order:
    geometry (flip/rotate, rotate_scale, elastic, misalignment), intensity (brightness_contrast,
    per_section_intensity, gamma, gaussian_blur), degradation (low_contrast_section,
    motion_blur, gaussian_noise) and constant-valued defects last (missing_parts, missing_section).

    Parameters
    ----------
    voxel_size : tuple of float
        nm per spatial axis, zyx; its length (2 or 3) is the number of spatial axes of raw.
    p : dict, optional
        Probability in [0, 1] per transform name, overriding ``DEFAULT_P``; 0 switches one off.
    params : dict, optional
        Keyword arguments per transform name, overriding its defaults (``elastic`` defaults to
        ``alpha_nm`` = 2 and ``sigma_nm`` = 10 in-plane voxels). ``voxel_size``/``ndim`` come
        from the Augmenter.
    seed : int
        Seeds the Augmenter's own ``np.random.default_rng``; calls without ``rng`` advance it.

    Raises
    ------
    ValueError
        For an unknown transform or parameter name, a probability outside [0, 1] or a bad
        magnitude (each transform is tried once on a tiny patch at construction), including
        ``params={"random_flip_rotate": {"rotate90": "zyx"}}`` on anisotropic voxels.

    Notes
    -----
    Same seed, same sequence of calls: same outputs. In data-loader workers pass each call an
    explicit generator instead, e.g. ``rng=np.random.default_rng([seed, worker_id, step])``.
    With the defaults a (32, 128, 128) float32 patch with labels takes about 20 ms on average on
    one CPU core (5 ms without the two interpolating warps, ~35 ms when elastic is drawn).

    Examples
    --------
    >>> aug = Augmenter((30, 6, 6), p={"elastic": 0}, seed=0)
    >>> raw = np.random.default_rng(0).random((8, 32, 32), dtype=np.float32)
    >>> out, lab = aug(raw, (raw > 0.5).astype(np.uint8))
    >>> out.shape, out.dtype, lab.dtype
    ((8, 32, 32), dtype('float32'), dtype('uint8'))
    >>> Augmenter.from_config({"voxel_size": [8, 8, 8], "p": {"gamma": 1.0}}).p["gamma"]
    1.0
    """

    def __init__(self, voxel_size, p=None, params=None, seed=0):
        try:
            vs = tuple(float(v) for v in voxel_size)
        except (TypeError, ValueError):
            vs = ()
        if len(vs) not in (2, 3) or min(vs) <= 0:
            raise ValueError(f"voxel_size must be 2 or 3 positive numbers (nm, zyx), got {voxel_size!r}; "
                             "it decides which axes may be swapped, e.g. (30, 6, 6) for serial-section TEM")
        p, params = dict(p or {}), dict(params or {})
        for arg, keys in (("p", p), ("params", params)):
            unknown = sorted(set(keys) - set(_PIPELINE))
            if unknown:
                raise ValueError(f"{arg} has unknown transforms {unknown}; valid: {sorted(_PIPELINE)}")
        for name, prob in p.items():
            if not np.isscalar(prob) or not 0 <= prob <= 1:
                raise ValueError(f"p[{name!r}] must be a probability in [0, 1], got {prob!r}")
        self.voxel_size, self.seed = vs, seed
        self.p = {**DEFAULT_P, **{k: float(v) for k, v in p.items()}}
        self.params = {}
        for name in _PIPELINE:
            kw, valid = dict(params.get(name, {})), _param_names(name)
            bad = sorted(set(kw) - set(valid))
            if bad:
                raise ValueError(f"params[{name!r}] has unknown keys {bad}; valid: {list(valid)}")
            try:
                self.params[name] = _kwargs(name, kw, vs)
            except (TypeError, ValueError) as e:
                raise ValueError(f"params[{name!r}]: {e}") from e
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_config(cls, config):
        """Build from a dict with keys ``voxel_size`` and optionally ``p``, ``params``, ``seed``."""
        valid = ("voxel_size", "p", "params", "seed")
        unknown = sorted(set(config) - set(valid))
        if unknown or "voxel_size" not in config:
            raise ValueError(f"config needs 'voxel_size' and may hold {valid[1:]}; got keys {sorted(config)}")
        return cls(**config)

    def __call__(self, raw, labels=None, rng=None):
        """Augment one patch: ``(raw, labels) -> Patch(raw, labels)``, shapes and dtypes kept."""
        rng = self.rng if rng is None else np.random.default_rng(rng)
        for name, f in _PIPELINE.items():
            if rng.random() < self.p[name]:
                raw, labels = f(raw, labels, rng, **self.params[name])
        return Patch(raw, labels)

    def __repr__(self):
        return f"Augmenter(voxel_size={self.voxel_size}, p={self.p}, seed={self.seed})"


# ---------------------------------------------------------------- the training config's ``augment``
def check_augment(augment, voxel_size=None):
    """A training config's ``augment`` checked and made JSON-ready (without importing torch).

    Parameters
    ----------
    augment : bool or mapping
        True: the defaults (:data:`DEFAULT_P`, each transform's own magnitudes); False: no
        augmentation; a mapping changes the defaults, its keys from :data:`AUGMENT_OPTIONS`:

        - ``flip``: true or false, random flips of every axis;
        - ``rotate90``: 90° rotations and transposes: true (among axes of equal voxel size, so
          in-plane only on anisotropic voxels), false, ``yx`` (in-plane only, also on isotropic
          voxels) or ``zyx`` (every axis; refused on anisotropic voxels);
        - a transform's name (``elastic``, ``missing_section``, ...): its probability in [0, 1],
          false (off), true (its default probability), or a mapping of ``p`` and the
          transform's keyword arguments, e.g. ``elastic: {p: 0.5, alpha_nm: 12, sigma_nm: 60}``.
    voxel_size : sequence of float, optional
        nm per spatial axis where known: ``rotate90: zyx`` on anisotropic voxels is then refused
        here, else by :func:`build_augmenter`.

    Returns
    -------
    bool or dict
        ``augment`` as a config stores it: probabilities as floats, tuples as lists.

    Raises
    ------
    emseg.config.ConfigError
        With key ``"augment"`` and one line naming ``augment.KEY``, the value and what is allowed;
        an unknown key lists the valid ones.

    Examples
    --------
    >>> check_augment({"flip": False, "elastic": 0, "gamma": {"p": 1, "gamma": (0.5, 2)}})
    {'flip': False, 'elastic': 0.0, 'gamma': {'p': 1.0, 'gamma': [0.5, 2]}}
    >>> check_augment({"missing_section": 1.5})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emseg.config.ConfigError: augment.missing_section must be a probability in [0, 1], true, false or ...; got 1.5
    >>> check_augment({"gaussian_blur": {"sigma": -1}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emseg.config.ConfigError: augment.gaussian_blur.sigma must be a number or a (min, max) pair with 0.0 <= min ...
    """
    if isinstance(augment, bool):
        return augment
    if not isinstance(augment, Mapping):
        raise ConfigError("augment", "augment must be true or false, or a mapping of options like "
                          f"{{flip: false, elastic: 0.5}}; got {plain(augment)!r}")
    unknown = [repr(k) if not isinstance(k, str) else k for k in augment if k not in AUGMENT_OPTIONS]
    if unknown:
        raise ConfigError("augment", f"augment has unknown option(s) {', '.join(unknown)}; valid options: "
                          f"{', '.join(AUGMENT_OPTIONS)}")
    if voxel_size is not None:
        try:
            vs = tuple(float(v) for v in voxel_size)
        except (TypeError, ValueError):
            vs = ()
        if len(vs) not in (2, 3) or not min(vs) > 0:
            raise ValueError(f"voxel_size must be 2 or 3 positive numbers (nm, zyx), got {voxel_size!r}")
        voxel_size = vs
    return {key: _check_option(key, value, voxel_size) for key, value in augment.items()}


def _check_option(key, value, vs):
    if key == "flip":
        if not isinstance(value, bool):
            raise ConfigError("augment", f"augment.flip must be true or false; got {plain(value)!r}")
        return value
    if key == "rotate90":
        if not (isinstance(value, bool) or (isinstance(value, str) and value in ROTATE90)):
            raise ConfigError("augment", "augment.rotate90 must be true (axes of equal voxel size), false, yx "
                              f"(in-plane only) or zyx (every axis, isotropic voxels only); got {plain(value)!r}")
        if vs is not None:
            try:
                _kwargs("random_flip_rotate", {"rotate90": value}, vs)
            except ValueError:
                raise ConfigError("augment", f"augment.rotate90 zyx swaps every pair of axes, but voxel_size {vs} "
                                  "is anisotropic: it would mix z with y/x; use rotate90: true (swaps only axes of "
                                  "equal voxel size, in-plane on serial-section data)") from None
        return value
    if isinstance(value, bool):
        return value
    valid = ("p",) + _param_names(key)
    if not isinstance(value, Mapping):
        return _probability(f"augment.{key}", value, f", true, false or a mapping of {', '.join(valid)}")
    unknown = [repr(k) if not isinstance(k, str) else k for k in value if k not in valid]
    if unknown:
        raise ConfigError("augment", f"augment.{key} has unknown option(s) {', '.join(unknown)}; valid options: "
                          f"{', '.join(valid)}")
    out = {k: _probability(f"augment.{key}.p", v) if k == "p" else plain(v) for k, v in value.items()}
    try:
        _kwargs(key, {k: v for k, v in out.items() if k != "p"}, vs or (1.0, 1.0, 1.0))
    except (TypeError, ValueError) as err:
        message = str(err)
        sep = "." if message.split(" ", 1)[0] in valid else ": "
        raise ConfigError("augment", f"augment.{key}{sep}{message}") from None
    return out


def _probability(name, value, alternatives=""):
    allowed = f"a probability in [0, 1]{alternatives}"
    try:
        return check_number(name, value, float, (0, True), (1, True), allowed)
    except ConfigError:  # a value of the wrong kind, too: say what is allowed, not just "a number"
        raise ConfigError("augment", f"{name} must be {allowed}; got {plain(value)!r}") from None


def build_augmenter(augment, voxel_size, seed, *, ndim=None):
    """The :class:`Augmenter` a training config's ``augment`` describes, or None for False.

    Parameters
    ----------
    augment : bool or mapping
        As :func:`check_augment` takes it; True gives exactly ``Augmenter(voxel_size, seed=seed)``.
    voxel_size : sequence of float or None
        nm per axis, zyx; its last ``ndim`` numbers are used. None (unknown) is taken as
        isotropic: every axis may then be flipped and swapped.
    seed : int
        The Augmenter's seed.
    ndim : int, optional
        Number of spatial axes of the patches, ``len(patch_shape)``; default ``len(voxel_size)``.

    Returns
    -------
    Augmenter or None

    Raises
    ------
    emseg.config.ConfigError
        For a bad ``augment`` (see :func:`check_augment`), ``rotate90: zyx`` on anisotropic voxels
        included.
    ValueError
        If ``voxel_size`` has fewer than ``ndim`` numbers, or neither is given.

    Examples
    --------
    >>> a = build_augmenter({"flip": False, "elastic": 0, "gamma": {"p": 1}}, [30, 6, 6], seed=0)
    >>> a.voxel_size, a.p["elastic"], a.p["gamma"], a.params["random_flip_rotate"]["flip"]
    ((30.0, 6.0, 6.0), 0.0, 1.0, False)
    >>> build_augmenter(True, None, seed=0, ndim=2).voxel_size
    (1.0, 1.0)
    >>> build_augmenter(False, None, seed=0, ndim=2) is None
    True
    """
    known = voxel_size is not None and len(voxel_size) > 0
    if ndim is None:
        if not known:
            raise ValueError("build_augmenter needs a voxel_size or ndim (the number of spatial axes)")
        ndim = len(voxel_size)
    if known and len(voxel_size) < ndim:
        raise ValueError(f"voxel_size {list(voxel_size)} has {len(voxel_size)} numbers but the patches have "
                         f"{ndim} spatial axes; give one voxel size per axis, zyx")
    vs = list(voxel_size)[-ndim:] if known else [1.0] * ndim
    augment = check_augment(augment, vs)
    if augment is False:
        return None
    if augment is True:
        return Augmenter(voxel_size=vs, seed=seed)
    p, params = {}, {}
    for key, value in augment.items():
        if key in ("flip", "rotate90"):
            params.setdefault("random_flip_rotate", {})[key] = value
        elif value is False:
            p[key] = 0.0
        elif isinstance(value, float):
            p[key] = value
        elif isinstance(value, dict):
            if "p" in value:
                p[key] = value["p"]
            params[key] = {k: v for k, v in value.items() if k != "p"}
    if params.get("random_flip_rotate", {}).keys() == {"flip", "rotate90"} and \
            not any(params["random_flip_rotate"].values()):
        p["random_flip_rotate"] = 0.0  # neither flips nor rotations: skip the transform
    return Augmenter(voxel_size=vs, p=p, params=params, seed=seed)
