"""Datasets made locally, with ground truth, for offline training and evaluation.

`pointing_game` and `mass_inside` are `keras_ptame.metrics`' own, re-exported
here to score maps against the masks that `make_shapes` returns.
"""

from keras_ptame.datasets.multilabel import make_multilabel_shapes
from keras_ptame.datasets.synthetic import (
    SHAPE_NAMES,
    make_backgrounds,
    make_negatives,
    make_shapes,
    shape_names,
    shapes_dataset,
)
from keras_ptame.metrics.localization import mass_inside, pointing_game

__all__ = [
    "SHAPE_NAMES",
    "make_backgrounds",
    "make_multilabel_shapes",
    "make_negatives",
    "make_shapes",
    "mass_inside",
    "pointing_game",
    "shape_names",
    "shapes_dataset",
]
