"""The post-processing configuration: one frozen dataclass whose fields are ``segment_blockwise``'s options."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError, check_bool, check_number
from ..predict.config import check_halo, check_shape

__all__ = ["PostprocessConfig"]


@dataclass(frozen=True)
class PostprocessConfig:
    """How a prediction becomes instances (all but ``scratch``/``keep_scratch`` are part of the run's signature).

    ``method``: one of :data:`emseg.instances.METHODS` (None: the model's default, in
    :func:`emseg.workflows.segment_volume`); ``objects``: a kind of objects of
    :data:`emseg.tasks.OBJECTS` whose size filter and settings are the defaults (instead of a
    shipped model's card); ``params``: the method's parameters; ``offsets``: one per
    affinity channel ("agglomerate", "mws"); ``min_size``: objects with fewer voxels (counted over the
    whole volume) become background; ``z_filter``: median of the prediction over this many sections
    first (odd; 0 = off); ``block_shape``: write blocks (also the output's chunks; default
    64×256×256, 2048×2048 in 2D); ``halo``: context on each side, "auto" = 0 for "cc" (exact face
    matching), else the method's default and at least the longest offset; ``stitch_overlap``: the
    fraction of an id that must lie inside another across a block face to join them; ``scratch``:
    where the intermediate ids go (default hidden beside the output); ``keep_scratch`` keeps them.
    """

    method: str | None = None
    objects: str | None = None
    params: dict = field(default_factory=dict)
    offsets: tuple | None = None
    min_size: int | None = None
    z_filter: int | None = None
    block_shape: tuple | None = None
    halo: object = "auto"
    stitch_overlap: float = 0.5
    scratch: str | None = None
    keep_scratch: bool = False

    def __post_init__(self):
        set_ = object.__setattr__
        if self.method is not None:
            from .methods import METHODS

            if self.method not in METHODS:
                raise ConfigError("method", f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.objects is not None:
            from ..tasks import OBJECTS

            if self.objects not in OBJECTS:
                raise ConfigError("objects", f"unknown kind of objects {self.objects!r}; choose one of "
                                  f"{', '.join(OBJECTS)}")
        if not isinstance(self.params, dict):
            raise ConfigError("params", f"params must be a mapping of the method's parameters; got {self.params!r}")
        if self.offsets is not None:
            if not isinstance(self.offsets, (list, tuple)) or not self.offsets:
                raise ConfigError("offsets", f"offsets must be a list of offsets like [-1, 0, 0]; got {self.offsets!r}")
            set_(self, "offsets", tuple(check_shape("offsets", o, minimum=-2**31, optional=False) for o in self.offsets))
        set_(self, "min_size", check_number("min_size", self.min_size, int, (0, True), None,
                                            "an integer >= 0 (voxels)", optional=True))
        z = check_number("z_filter", self.z_filter, int, (0, True), None, "0 (off) or an odd number of sections "
                         "(3, 5, ...)", optional=True)
        if z is not None and z > 1 and z % 2 == 0:
            raise ConfigError("z_filter", f"z_filter must be 0 (off) or an odd number of sections (3, 5, ...); got {z}")
        set_(self, "z_filter", z)
        set_(self, "block_shape", check_shape("block_shape", self.block_shape))
        set_(self, "halo", check_halo("halo", self.halo))
        set_(self, "stitch_overlap", check_number("stitch_overlap", self.stitch_overlap, float, (0, False), (1, True),
                                                  "in (0, 1]"))
        check_bool("keep_scratch", self.keep_scratch)
