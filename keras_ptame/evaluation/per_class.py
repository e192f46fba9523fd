"""Scores per explained class: where an explainer fails, its flat and misranked maps.

An average over all images hides a class whose maps collapsed: a class the
classifier predicts on the fill image alone (a black image) may get flat
maps, all zeros, and another maps that cover the background rather than the
object, while every other class is explained well. So each method also gets
one row per class: how many images, the share of flat maps (flagged by the
explainer, or constant: they found no evidence), the share of misranked maps
(the removal check: they do not carry their class, removing their top half
costs it no more than removing their bottom half), Average Drop and Increase
in Confidence with the whole map kept, and the localisation scores when the
objects are known.
"""

import numpy as np

from keras_ptame.metrics.confidence import confidence_metrics
from keras_ptame.metrics.localization import mass_inside, pointing_game
from keras_ptame.models import removal_check


def flat_maps(maps):
    """bool `(N,)`: maps without contrast (constant, e.g. all zeros)."""
    maps = np.asarray(maps)
    return np.ptp(maps.reshape(len(maps), -1), axis=1) == 0


def misranked_maps(backbone, images, maps, classes, flat, scores=None, batch_size=32):
    """bool `(N,)`: maps the removal check finds misranked, flat ones excluded.

    A map is misranked when it does not carry its class: removing its top
    half costs the class less than `MARGIN` of its probability more than
    removing its bottom half (see `keras_ptame.models.removal_check`). For
    any maps (a `PTAME`'s, a baseline's). Checked `batch_size` images at a
    time, which bounds the memory of the fills.

    Args:
        backbone: the classifier (`Backbone`) the maps explain.
        images: `(N, H, W, 3)` raw pixels.
        maps: `(N, H, W)` maps; higher is more relevant.
        classes: int `(N,)` the class each map explains.
        flat: bool `(N,)`: the maps counted flat (never misranked).
        scores: optional float `(N,)`: the classes' probabilities on the
            whole images. Defaults to `None` (computed).
        batch_size: int. Images per classifier call.
    """
    changes = [np.zeros((0,), "float32")]
    for start in range(0, len(images), batch_size):
        part = slice(start, start + batch_size)
        found = removal_check.removal_changes(
            backbone,
            images[part],
            maps[part],
            classes[part],
            None if scores is None else scores[part],
            batch_size,
        )
        changes.append(found["change"])
    found = removal_check.misranked(np.concatenate(changes))
    return found & ~np.asarray(flat, bool)


def per_class_rows(
    backbone,
    images,
    maps,
    classes,
    truth=None,
    batch_size=32,
    flat=None,
    selection="threshold",
    misranked=None,
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
        misranked: optional bool `(N,)`: the maps the removal check finds
            misranked. Defaults to `None` (checked here, see `misranked_maps`).

    Returns:
        `{class: {"count", "flat", "misranked", "AD100", "IC100"[,
        "pointing_game", "mass_inside"]}}`, percentages but for `count`,
        classes in order.
    """
    classes = np.asarray(classes)
    flat = flat_maps(maps) if flat is None else np.asarray(flat, bool)
    if misranked is None:
        misranked = misranked_maps(
            backbone, images, maps, classes, flat, None, batch_size
        )
    misranked = np.asarray(misranked, bool)
    rows = {}
    for label in np.unique(classes):
        chosen = classes == label
        row = {
            "count": float(chosen.sum()),
            "flat": 100.0 * float(flat[chosen].mean()),
            "misranked": 100.0 * float(misranked[chosen].mean()),
        }
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
