"""Deletion and insertion curves (Petsiuk et al. 2018) and their areas."""

import numpy as np
from scipy import ndimage

from keras_ptame.metrics.inputs import prepare
from keras_ptame.models.classifier_scores import class_scores
from keras_ptame.utils.maps import ranking
from keras_ptame.utils.validation import check_positive_int

DELETION_FILLS = ("black", "blur", "mean")


def fill_image(images, fill="black", sigma=5.0):
    """What removed pixels become: `"black"` (0), `"blur"` or `"mean"` colour."""
    images = np.asarray(images, dtype=np.float32)
    if fill == "black":
        return np.zeros_like(images)
    if fill == "mean":
        return np.broadcast_to(
            images.mean(axis=(1, 2), keepdims=True), images.shape
        ).copy()
    if fill == "blur":
        return ndimage.gaussian_filter(images, sigma=(0, sigma, sigma, 0)).astype(
            np.float32
        )
    raise ValueError(f"`fill` must be one of {DELETION_FILLS}. Received: fill={fill!r}")


def curve_area(curve):
    """Trapezoid area under curves `(..., steps + 1)` sampled evenly on [0, 1]."""
    curve = np.asarray(curve, dtype=np.float64)
    return (curve[..., 1:] + curve[..., :-1]).sum(axis=-1) / (2 * (curve.shape[-1] - 1))


def deletion_insertion(
    classifier,
    images,
    maps,
    classes=None,
    steps=16,
    deletion_fill="black",
    insertion_fill="blur",
    batch_size=32,
):
    """Deletion and insertion curves and the areas under them.

    Deletion replaces the most salient pixels first by `deletion_fill`, in
    `steps` equal shares, and follows the explained class's softmax
    probability down (lower area is better). Insertion starts from
    `insertion_fill` and puts the most salient pixels back first (higher
    area is better).

    Args:
        classifier: a `Backbone` or a Keras model on raw pixels returning
            logits.
        images: array `(N, H, W, 3)` of raw pixels in [0, 255].
        maps: array `(N, H, W)` of saliency maps.
        classes: optional int array `(N,)`. Defaults to `None` (the
            classifier's prediction).
        steps: int. Number of equal shares of pixels. Defaults to `16`.
        deletion_fill: str. `"black"`, `"blur"` or `"mean"`. Defaults to
            `"black"`.
        insertion_fill: str. Defaults to `"blur"`.
        batch_size: int. Images per classifier call. Defaults to `32`.

    Returns:
        A dict of numpy arrays: `"deletion_curve"` and `"insertion_curve"`
        `(N, steps + 1)`, `"deletion_auc"` and `"insertion_auc"` `(N,)`.

    Examples:
    ```python
    import keras, numpy as np
    from keras_ptame.metrics import deletion_insertion

    classifier = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    images = np.random.randint(0, 256, (2, 16, 16, 3)).astype("uint8")
    result = deletion_insertion(classifier, images, np.random.rand(2, 16, 16))
    result["deletion_auc"].mean(), result["insertion_auc"].mean()
    ```
    """
    steps = check_positive_int("steps", steps)
    backbone, images, maps, classes, _ = prepare(
        classifier, images, maps, classes, batch_size
    )
    count, height, width = maps.shape
    order = ranking(maps)
    # rank[i, p]: position of pixel p in image i's order, most salient first.
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(height * width)[None], axis=1)
    rank = rank.reshape(count, height, width, 1)
    shares = np.round(np.linspace(0, height * width, steps + 1)).astype(np.int64)
    curves = {}
    for name, fill in (("deletion", deletion_fill), ("insertion", insertion_fill)):
        background = fill_image(images, fill)
        curve = np.zeros((count, steps + 1), dtype=np.float32)
        for step, share in enumerate(shares):
            salient = rank < share
            if name == "deletion":
                perturbed = np.where(salient, background, images)
            else:
                perturbed = np.where(salient, images, background)
            curve[:, step], _ = class_scores(backbone, perturbed, classes, batch_size)
        curves[f"{name}_curve"] = curve
        curves[f"{name}_auc"] = curve_area(curve).astype(np.float32)
    return curves
