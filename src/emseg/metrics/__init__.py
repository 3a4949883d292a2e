"""Every segmentation metric of the field, exact and out-of-core, from one contingency table.

Comparisons take ``(gt, pred)`` in that order and return named results.
"""

from .clustering import (AdaptedRand, CremiScore, RandResult, VOI, adapted_rand_error, border_mask,
                         cremi_score, rand_index, variation_of_information)
from .contingency import Contingency, contingency_table
from .evaluate import evaluate
from .instance import (AveragePrecision, Matching, PanopticQuality, aggregated_jaccard_index, average_precision,
                       match_instances, match_instances_thresholds, panoptic_quality)
from .isbi import (BestScores, ForegroundScore, WarpingResult, best_scores_from_probability, label_cells,
                   pixel_error, v_info, v_rand, warping_error)
from .semantic import SemanticScores, binarize, semantic_scores

__all__ = [
    "Contingency", "contingency_table",
    "RandResult", "AdaptedRand", "VOI", "CremiScore", "rand_index", "adapted_rand_error",
    "variation_of_information", "cremi_score", "border_mask",
    "SemanticScores", "semantic_scores", "binarize",
    "Matching", "AveragePrecision", "PanopticQuality", "match_instances", "match_instances_thresholds",
    "average_precision", "aggregated_jaccard_index", "panoptic_quality",
    "ForegroundScore", "BestScores", "WarpingResult", "v_rand", "v_info", "best_scores_from_probability",
    "label_cells", "pixel_error", "warping_error", "evaluate",
]
