"""Checks on user input, run on the host before any work starts.

Each check raises a `ValueError` that names the problem and the value received.
"""

import warnings

import numpy as np

from keras_ptame.utils.tf_runtime import import_tensorflow

# Raw pixels: what every network's own preprocessing expects to receive.
PIXEL_RANGE = (0.0, 255.0)
# Keras' `verbose` values for `predict`.
VERBOSITIES = ("auto", 0, 1, 2)


def check_option(name, value, allowed):
    """Raises `ValueError` unless `value` is one of `allowed`; returns it."""
    if value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {allowed}. Received: {name}={value!r}"
        )
    return value


def check_image_shape(shape, name="images", channels=None):
    """Checks a batch shape `(B, H, W, C)`; `None` entries are allowed.

    Args:
        shape: the batch's shape.
        name: str. The argument's name, for messages. Defaults to `"images"`.
        channels: optional int. The channel count the images must have (an
            explainer's, once built). Defaults to `None`: any count >= 1.
    """
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(
            f"`{name}` must be a batch of channels-last images of shape "
            f"(batch, height, width, channels). Received: {name} with shape "
            f"{shape} (rank {len(shape)})"
        )
    received = shape[-1]
    if received is not None and received < 1:
        raise ValueError(
            f"`{name}` must have at least 1 channel, last. Received: {name} with "
            f"shape {shape} ({received} channels)"
        )
    if None not in (channels, received) and received != channels:
        raise ValueError(
            f"`{name}` must have {channels} {_channel_word(channels)}, as the "
            f"explainer was built with. Received: shape {shape} ({received} "
            f"{_channel_word(received)})"
        )
    for axis, size in zip(("height", "width"), shape[1:3]):
        if size is not None and size < 1:
            raise ValueError(
                f"`{name}` must have a positive {axis}. Received: shape {shape}"
            )


def _channel_word(count):
    return "channel" if count == 1 else "channels"


def check_images(images, name="images", pixels=True, channels=None):
    """Checks a host batch of raw images and returns it as a numpy array.

    `channels`: the channel count the images must have, as in
    `check_image_shape`; `None` (the default) takes any.

    `pixels=False` leaves out the scan of the pixel values (`check_pixel_range`)
    for a caller that runs it elsewhere, as `explain` does beside the
    accelerator's work.
    """
    array = np.asarray(images)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(
            f"`{name}` must hold numbers (uint8 or float pixels in [0, 255]). "
            f"Received: dtype {array.dtype}"
        )
    check_image_shape(array.shape, name, channels)
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` is empty. Received: shape {array.shape}")
    if pixels:
        check_pixel_range(array, name)
    return array


def check_pixel_range(array, name="images"):
    """Checks that `array` holds finite raw pixels in [0, 255].

    NaN or Inf pixels, and values outside [0, 255] (16-bit images,
    preprocessed or normalised images) raise a `ValueError`; float images
    whose values all lie in [0, 1] are most likely scaled already and get a
    warning, since the explainer would see them as almost black.
    """
    # Warned at the caller of `check_images`, its one caller.
    report_pixel_problems(pixel_range_problems(array, name), stacklevel=4)


def report_pixel_problems(problems, stacklevel=2):
    """Raises the error of a `pixel_range_problems` result, or warns its warning.

    Args:
        problems: `(error, warning)`, each a message or `None`.
        stacklevel: the warning's `stacklevel`, counted from this function.
    """
    error, warning = problems
    if error:
        raise ValueError(error)
    if warning:
        warnings.warn(warning, stacklevel=stacklevel)


def pixel_range_problems(array, name="images"):
    """`(error, warning)`: what `check_pixel_range` would say, each or `None`.

    Only reads `array`, so it may run on another thread.
    """
    if array.size == 0:
        return None, None
    # A NaN pixel makes both bounds NaN and an Inf pixel is one of them: the
    # range also tells whether every pixel is finite, in two passes over the
    # pixels rather than three.
    low, high = array.min(), array.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        return f"`{name}` must be finite. Received: {bad} NaN or Inf pixel values", None
    if low < PIXEL_RANGE[0] or high > PIXEL_RANGE[1]:
        return (
            f"`{name}` must hold raw pixels in [0, 255] (uint8, or float on the "
            f"same scale). Received: values from {low} to {high} "
            f"(dtype {array.dtype}). " + _range_fix(array.dtype, low, high)
        ), None
    if np.issubdtype(array.dtype, np.floating) and high <= 1.0 and low < high:
        return None, (
            f"`{name}` hold float values in [0, 1], but the explainer expects raw "
            "pixels in [0, 255]: multiply them by 255 (the networks' own "
            "preprocessing scales them)."
        )
    return None, None


def _range_fix(dtype, low, high):
    if np.issubdtype(dtype, np.integer) and high <= 65535 and low >= 0:
        return "Convert 16-bit images to 8 bits first (divide by 257)."
    if low < 0:
        return (
            "Pass the images before normalisation: the networks' preprocessing "
            "normalises them."
        )
    return "Rescale them to [0, 255] first."


def check_positive_int(name, value):
    """Checks that the argument `name` is a positive integer; returns it as `int`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )
    return int(value)


def check_float(name, value, minimum=None, above=None, maximum=None):
    """Checks that the argument `name` is a finite real number; returns a `float`.

    NaN, Inf, booleans and strings (`"2"`) are refused, and so is a value
    below `minimum`, not above `above` or above `maximum` (each bound when
    given).
    """
    bounds = [f">= {minimum}"] if minimum is not None else []
    bounds += [f"> {above}"] if above is not None else []
    bounds += [f"<= {maximum}"] if maximum is not None else []
    number = not isinstance(value, bool) and isinstance(
        value, (int, float, np.integer, np.floating)
    )
    if not (
        number
        and np.isfinite(value)
        and (minimum is None or value >= minimum)
        and (above is None or value > above)
        and (maximum is None or value <= maximum)
    ):
        wanted = " ".join(["a finite number", " and ".join(bounds)]).strip()
        raise ValueError(f"`{name}` must be {wanted}. Received: {name}={value!r}")
    return float(value)


def check_positive_float(name, value):
    """Checks that the argument `name` is a finite number > 0; returns a `float`."""
    return check_float(name, value, above=0)


def check_finite_weights(weights, source):
    """Refuses weights that cannot give usable maps or scores, naming the weight.

    A weight holding NaN or Inf values, or a batch normalisation variance
    (Keras' `moving_variance`, PyTorch's `running_var`) below 0, whose square
    root is NaN, raises a `ValueError` naming it and `source`. Integer weights
    (counters, seeds) are not read.

    Args:
        weights: a Keras layer or model (its weights, named by their
            `path`), or a dict of names to arrays.
        source: str. Where the weights were read from, for the message,
            e.g. `"the explainer 'explainer.keras'"`.
    """
    if isinstance(weights, dict):
        named = weights.items()
    else:
        named = ((variable.path, variable) for variable in weights.weights)
    for name, value in named:
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if array.dtype.kind not in "fc" and "float" not in array.dtype.name:
            continue
        finite = np.isfinite(array)
        if not finite.all():
            bad = int(array.size - np.count_nonzero(finite))
            raise ValueError(
                f"The weight {name!r} of {source} holds NaN or Inf values ({bad} "
                f"of {array.size}), so every map or score would be NaN: it is "
                "damaged or comes from a training that diverged."
            )
        if name.endswith(("moving_variance", "running_var")) and (array < 0).any():
            raise ValueError(
                f"The batch normalisation variance {name!r} of {source} is "
                f"negative (down to {array.min()}), so its square root is NaN: "
                "it is damaged or not a trained network's."
            )


def check_predict_options(batch_size, verbose):
    """Checks `predict`'s `batch_size` (or `None`, Keras' 32) and `verbose`."""
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    if not isinstance(verbose, (str, int, np.integer)):
        raise TypeError(
            f"`verbose` must be one of {VERBOSITIES}. Received: verbose={verbose!r}"
        )
    check_option("verbose", verbose, VERBOSITIES)


def check_num_classes(num_classes, classifier_classes=None):
    """Checks `num_classes` (`None` or a positive int) against the classifier's."""
    if num_classes is not None:
        check_positive_int("num_classes", num_classes)
    for count in (num_classes, classifier_classes):
        if count is not None and int(count) < 2:
            raise ValueError(
                "P-TAME explains a classifier with at least 2 classes: with one, "
                "every map keeps the only class and means nothing. Received: "
                f"{count} class"
            )
    if None not in (num_classes, classifier_classes) and int(num_classes) != int(
        classifier_classes
    ):
        raise ValueError(
            "`num_classes` disagrees with the classifier's output. Received: "
            f"num_classes={num_classes}, classifier outputs {classifier_classes} scores"
        )


def check_classes(classes, count, num_classes, name="classes", several=False):
    """Checks class indices, one per image, and returns them as int32 numpy.

    With `several=True`, `(count, K)` (`K` classes per image, `K >= 1`) is
    accepted as well as `(count,)`.
    """
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
    rows = several and array.ndim == 2 and array.shape[1] >= 1
    if array.shape[:1] != (count,) or array.ndim != 1 + rows:
        shapes = f"({count},) or ({count}, k), k >= 1" if several else f"({count},)"
        raise ValueError(
            f"`{name}` must hold class indices per image: shape {shapes}. "
            f"Received: shape {array.shape}"
        )
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"`{name}` must lie in [0, {num_classes}). Received: values from "
            f"{array.min()} to {array.max()}"
        )
    return array.astype(np.int32)


def unpack_inputs(inputs):
    """`(images, classes)` from images alone or a dict with `"images"` and
    optional `"classes"`."""
    if isinstance(inputs, dict):
        images = inputs.get("images", inputs.get("image"))
        return images, inputs.get("classes")
    return inputs, None


def check_training_data(x, ensure_built):
    """Checks what `fit` was given before training; builds through `ensure_built`.

    Arrays are checked whole; a `tf.data.Dataset` from its `element_spec`
    (see `_check_dataset`).
    """
    if x is None:
        raise ValueError("`fit` needs images. Received: x=None")
    x = unpack_inputs(x)[0]
    if hasattr(x, "element_spec"):  # a tf.data.Dataset
        _check_dataset(x, ensure_built)
        return
    if isinstance(x, (np.ndarray, list)) or hasattr(x, "__array__"):
        images = check_images(x)
        ensure_built(images.shape)


def _check_dataset(dataset, ensure_built):
    # Checked from `element_spec`, without reading a batch: a batch read
    # here would start a second pipeline beside the one `fit` iterates,
    # filling a second shuffle buffer (GBs of host memory, and the
    # warm-up twice). Only a dataset whose spec leaves the image size open
    # is read, once, to learn the size to build for. Under JAX and PyTorch
    # the pipeline only feeds data: TensorFlow should not hold the GPU.
    tf = import_tensorflow()

    if int(dataset.cardinality()) == 0:
        raise ValueError("The training dataset is empty. Received: 0 batches")
    spec = dataset.element_spec
    # images, (images, labels), or either with a dict of "images" inside.
    element = spec[0] if isinstance(spec, (tuple, list)) else spec
    images = unpack_inputs(element)[0]
    if not isinstance(images, tf.TensorSpec):
        raise ValueError(
            "The dataset must yield images, (images, labels) or a dict with an "
            f"'images' key. Received: an element spec {spec}"
        )
    if images.shape.rank == 3:
        raise ValueError(
            "The dataset must yield batches of images (batch, height, width, "
            "channels). "
            f"Received: single images of shape {tuple(images.shape)}; call "
            "`.batch(...)` on the dataset first."
        )
    if not (images.dtype.is_integer or images.dtype.is_floating):
        raise ValueError(
            "The dataset images must hold numbers (uint8 or float pixels in "
            f"[0, 255]). Received: dtype {images.dtype.name}"
        )
    # An unknown rank is learnt, like an open size, from the first batch.
    shape = (None,) * 4 if images.shape.rank is None else tuple(images.shape)
    check_image_shape(shape, name="dataset images")
    if None in shape[1:3]:
        first = next(iter(dataset.take(1)), None)
        if first is None:
            raise ValueError("The training dataset is empty. Received: no batch")
        element = first[0] if isinstance(first, (tuple, list)) else first
        shape = tuple(unpack_inputs(element)[0].shape)
    ensure_built(shape)
