"""Evaluation metrics for saliency maps: the P-TAME paper's and a few more.

Classifier passes run batched through `keras.ops` on the active backend;
imputation and the arithmetic on maps run on the host (numpy, scipy).
"""

from keras_ptame.metrics.cascading import cascade_layers, cascading_randomization
from keras_ptame.metrics.confidence import (
    average_drop,
    confidence_metrics,
    increase_in_confidence,
    keep_top_fraction,
)
from keras_ptame.metrics.deletion import curve_area, deletion_insertion
from keras_ptame.metrics.imputation import (
    noisy_linear_imputation,
    telea_imputation,
)
from keras_ptame.metrics.localization import boxes_to_masks, mass_inside, pointing_game
from keras_ptame.metrics.pixel_auc import pixel_auc
from keras_ptame.metrics.road import removal_masks, road, road_scores, road_summary
from keras_ptame.metrics.sanity import (
    data_randomization,
    model_randomization,
    randomize_weights,
    rank_correlation,
    structural_similarity,
)

__all__ = [
    "average_drop",
    "boxes_to_masks",
    "cascade_layers",
    "cascading_randomization",
    "confidence_metrics",
    "curve_area",
    "data_randomization",
    "deletion_insertion",
    "increase_in_confidence",
    "keep_top_fraction",
    "mass_inside",
    "model_randomization",
    "pixel_auc",
    "noisy_linear_imputation",
    "pointing_game",
    "randomize_weights",
    "rank_correlation",
    "removal_masks",
    "road",
    "road_scores",
    "road_summary",
    "structural_similarity",
    "telea_imputation",
]
