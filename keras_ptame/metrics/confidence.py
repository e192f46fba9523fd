"""Average Drop (AD) and Increase in Confidence (IC) at a share of pixels kept."""

import numpy as np

from keras_ptame.metrics.inputs import prepare
from keras_ptame.metrics.selection import above_kth, check_selection, top_pixels
from keras_ptame.models.classifier_scores import class_scores

FRACTIONS = (1.0, 0.5, 0.15)


def keep_top_fraction(maps, fraction, selection="threshold"):
    """Keeps the `fraction` most salient pixels of each map, zeroes the rest.

    The kept pixels keep their soft values. With `selection="threshold"`
    (the authors' rule) the pixels kept are those strictly above the
    `int(H * W * (1 - fraction))`-th smallest value of the map (all of them
    at `fraction=1`): `H * W - k` pixels without ties, fewer with ties at the
    threshold (a constant map keeps none below 100%). With
    `selection="rank"` exactly `round(fraction * H * W)` pixels are kept,
    ties broken in raster order (see `keras_ptame.metrics.selection`).

    Args:
        maps: array `(N, H, W)`.
        fraction: float in (0, 1].
        selection: str. `"threshold"` or `"rank"`. Defaults to
            `"threshold"`.

    Returns:
        float32 numpy array `(N, H, W)`.
    """
    if not 0 < fraction <= 1:
        raise ValueError(
            f"`fraction` must lie in (0, 1]. Received: fraction={fraction}"
        )
    check_selection(selection)
    maps = np.asarray(maps, dtype=np.float32)
    if selection == "threshold":
        return np.where(above_kth(maps, 1 - fraction), maps, 0.0).astype(np.float32)
    count, height, width = maps.shape
    kept = int(round(fraction * height * width))
    if kept == height * width:
        return maps.copy()
    return np.where(top_pixels(maps, kept), maps, 0.0).astype(np.float32)


def average_drop(original, masked):
    """AD in percent: `100 * mean(max(0, Y - O) / Y)`.

    Args:
        original: array `(N,)`: scores Y of the explained class on the images.
        masked: array `(N,)`: scores O on the images multiplied by the maps.
    """
    return float(np.mean(_drops(original, masked)))


def increase_in_confidence(original, masked):
    """IC in percent: `100 * mean(1[O > Y])` (see `average_drop`)."""
    return float(np.mean(_increases(original, masked)))


def _drops(original, masked):
    """Each image's drop in percent: `100 * max(0, Y - O) / Y`, `(N,)`."""
    original = np.asarray(original, dtype=np.float64)
    masked = np.asarray(masked, dtype=np.float64)
    return 100.0 * np.maximum(0.0, original - masked) / np.maximum(original, 1e-12)


def _increases(original, masked):
    """Each image's increase in percent: 100 where `O > Y`, else 0, `(N,)`."""
    original = np.asarray(original, dtype=np.float64)
    masked = np.asarray(masked, dtype=np.float64)
    return 100.0 * (masked > original)


def confidence_metrics(
    classifier,
    images,
    maps,
    classes=None,
    fractions=FRACTIONS,
    batch_size=32,
    selection="threshold",
    per_image=False,
):
    """AD and IC at each share of pixels kept, as the P-TAME paper reports them.

    For each fraction, the top pixels of each map are kept with their soft
    values (the rest zeroed), the map is multiplied into the raw image and the
    image rescored. Scores are softmax probabilities of the explained class.
    With the default `selection`, the pixels kept and the scores follow the
    authors' `ADIC` (see `keep_top_fraction`).

    Args:
        classifier: a `Backbone` or a Keras model on raw pixels returning
            logits.
        images: array `(N, H, W, 3)` of raw pixels in [0, 255].
        maps: array `(N, H, W)` of saliency maps in [0, 1].
        classes: optional int array `(N,)`. Defaults to `None` (the
            classifier's prediction on the images).
        fractions: floats in (0, 1]. Defaults to `(1.0, 0.5, 0.15)`.
        batch_size: int. Images per classifier call. Defaults to `32`.
        selection: str. Which pixels are kept: `"threshold"` (the authors'
            rule) or `"rank"` (exact counts), see `keep_top_fraction`.
            Defaults to `"threshold"`.
        per_image: bool. Whether each value is an array `(N,)` of the
            images' own scores (each image's drop in percent; 100 or 0 for
            an increase) instead of their mean, e.g. for confidence
            intervals. Defaults to `False`.

    Returns:
        A dict `{"AD100": ..., "IC100": ..., "AD50": ..., ...}` of percentages
        (lower AD and higher IC are better): floats, or with `per_image`
        arrays `(N,)` whose means they are.

    Examples:
    ```python
    import keras, numpy as np
    from keras_ptame.metrics import confidence_metrics

    classifier = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    images = np.random.randint(0, 256, (4, 32, 32, 3)).astype("uint8")
    maps = np.random.rand(4, 32, 32)
    scores = confidence_metrics(classifier, images, maps)   # {"AD100": ..., ...}
    ```
    """
    check_selection(selection)
    backbone, images, maps, classes, original = prepare(
        classifier, images, maps, classes, batch_size
    )
    results = {}
    for fraction in fractions:
        kept = keep_top_fraction(maps, fraction, selection)
        masked, _ = class_scores(
            backbone, images * kept[..., None], classes, batch_size
        )
        tag = _tag(fraction)
        results[f"AD{tag}"] = _drops(original, masked)
        results[f"IC{tag}"] = _increases(original, masked)
    if per_image:
        return results
    return {column: float(np.mean(values)) for column, values in results.items()}


def _tag(fraction):
    percent = 100.0 * fraction
    return f"{percent:g}"
