"""Every segmentation metric of the field, exact and out-of-core, from one contingency table.

Comparisons take ``(gt, pred)`` in that order and return named results. Modules: ``contingency``
(the table), ``clustering`` (Rand, adapted Rand, VOI, CREMI), ``semantic`` (IoU, Dice, ...),
``matching`` (instance matching), ``coco`` (average precision), ``instance`` (AJI, PQ), ``isbi``
(V_rand, V_info, pixel error), ``warping`` (warping error), ``task`` (which task two volumes call
for) and ``evaluate`` (any set of them at once).
"""

from .clustering import (AdaptedRand, CremiScore, RandResult, VOI, adapted_rand_error, border_mask,
                         cremi_score, rand_index, variation_of_information)
from .coco import AveragePrecision, average_precision
from .contingency import Contingency, contingency_table
from .evaluate import METRIC_SETS, METRICS, EvaluateConfig, evaluate
from .instance import PanopticQuality, aggregated_jaccard_index, panoptic_quality
from .isbi import (BestScores, ForegroundScore, best_scores_from_probability, label_cells, pixel_error, v_info,
                   v_rand)
from .matching import Matching, match_instances, match_instances_thresholds
from .semantic import SemanticScores, binarize, semantic_scores
from .task import TaskChoice, infer_task
from .warping import WarpingResult, warping_error

__all__ = [
    "Contingency", "contingency_table",
    "RandResult", "AdaptedRand", "VOI", "CremiScore", "rand_index", "adapted_rand_error",
    "variation_of_information", "cremi_score", "border_mask",
    "SemanticScores", "semantic_scores", "binarize",
    "Matching", "AveragePrecision", "PanopticQuality", "match_instances", "match_instances_thresholds",
    "average_precision", "aggregated_jaccard_index", "panoptic_quality",
    "ForegroundScore", "BestScores", "WarpingResult", "v_rand", "v_info", "best_scores_from_probability",
    "label_cells", "pixel_error", "warping_error",
    "evaluate", "EvaluateConfig", "METRIC_SETS", "METRICS", "TaskChoice", "infer_task",
]
