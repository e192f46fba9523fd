"""ROAD: RemOve And Debias (Rong et al. 2022), most and least relevant first."""

import numpy as np

from keras_ptame.metrics.imputation import check_imputation, impute
from keras_ptame.metrics.inputs import prepare
from keras_ptame.metrics.selection import (
    above_kth,
    below_kth,
    check_selection,
    top_pixels,
)
from keras_ptame.models.classifier_scores import class_scores

PERCENTAGES = (10, 30, 50, 70)
ORDERS = ("morf", "lerf")
# Each order's name in result tables: the summary's column, and the prefix of
# the accuracy columns ("MoRF10", ...).
TAGS = {"morf": "MoRF", "lerf": "LeRF"}


def road_summary(accuracies, percentages=PERCENTAGES):
    """Trapezoid area under the ROAD accuracy curve.

    The curve runs through `(0, 1)`, `(p / 100, accuracy at p)` for each
    percentage and `(1, 0)`. With the default percentages the abscissae are
    `[0, .1, .3, .5, .7, 1]`.

    Args:
        accuracies: sequence of accuracies in [0, 1], one per percentage.
        percentages: the percentages removed. Defaults to `(10, 30, 50, 70)`.

    Returns:
        float in [0, 1].
    """
    return float(_trapezoid(np.asarray(accuracies, dtype=np.float64), percentages))


def _trapezoid(accuracies, percentages):
    """`road_summary` of accuracies `(P, ...)`: one area per trailing index."""
    x = np.concatenate([[0.0], np.asarray(percentages, dtype=np.float64) / 100, [1.0]])
    ends = np.ones((1, *accuracies.shape[1:]))
    y = np.concatenate([ends, accuracies, 0 * ends])
    widths = (x[1:] - x[:-1]).reshape(-1, *([1] * (accuracies.ndim - 1)))
    return np.sum(widths * (y[1:] + y[:-1]) / 2, axis=0)


def removal_masks(maps, percentage, order="morf", selection="threshold"):
    """Boolean masks `(N, H, W)` of the pixels ROAD removes at `percentage`.

    `"morf"` removes the most relevant pixels first, `"lerf"` the least.
    With `selection="threshold"` (the authors' rule, on `p = percentage /
    100`), MoRF keeps the pixels strictly below the `int(H * W * (1 - p))`-th
    smallest value of the map and LeRF those strictly above the
    `int(H * W * p)`-th: without ties MoRF removes `H * W - k + 1` pixels and
    LeRF `k`, and every pixel tied at the threshold is removed too (a
    constant map loses all its pixels). With `selection="rank"` exactly
    `round(p * H * W)` pixels go, ties in raster order (see
    `keras_ptame.metrics.selection`).
    """
    if order not in ORDERS:
        raise ValueError(f"`order` must be one of {ORDERS}. Received: order={order!r}")
    if not 0 <= percentage <= 100:
        raise ValueError(
            f"`percentage` must lie in [0, 100]. Received: percentage={percentage}"
        )
    check_selection(selection)
    maps = np.asarray(maps, dtype=np.float32)
    share = percentage / 100
    if selection == "threshold":
        if order == "morf":
            return ~below_kth(maps, 1 - share)
        return ~above_kth(maps, share)
    removed = int(round(share * maps[0].size))
    return top_pixels(maps, removed, descending=order == "morf")


def road(
    classifier,
    images,
    maps,
    classes=None,
    order="morf",
    percentages=PERCENTAGES,
    imputation="linear",
    noise=0.01,
    batch_size=32,
    seed=0,
    selection="threshold",
    per_image=False,
):
    """ROAD accuracies and their summary for one removal order.

    At each percentage, that share of each image's pixels (most relevant first
    for `"morf"`, least relevant first for `"lerf"`) is removed and filled by
    `imputation`; the score is the share of images whose prediction is still
    the explained class. For MoRF lower is better, for LeRF higher. With
    `imputation="telea"` and the default `selection`, the pixels removed, the
    fill and the summary follow the authors' `ROAD` with their default
    imputer.

    Args:
        classifier: a `Backbone` or a Keras model on raw pixels returning
            logits.
        images: array `(N, H, W, 3)` of raw pixels in [0, 255].
        maps: array `(N, H, W)` of saliency maps.
        classes: optional int array `(N,)`. Defaults to `None` (the
            classifier's prediction on the images).
        order: str. `"morf"` or `"lerf"`. Defaults to `"morf"`.
        percentages: percentages of pixels removed. Defaults to
            `(10, 30, 50, 70)`.
        imputation: str. `"linear"` (noisy linear imputation, ROAD's own),
            `"telea"` (OpenCV inpainting as the P-TAME authors' code
            does, their default) or `"telea_exact"` (keras_ptame's earlier
            Telea: kept pixels exact), see
            `keras_ptame.metrics.telea_imputation`. Defaults to `"linear"`.
        noise: float. Noise of the linear imputation on a [0, 1] scale.
            Defaults to `0.01`.
        batch_size: int. Images per classifier call. Defaults to `32`.
        seed: int. Seed of the imputation noise; image `i` at percentage `p`
            always gets the same noise, whatever the batching. Defaults to `0`.
        selection: str. Which pixels are removed: `"threshold"` (the
            authors' rule) or `"rank"` (exact counts), see `removal_masks`.
            Defaults to `"threshold"`.
        per_image: bool. Whether each value is an array `(N,)` of the images'
            own outcomes (1.0 where the image kept its class, else 0.0, and
            each image's own curve area) instead of their mean, e.g. for
            confidence intervals. Defaults to `False`.

    Returns:
        A dict: `"accuracy"`, a dict percentage -> accuracy in [0, 1], and
        `"summary"`, the trapezoid area (see `road_summary`); with
        `per_image`, arrays `(N,)` whose means they are.

    Examples:
    ```python
    import keras, numpy as np
    from keras_ptame.metrics import road

    classifier = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    images = np.random.randint(0, 256, (2, 16, 16, 3)).astype("uint8")
    maps = np.random.rand(2, 16, 16)
    result = road(classifier, images, maps, order="morf")
    result["accuracy"][50], result["summary"]
    ```
    """
    check_imputation(imputation)
    check_selection(selection)
    backbone, images, maps, classes, _ = prepare(
        classifier, images, maps, classes, batch_size
    )
    fill = dict(method=imputation, noise=noise, seed=seed, batch_size=batch_size)
    kept = {
        percentage: _kept(
            backbone,
            images,
            removal_masks(maps, percentage, order, selection),
            classes,
            percentage,
            **fill,
        )
        for percentage in percentages
    }
    if per_image:
        outcomes = np.stack([kept[p] for p in percentages]).astype(np.float64)
        return {
            "accuracy": {p: outcomes[i] for i, p in enumerate(percentages)},
            "summary": _trapezoid(outcomes, percentages),
        }
    accuracy = {p: int(np.sum(kept[p])) / len(images) for p in percentages}
    return {
        "accuracy": accuracy,
        "summary": road_summary([accuracy[p] for p in percentages], percentages),
    }


def _kept(
    backbone, images, removed, classes, percentage, method, noise, seed, batch_size
):
    """Whether each image keeps its class with its `removed` pixels filled, `(N,)`."""
    kept = []
    # Impute a batch at a time so that host memory stays bounded.
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        filled = np.stack(
            [
                impute(
                    images[index],
                    removed[index],
                    method=method,
                    noise=noise,
                    seed=[seed, index, int(round(percentage * 1000))],
                )
                for index in range(start, stop)
            ]
        )
        _, predictions = class_scores(backbone, filled, classes[start:stop], batch_size)
        kept.append(predictions == classes[start:stop])
    return np.concatenate(kept)


def road_scores(
    classifier,
    images,
    maps,
    classes=None,
    orders=ORDERS,
    accuracies=True,
    percentages=PERCENTAGES,
    imputation="linear",
    noise=0.01,
    batch_size=32,
    seed=0,
    selection="threshold",
    per_image=False,
):
    """ROAD of both removal orders, as the columns of a results table.

    Runs `road` once per order with the same settings and names its results
    as the evaluation and tuning tables do: `"MoRF"` and `"LeRF"` for the
    summaries, `"MoRF10"`, `"LeRF30"`, ... for the accuracy at each
    percentage. All values are in percent.

    Args:
        classifier: a `Backbone` or a Keras model on raw pixels returning
            logits.
        images: array `(N, H, W, 3)` of raw pixels in [0, 255].
        maps: array `(N, H, W)` of saliency maps.
        classes: optional int array `(N,)`. Defaults to `None` (the
            classifier's prediction on the images).
        orders: the removal orders scored, in column order. Defaults to
            `("morf", "lerf")`.
        accuracies: bool. Whether each order's accuracy at each percentage
            is a column too, before its summary. Defaults to `True`.
        percentages: percentages of pixels removed. Defaults to
            `(10, 30, 50, 70)`.
        imputation: str. `"linear"`, `"telea"` or `"telea_exact"` (see
            `road`). Defaults to `"linear"`.
        noise: float. Noise of the linear imputation on a [0, 1] scale.
            Defaults to `0.01`.
        batch_size: int. Images per classifier call. Defaults to `32`.
        seed: int. Seed of the imputation noise (see `road`). Defaults to
            `0`.
        selection: str. `"threshold"` or `"rank"` (see `removal_masks`).
            Defaults to `"threshold"`.
        per_image: bool. Whether each column is an array `(N,)` of the
            images' own values (100 or 0 per accuracy column, each image's
            curve area for a summary) instead of their mean (see `road`).
            Defaults to `False`.

    Returns:
        A dict column -> float in [0, 100], for each order in `orders`: with
        `accuracies`, `"MoRF10"`, `"MoRF30"`, ... then the summary
        `"MoRF"`; likewise `"LeRF..."`. `100 * road(...)` of that order.

    Examples:
    ```python
    import keras, numpy as np
    from keras_ptame.metrics import road_scores

    classifier = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    images = np.random.randint(0, 256, (2, 16, 16, 3)).astype("uint8")
    maps = np.random.rand(2, 16, 16)
    scores = road_scores(classifier, images, maps, accuracies=False)
    scores["LeRF"] - scores["MoRF"]  # the gap, in percent: higher is better
    ```
    """
    unknown = [order for order in orders if order not in ORDERS]
    if unknown:
        raise ValueError(
            f"`orders` must be taken from {ORDERS}. Received: orders={orders!r}"
        )
    columns = {}
    for order in orders:
        result = road(
            classifier,
            images,
            maps,
            classes,
            order=order,
            percentages=percentages,
            imputation=imputation,
            noise=noise,
            batch_size=batch_size,
            seed=seed,
            selection=selection,
            per_image=per_image,
        )
        tag = TAGS[order]
        if accuracies:
            for percentage, accuracy in result["accuracy"].items():
                columns[f"{tag}{percentage:g}"] = 100.0 * accuracy
        columns[tag] = 100.0 * result["summary"]
    return columns
