"""``emseg plan`` and ``emseg fit``: a training run configured from the data — a fingerprint of the
volume and its labels (:mod:`~emseg.fit.fingerprint`), a plan derived from it with a reason for every
choice (:mod:`~emseg.fit.planner`), the time one step takes on this machine
(:mod:`~emseg.fit.timing`), post-processing tuned on a held-out labelled part
(:mod:`~emseg.fit.tune`), and the resumable run of all stages with its model card (:mod:`~emseg.fit.run`)."""

from .fingerprint import Fingerprint, fingerprint

__all__ = ["Fingerprint", "fingerprint"]
