"""Datasets made locally, with ground truth, for offline training and evaluation."""

from keras_ptame.datasets.synthetic import (
    SHAPE_NAMES,
    make_backgrounds,
    make_shapes,
    mass_inside,
    pointing_game,
    shape_names,
    shapes_dataset,
)

__all__ = [
    "SHAPE_NAMES",
    "make_backgrounds",
    "make_shapes",
    "mass_inside",
    "pointing_game",
    "shape_names",
    "shapes_dataset",
]
