"""Synthetic shapes on clutter: images whose class lives in one known region.

Each image holds exactly one class-defining object (its class is its shape) at
a random place and size, in a random bright colour, on a dark background of
smooth colour gradients, soft blobs, thin lines and pixel noise. None of the clutter can define a class:
blobs have no edges, lines are one pixel wide while every shape is at least
three pixels thick, and the noise covers the whole image. The boolean mask of
the object's pixels comes with each image, so explanations can be scored
honestly offline, with `keras_ptame.metrics.pointing_game` and `mass_inside`.
"""

import numpy as np

from keras_ptame.utils.tf_runtime import import_tensorflow

SHAPE_NAMES = (
    "square",
    "disc",
    "triangle",
    "cross",
    "ring",
    "bar",
    "diamond",
    "tee",
)

# Thickness (as a share of the half-size) of the cross, bar and tee arms, and
# the ring's hole radius: thick enough that a shape is never mistaken for a
# one-pixel clutter line, and that a ring's hole stays small.
_ARM = 0.34
_RING_HOLE = 0.45
# A dark scene (channel values of the gradient and of the blobs stay below
# these): P-TAME's black fill must make a removed object vanish into the
# background, not leave a dark silhouette of the same shape, which a
# colour-blind shape classifier still recognises. Thin lines may be bright.
_BACKGROUND_MAX = 50.0
_BLOB_MAX = 90.0
# Channel values of a dark object (`dark_classes`): below the background's
# typical level, so the object shows as a near-black shape, and a black fill
# (the paper's) looks exactly like it.
_DARK_MAX = 8.0
# The object's level in a grayscale image and in an extra (near-infrared-like)
# band: bright on the dark scene, as its brightest RGB channel is (>= 150),
# whatever its hue (a saturated blue would be dark in luminance).
_BRIGHT = (150.0, 255.0)
# ITU-R BT.601 luma weights: grayscale images are the scene's luminance.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def shape_names(num_classes=6):
    """The class names of the first `num_classes` shapes.

    Args:
        num_classes: int. Number of classes, 2 to 8. Defaults to `6`.

    Returns:
        A list of `num_classes` str, index = label.

    Examples:
    ```python
    from keras_ptame.datasets import shape_names

    shape_names(3)   # ["square", "disc", "triangle"]
    ```
    """
    _check_num_classes(num_classes)
    return list(SHAPE_NAMES[:num_classes])


def make_shapes(
    count,
    image_size=64,
    num_classes=6,
    seed=0,
    size_range=(0.25, 0.45),
    noise=10.0,
    dark_classes=(),
    channels=3,
):
    """Generates `count` images of one shape on clutter, with labels and masks.

    The classes are balanced (each appears `count // num_classes` or one more
    times, in random order). The object lies fully inside the image with a
    margin of one pixel; its colour is drawn far enough from the background
    under it that it stays visible. The same arguments give the same arrays.

    Args:
        count: int. Number of images.
        image_size: int. Height and width in pixels, at least 16. Defaults to
            `64`.
        num_classes: int. Number of shape classes, 2 to 8 (see
            `shape_names`). Defaults to `6`.
        seed: int. Seed of the random generator. Defaults to `0`.
        size_range: pair of float. The object's side (its bounding box), as a
            share of `image_size`, is drawn uniformly in this range. Defaults
            to `(0.25, 0.45)`.
        noise: float. Standard deviation of the Gaussian pixel noise, in
            [0, 255] units. Defaults to `10.0`.
        dark_classes: sequence of int. Classes whose object is near-black
            (in every channel). Defaults to `()`.
        channels: int. `3`: RGB. `1`: grayscale, the luminance of the RGB
            scene with the object at a bright level (150 to 255; a dark
            class's stays dark). `4` or more: the RGB images themselves (the
            same pixels as with `3`) and `channels - 3` near-infrared-like
            bands: a dim smooth gradient where the object is bright.
            Defaults to `3`.

    Returns:
        A tuple `(images, labels, masks)`: uint8 `(count, H, W, channels)`
        images, int32 `(count,)` labels and bool `(count, H, W)` masks of the
        object's pixels.

    Examples:
    ```python
    from keras_ptame.datasets import make_shapes

    images, labels, masks = make_shapes(100, image_size=64, seed=0)
    images.shape, labels.shape, masks.shape   # (100, 64, 64, 3) (100,) (100, 64, 64)
    gray = make_shapes(10, channels=1)[0]      # (10, 64, 64, 1)
    ```
    """
    count = _check_positive_int(count, "count", minimum=0)
    image_size = _check_positive_int(image_size, "image_size", minimum=16)
    _check_num_classes(num_classes)
    low, high = _check_size_range(size_range, image_size)
    if noise < 0:
        raise ValueError(f"`noise` must be >= 0. Received: noise={noise}")
    dark = _check_dark_classes(dark_classes, num_classes)
    channels = _check_positive_int(channels, "channels", minimum=1)
    if channels == 2:
        raise ValueError(
            "`channels` must be 1 (grayscale), 3 (RGB) or 4 or more (RGB and "
            "near-infrared-like bands). Received: channels=2"
        )

    rng = np.random.default_rng(seed)
    # The other channels draw from a generator of their own, so that the
    # RGB images stay those of `channels=3`.
    extra = np.random.default_rng([int(seed), channels])
    labels = np.resize(np.arange(num_classes, dtype=np.int32), count)
    labels = rng.permutation(labels).astype(np.int32)
    images = np.empty((count, image_size, image_size, channels), np.uint8)
    masks = np.empty((count, image_size, image_size), bool)
    grid = np.mgrid[0:image_size, 0:image_size].astype(np.float32) + 0.5
    for index, label in enumerate(labels):
        canvas = _background(rng, image_size)
        side = rng.uniform(low, high) * image_size
        mask = _shape_mask(rng, int(label), side, grid, image_size)
        if label in dark:
            colour = rng.uniform(0, _DARK_MAX, 3)
        else:
            colour = _object_colour(rng, canvas[mask].mean(axis=0))
        canvas[mask] = colour
        canvas += rng.normal(0.0, noise, canvas.shape).astype(np.float32)
        if channels != 3:
            canvas = _other_channels(
                canvas, mask, label in dark, extra, noise, channels
            )
        images[index] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        masks[index] = mask
    return images, labels, masks


def _other_channels(rgb, mask, dark, rng, noise, channels):
    """The `channels` bands of a scene drawn in RGB (see `make_shapes`)."""
    if channels == 1:
        gray = rgb @ _LUMA
        if not dark:
            level = rng.uniform(*_BRIGHT)
            gray[mask] = level + rng.normal(0.0, noise, int(mask.sum()))
        return gray[..., None]
    size = rgb.shape[0]
    bands = [rgb]
    for _ in range(channels - 3):
        coords = np.arange(size, dtype=np.float32) + 0.5
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.add.outer(np.sin(angle) * coords, np.cos(angle) * coords)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        start, end = rng.uniform(0, _BACKGROUND_MAX, 2)
        band = (start + (end - start) * ramp).astype(np.float32)
        band[mask] = rng.uniform(0, _DARK_MAX) if dark else rng.uniform(*_BRIGHT)
        band += rng.normal(0.0, noise, band.shape).astype(np.float32)
        bands.append(band[..., None])
    return np.concatenate(bands, axis=-1)


def make_backgrounds(count, image_size=64, seed=0, noise=10.0):
    """Generates `count` cluttered backgrounds with no object, as `make_shapes` draws them.

    Useful as a "no object" class: a classifier trained with it has no
    shape class that it predicts for an empty (or black) image, so an
    explainer cannot keep a shape's prediction by removing everything.

    Args:
        count: int. Number of images.
        image_size: int. Height and width in pixels, at least 16. Defaults to
            `64`.
        seed: int. Seed of the random generator. Defaults to `0`.
        noise: float. Standard deviation of the Gaussian pixel noise.
            Defaults to `10.0`.

    Returns:
        uint8 array `(count, H, W, 3)`.

    Examples:
    ```python
    from keras_ptame.datasets import make_backgrounds

    empty = make_backgrounds(10, image_size=64, seed=0)   # (10, 64, 64, 3)
    ```
    """
    count = _check_positive_int(count, "count", minimum=0)
    image_size = _check_positive_int(image_size, "image_size", minimum=16)
    if noise < 0:
        raise ValueError(f"`noise` must be >= 0. Received: noise={noise}")
    rng = np.random.default_rng(seed)
    images = np.empty((count, image_size, image_size, 3), np.uint8)
    for index in range(count):
        canvas = _background(rng, image_size)
        canvas += rng.normal(0.0, noise, canvas.shape).astype(np.float32)
        images[index] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return images


def make_negatives(count, image_size=64, num_classes=6, seed=0):
    """Generates `2 * count` images with no visible object, for a "none" class.

    `count` backgrounds as `make_backgrounds` draws them, half of them
    darkened by a random factor down to black, then `count` images of
    `make_shapes` whose object was blacked out. A classifier trained with
    them as a class of their own has no shape class for a black image, nor
    for the black silhouette that remains when an explainer removes an
    object, so that only a visible object keeps a shape's prediction.

    Args:
        count: int. Number of images of each kind.
        image_size: int. Height and width in pixels, at least 16. Defaults to
            `64`.
        num_classes: int. Shape classes of the blacked-out objects. Defaults
            to `6`.
        seed: int. Seed of the random generators. Defaults to `0`.

    Returns:
        uint8 array `(2 * count, H, W, 3)`: the backgrounds first.

    Examples:
    ```python
    from keras_ptame.datasets import make_negatives

    none = make_negatives(10, image_size=64, seed=0)   # (20, 64, 64, 3)
    ```
    """
    empty = make_backgrounds(count, image_size=image_size, seed=seed)
    rng = np.random.default_rng(seed + 10_000)
    darkening = np.where(rng.random(count) < 0.5, rng.random(count), 1.0)
    empty = np.rint(empty * darkening[:, None, None, None]).astype(np.uint8)
    holes, _, masks = make_shapes(
        count, image_size=image_size, num_classes=num_classes, seed=seed + 20_000
    )
    return np.concatenate([empty, holes * ~masks[..., None]])


def shapes_dataset(
    count,
    batch_size=32,
    image_size=64,
    num_classes=6,
    seed=0,
    with_masks=False,
    shuffle=False,
    **kwargs,
):
    """The `make_shapes` data as a batched `tf.data.Dataset`.

    Yields `(images, labels)`, ready for `fit` (P-TAME ignores the labels),
    or `(images, labels, masks)` with `with_masks=True`, for evaluation (do
    not pass that form to `fit`: Keras reads a third item as sample weights).
    Needs TensorFlow.

    Args:
        count: int. Number of images.
        batch_size: int. Images per batch. Defaults to `32`.
        image_size: int. Defaults to `64`.
        num_classes: int. Defaults to `6`.
        seed: int. Seed of the images and of the shuffling. Defaults to `0`.
        with_masks: bool. Whether to yield the masks too. Defaults to `False`.
        shuffle: bool. Whether to reshuffle the images every epoch. Defaults
            to `False`.
        **kwargs: passed to `make_shapes` (`size_range`, `noise`,
            `dark_classes`, `channels`: 1 for grayscale, 4 or more for RGB
            and near-infrared-like bands).

    Returns:
        A `tf.data.Dataset` of uint8 images, int32 labels (and bool masks).

    Examples:
    ```python
    from keras_ptame.datasets import shapes_dataset

    dataset = shapes_dataset(256, batch_size=32, seed=0)
    explainer.fit(dataset, epochs=2)
    ```
    """
    # Under JAX and PyTorch TensorFlow only feeds data: the GPU stays theirs.
    tf = import_tensorflow()

    batch_size = _check_positive_int(batch_size, "batch_size", minimum=1)
    images, labels, masks = make_shapes(
        count, image_size=image_size, num_classes=num_classes, seed=seed, **kwargs
    )
    items = (images, labels, masks) if with_masks else (images, labels)
    dataset = tf.data.Dataset.from_tensor_slices(items)
    if shuffle:
        dataset = dataset.shuffle(
            max(1, count), seed=seed, reshuffle_each_iteration=True
        )
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# === Drawing ===


def _background(rng, size):
    """Smooth gradient + soft blobs + thin lines, float32 `(H, W, 3)`."""
    # Every term is separable or a sum over rows and columns: outer products
    # of 1-D pixel coordinates keep this cheap (it dominates generation time).
    coords = np.arange(size, dtype=np.float32) + 0.5
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.add.outer(np.sin(angle) * coords, np.cos(angle) * coords)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    start, end = rng.uniform(0, _BACKGROUND_MAX, (2, 3)).astype(np.float32)
    canvas = start + (end - start) * ramp[..., None]
    # Soft blobs: Gaussian bumps without edges, so never a disc or a ring.
    for _ in range(rng.integers(2, 6)):
        centre = rng.uniform(0, size, 2)
        sigma = rng.uniform(0.06, 0.16) * size
        bumps = np.exp(-((coords[None] - centre[:, None]) ** 2) / (2 * sigma**2))
        weight = np.outer(bumps[0], bumps[1]).astype(np.float32)
        weight *= rng.uniform(0.3, 0.7)
        colour = rng.uniform(0, _BLOB_MAX, 3).astype(np.float32)
        canvas += weight[..., None] * (colour - canvas)
    # Thin lines: one pixel wide, much thinner than any shape's stroke.
    for _ in range(rng.integers(2, 6)):
        angle = rng.uniform(0, np.pi)
        point = rng.uniform(0, size, 2)
        offset = point[0] * np.cos(angle) - point[1] * np.sin(angle)
        distance = np.subtract.outer(
            np.cos(angle) * coords, np.sin(angle) * coords + offset
        )
        canvas[np.abs(distance) < 0.5] = rng.uniform(0, 200, 3)
    return canvas


def _shape_mask(rng, label, side, grid, size):
    """The boolean mask of shape `label` with bounding box `side`, placed fully inside."""
    half = side / 2
    # Centre such that the box keeps a one-pixel margin inside the image.
    low, high = 1 + half, size - 1 - half
    centre = rng.uniform(low, high, 2)
    v = (grid[0] - centre[0]) / half
    u = (grid[1] - centre[1]) / half
    if rng.integers(2):
        u, v = v, u  # a random quarter turn for the shapes that have one
    if rng.integers(2):
        v = -v  # and a random flip (triangle, tee)
    name = SHAPE_NAMES[label]
    box = (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if name == "square":
        mask = box
    elif name == "disc":
        mask = u**2 + v**2 <= 1
    elif name == "triangle":
        mask = box & (np.abs(u) <= (v + 1) / 2)
    elif name == "cross":
        mask = box & ((np.abs(u) <= _ARM) | (np.abs(v) <= _ARM))
    elif name == "ring":
        radius = u**2 + v**2
        mask = (radius <= 1) & (radius >= _RING_HOLE**2)
    elif name == "bar":
        mask = box & (np.abs(v) <= _ARM)
    elif name == "diamond":
        mask = np.abs(u) + np.abs(v) <= 1
    else:  # tee
        mask = box & ((v <= -1 + 2 * _ARM) | (np.abs(u) <= _ARM))
    return mask


def _object_colour(rng, background):
    """A random bright colour, at least ~100 (RGB distance) from `background`."""
    best, best_score = None, -1.0
    for _ in range(64):
        colour = rng.uniform(0, 255, 3)
        distance = float(np.linalg.norm(colour - background))
        if distance >= 100 and colour.max() >= 150:
            return colour
        score = min(distance, colour.max())
        if score > best_score:
            best, best_score = colour, score
    return best


# === Checks ===


def _check_positive_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}. Received: {name}={value}")
    return int(value)


def _check_num_classes(num_classes):
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or not 2 <= num_classes <= len(SHAPE_NAMES)
    ):
        raise ValueError(
            f"`num_classes` must be an integer from 2 to {len(SHAPE_NAMES)}. "
            f"Received: num_classes={num_classes!r}"
        )


def _check_dark_classes(dark_classes, num_classes):
    try:
        dark = {int(c) for c in dark_classes}
    except (TypeError, ValueError) as error:
        raise ValueError(
            "`dark_classes` must be a sequence of class indices. "
            f"Received: dark_classes={dark_classes!r}"
        ) from error
    if any(not 0 <= c < num_classes for c in dark):
        raise ValueError(
            f"`dark_classes` must be class indices from 0 to {num_classes - 1}. "
            f"Received: dark_classes={dark_classes!r}"
        )
    return dark


def _check_size_range(size_range, image_size):
    try:
        low, high = (float(v) for v in size_range)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`size_range` must be a pair of floats. Received: size_range={size_range!r}"
        ) from error
    if not 0 < low <= high <= 0.9:
        raise ValueError(
            "`size_range` must satisfy 0 < low <= high <= 0.9. "
            f"Received: size_range={size_range!r}"
        )
    if low * image_size < 8:
        raise ValueError(
            "The smallest object must be at least 8 pixels wide. Received: "
            f"size_range={size_range!r} with image_size={image_size} "
            f"({low * image_size:.1f} pixels)"
        )
    return low, high
