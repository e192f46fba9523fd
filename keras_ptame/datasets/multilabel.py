"""Synthetic multi-label shapes: two or three objects per image, each its own class.

The scene and the objects are drawn as `make_shapes` draws them (dark clutter,
bright shapes at least three pixels thick), but each image holds several
objects of different classes, apart from one another, and comes with a
multi-hot label vector and one boolean mask per class (empty for a class not
in the image). A map of class c can then be scored against c's own object
and against the other objects: does it point at its object, or at another?
"""

import numpy as np

from keras_ptame.datasets.synthetic import (
    _background,
    _check_num_classes,
    _check_positive_int,
    _check_size_range,
    _object_colour,
    _shape_mask,
)

# Objects keep at least this many pixels between them: a peak on one object
# is never a pixel of another, and the black fill removes one alone.
_GAP = 2
# Placements tried per object before the image is drawn again.
_TRIES = 200


def make_multilabel_shapes(
    count,
    image_size=64,
    num_classes=4,
    objects=(2, 3),
    seed=0,
    size_range=(0.2, 0.32),
    noise=10.0,
):
    """Generates `count` images of several shapes, with multi-hot labels and per-class masks.

    Each image draws a number of objects uniformly in `objects`, each of a
    different class (drawn uniformly without replacement), placed fully
    inside the image and at least two pixels apart. The same arguments give
    the same arrays.

    Args:
        count: int. Number of images.
        image_size: int. Height and width in pixels, at least 16. Defaults to
            `64`.
        num_classes: int. Number of shape classes, 2 to 8 (see
            `shape_names`). Defaults to `4`.
        objects: pair of int `(low, high)`: objects per image, drawn
            uniformly from `low` to `high` inclusive, `1 <= low <= high <=
            num_classes`. Defaults to `(2, 3)`.
        seed: int. Seed of the random generator. Defaults to `0`.
        size_range: pair of float. Each object's side (its bounding box), as
            a share of `image_size`. Defaults to `(0.2, 0.32)`.
        noise: float. Standard deviation of the Gaussian pixel noise, in
            [0, 255] units. Defaults to `10.0`.

    Returns:
        A tuple `(images, labels, masks)`: uint8 `(count, H, W, 3)` images,
        float32 `(count, num_classes)` multi-hot labels and bool
        `(count, num_classes, H, W)` masks, `masks[i, c]` the pixels of
        class c's object in image i (all False where `labels[i, c] == 0`).

    Examples:
    ```python
    from keras_ptame.datasets import make_multilabel_shapes

    images, labels, masks = make_multilabel_shapes(10, image_size=64, seed=0)
    images.shape, labels.shape, masks.shape
    # (10, 64, 64, 3) (10, 4) (10, 4, 64, 64)
    ```
    """
    count = _check_positive_int(count, "count", minimum=0)
    image_size = _check_positive_int(image_size, "image_size", minimum=16)
    _check_num_classes(num_classes)
    low, high = _check_size_range(size_range, image_size)
    fewest, most = _check_objects(objects, num_classes)
    if noise < 0:
        raise ValueError(f"`noise` must be >= 0. Received: noise={noise}")
    rng = np.random.default_rng(seed)
    images = np.empty((count, image_size, image_size, 3), np.uint8)
    labels = np.zeros((count, num_classes), np.float32)
    masks = np.zeros((count, num_classes, image_size, image_size), bool)
    grid = np.mgrid[0:image_size, 0:image_size].astype(np.float32) + 0.5
    for index in range(count):
        number = int(rng.integers(fewest, most + 1))
        classes = rng.choice(num_classes, number, replace=False)
        canvas = _background(rng, image_size)
        placed = _place(rng, classes, grid, image_size, (low, high))
        for label, mask in zip(classes, placed, strict=True):
            canvas[mask] = _object_colour(rng, canvas[mask].mean(axis=0))
            masks[index, label] = mask
            labels[index, label] = 1.0
        canvas += rng.normal(0.0, noise, canvas.shape).astype(np.float32)
        images[index] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return images, labels, masks


def _place(rng, classes, grid, size, size_range):
    """Masks of `classes`' objects, apart from one another (drawn again if stuck)."""
    while True:
        taken = np.zeros((size, size), bool)
        placed = []
        for label in classes:
            for _ in range(_TRIES):
                side = rng.uniform(*size_range) * size
                mask = _shape_mask(rng, int(label), side, grid, size)
                if not (mask & taken).any():
                    break
            else:
                break
            placed.append(mask)
            taken |= _grow(mask, _GAP)
        if len(placed) == len(classes):
            return placed


def _grow(mask, pixels):
    """`mask` grown by `pixels` in the 8 directions (a square dilation)."""
    grown = mask.copy()
    for _ in range(pixels):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= step[:, :-1].copy()
        step[:, :-1] |= step[:, 1:].copy()
        grown = step
    return grown


def _check_objects(objects, num_classes):
    try:
        fewest, most = (int(v) for v in objects)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`objects` must be a pair of ints. Received: objects={objects!r}"
        ) from error
    if not 1 <= fewest <= most <= num_classes:
        raise ValueError(
            "`objects` must satisfy 1 <= low <= high <= num_classes "
            f"({num_classes}). Received: objects={objects!r}"
        )
    return fewest, most
