"""Checks on user input, run on the host before any work starts.

Each check raises a `ValueError` that names the problem and the value received.
"""

import numpy as np


def check_image_shape(shape, name="images"):
    """Checks a batch shape `(B, H, W, 3)`; `None` entries are allowed."""
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(
            f"`{name}` must be a batch of channels-last images of shape "
            f"(batch, height, width, 3). Received: {name} with shape {shape} "
            f"(rank {len(shape)})"
        )
    if shape[-1] is not None and shape[-1] != 3:
        raise ValueError(
            f"`{name}` must have 3 colour channels, last. Received: {name} with "
            f"shape {shape} ({shape[-1]} channels). Convert grayscale or RGBA "
            "images to RGB first."
        )
    for axis, size in zip(("height", "width"), shape[1:3]):
        if size is not None and size < 1:
            raise ValueError(
                f"`{name}` must have a positive {axis}. Received: shape {shape}"
            )


def check_images(images, name="images"):
    """Checks a host batch of raw images and returns it as a numpy array."""
    array = np.asarray(images)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(
            f"`{name}` must hold numbers (uint8 or float pixels in [0, 255]). "
            f"Received: dtype {array.dtype}"
        )
    check_image_shape(array.shape, name)
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` is empty. Received: shape {array.shape}")
    # A sum is NaN or Inf if any pixel is, and costs less than a full mask.
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array.sum()):
        bad = int(np.size(array) - np.isfinite(array).sum())
        if bad:
            raise ValueError(
                f"`{name}` must be finite. Received: {bad} NaN or Inf pixel values"
            )
    return array


def check_classes(classes, count, num_classes, name="classes"):
    """Checks one class index per image and returns them as int32 numpy."""
    array = np.asarray(classes)
    if array.ndim == 0:
        array = np.full((count,), array)
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(np.mod(array, 1) == 0):
            array = array.astype(np.int64)
        else:
            raise ValueError(
                f"`{name}` must be integer class indices. Received: dtype {array.dtype}"
            )
    if array.shape != (count,):
        raise ValueError(
            f"`{name}` must hold one class index per image: shape ({count},). "
            f"Received: shape {array.shape}"
        )
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"`{name}` must lie in [0, {num_classes}). Received: values from "
            f"{array.min()} to {array.max()}"
        )
    return array.astype(np.int32)
