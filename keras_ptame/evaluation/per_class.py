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

import keras
import numpy as np

from keras_ptame.metrics.confidence import confidence_metrics
from keras_ptame.metrics.localization import mass_inside, pointing_game
from keras_ptame.models import removal_check
from keras_ptame.models.explanation import evidence


def no_evidence(maps):
    """bool `(N,)`: maps whose evidence (peak minus floor, as `explain`
    measures it) is zero: constant maps, such as all zeros.

    The flat maps of an explainer that does not flag its own (a `PTAME`
    flags the maps whose evidence is below its `evidence_threshold`): the
    scale of other explainers' maps is their own, so only no evidence at all
    is taken as none.
    """
    found = keras.ops.convert_to_numpy(evidence(np.asarray(maps, "float32")))
    return found == 0


def class_rows(classes, values, labels=None, statistics=None):
    """Per class, the per-image `values` of its images summarised: one row each.

    The one per-class routine of the package: the evaluation's per-class
    table and the demo's rows are built with it.

    Args:
        classes: int `(N,)`, the class of each image.
        values: dict column -> array `(N,)` of per-image values.
        labels: optional iterable of classes, the rows in order. Defaults to
            `None` (the classes in `classes`, in order).
        statistics: optional dict column -> function of an array -> float.
            Defaults to `None` (the mean of every column).

    Returns:
        `{label: {"count": int, column: float or None}}`; a class without
        images counts 0 and has `None` in every column.
    """
    classes = np.asarray(classes)
    labels = np.unique(classes) if labels is None else labels
    statistics = statistics or {}
    rows = {}
    for label in labels:
        chosen = classes == label
        count = int(chosen.sum())
        row = {"count": count}
        for column, value in values.items():
            summary = statistics.get(column, np.mean)
            row[column] = float(summary(np.asarray(value)[chosen])) if count else None
        rows[int(label)] = row
    return rows


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
    flat = no_evidence(maps) if flat is None else np.asarray(flat, bool)
    if misranked is None:
        misranked = misranked_maps(
            backbone, images, maps, classes, flat, None, batch_size
        )
    shares = {"flat": 100.0 * flat, "misranked": 100.0 * np.asarray(misranked, bool)}
    rows = class_rows(classes, shares)
    located = {}
    if truth is not None:
        located = class_rows(
            classes,
            {
                "pointing_game": 100.0 * pointing_game(maps, truth),
                "mass_inside": 100.0 * mass_inside(np.maximum(maps, 0), truth),
            },
        )
    for label, row in rows.items():
        chosen = classes == label
        # Scored on the class's images together, not a mean of per-image values.
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
        row.update({k: v for k, v in located.get(label, {}).items() if k != "count"})
    return rows
