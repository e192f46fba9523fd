"""Scores per explained class: where an explainer fails, and its flat maps.

An average over all images hides a class whose maps collapsed: a class the
classifier predicts on the fill image alone (a black image) may get flat
maps, all zeros, while every other class is explained well. So each method
also gets one row per class: how many images, the share of flat maps (flagged
by the explainer, or constant: they found no evidence), Average Drop and Increase in Confidence
with the whole map kept, and the localisation scores when the objects are
known.
"""

import numpy as np

from keras_ptame.metrics.confidence import confidence_metrics
from keras_ptame.metrics.localization import mass_inside, pointing_game


def flat_maps(maps):
    """bool `(N,)`: maps without contrast (constant, e.g. all zeros)."""
    maps = np.asarray(maps)
    return np.ptp(maps.reshape(len(maps), -1), axis=1) == 0


def per_class_rows(
    backbone,
    images,
    maps,
    classes,
    truth=None,
    batch_size=32,
    flat=None,
    selection="threshold",
):
    """One row per explained class: dict class -> dict column -> float.

    Args:
        backbone: the classifier (`Backbone`) the maps explain.
        images: `(N, H, W, 3)` raw pixels.
        maps: `(N, H, W)` maps in [0, 1].
        classes: int `(N,)` the class each map explains.
        truth: optional bool `(N, H, W)` object masks.
        batch_size: int. Images per classifier call.
        flat: optional bool `(N,)`: the maps flagged flat (the explainer's
            own flags). Defaults to `None` (the constant maps).
        selection: str. The pixel rule of AD/IC (see
            `keras_ptame.metrics.confidence_metrics`). Defaults to
            `"threshold"`.

    Returns:
        `{class: {"count", "flat", "AD100", "IC100"[, "pointing_game",
        "mass_inside"]}}`, percentages but for `count`, classes in order.
    """
    classes = np.asarray(classes)
    flat = flat_maps(maps) if flat is None else np.asarray(flat, bool)
    rows = {}
    for label in np.unique(classes):
        chosen = classes == label
        row = {"count": float(chosen.sum()), "flat": 100.0 * float(flat[chosen].mean())}
        row.update(
            confidence_metrics(
                backbone,
                images[chosen],
                maps[chosen],
                classes[chosen],
                (1.0,),
                batch_size,
                selection,
            )
        )
        if truth is not None:
            row["pointing_game"] = 100.0 * float(
                pointing_game(maps[chosen], truth[chosen]).mean()
            )
            row["mass_inside"] = 100.0 * float(
                mass_inside(np.maximum(maps[chosen], 0), truth[chosen]).mean()
            )
        rows[int(label)] = row
    return rows
