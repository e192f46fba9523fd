"""What replaces the pixels a mask removes, and resizing masks to images.

P-TAME multiplies an image by its map: where the map is 0 the pixel is
replaced by the fill, black (zero) in the paper. A map is one value per
pixel, applied to every channel alike, so every fill works for any channel
count (grayscale, RGB, multispectral): each is computed channel by channel,
and none is defined by a colour. The random fills (`"noise"`
and the mixtures) draw new values at every call, from a
`keras.random.SeedGenerator` that the caller owns, so that a compiled
training step draws anew at each step on every backend.
"""

import keras
import numpy as np
from keras import ops

# The fills that depend on the image alone (the paper's is the first).
FILLS = ("black", "mean", "blur")
# Uniform random pixels, new at every call.
RANDOM_FILLS = ("noise",)
# `fill="mixture"`: one of these, drawn per image at every step.
MIXTURE = ("black", "mean", "blur", "noise")
# Every value `fill` takes: one name, or a tuple of names (a mixture).
FILL_NAMES = FILLS + RANDOM_FILLS + ("mixture",)


def check_fill(fill):
    """Checks `fill` and returns it as stored: a str, or a tuple of str.

    Args:
        fill: a name of `FILL_NAMES`, or a sequence of two or more distinct
            names of `FILLS + RANDOM_FILLS` (a mixture: each image draws one
            of them at every step).

    Returns:
        The name, or the tuple of names.

    Raises:
        ValueError: an unknown name, or a mixture of fewer than two.
    """
    if isinstance(fill, str):
        if fill not in FILL_NAMES:
            raise ValueError(
                f"`fill` must be one of {FILL_NAMES} or a tuple of fills. "
                f"Received: fill={fill!r}"
            )
        return fill
    try:
        names = tuple(fill)
    except TypeError:
        names = ()
    single = FILLS + RANDOM_FILLS
    if (
        len(names) < 2
        or len(set(names)) != len(names)
        or any(name not in single for name in names)
    ):
        raise ValueError(
            f"A mixture `fill` must be two or more distinct fills of {single}. "
            f"Received: fill={fill!r}"
        )
    return names


def fill_components(fill):
    """The single fills `fill` draws from: `("black",)`, or a mixture's names."""
    fill = check_fill(fill)
    if fill == "mixture":
        return MIXTURE
    return fill if isinstance(fill, tuple) else (fill,)


def is_random(fill):
    """Whether `fill` draws random values (and so needs a seed)."""
    components = fill_components(fill)
    return len(components) > 1 or components[0] in RANDOM_FILLS


def apply_fill(images, mask, fill="black", seed=None):
    """Keeps `images` where `mask` `(B, h, w, 1)` is 1, the `fill` where 0.

    Args:
        images: `(B, H, W, C)` raw pixels, any number of channels `C`.
        mask: `(B, h, w, 1)` in [0, 1], resized bilinearly to `(H, W)`;
            the same on every channel.
        fill: `"black"` (zero), `"mean"` (each image's mean of each
            channel), `"blur"` (a Gaussian-blurred copy, each channel
            alone, sigma 5 pixels), `"noise"` (uniform random values in
            [0, 255], drawn for each channel), `"mixture"` (each image
            draws one of `MIXTURE`) or a tuple of those names (a mixture of
            them). Defaults to `"black"`.
        seed: the random fills' seed: a `keras.random.SeedGenerator` that
            the caller owns (an int draws the same values every call).
            Defaults to `None`: Keras' global generator, which serves eager
            calls only (a compiled JAX step refuses it).

    Returns:
        The filled images, `(B, H, W, C)`.

    Examples:
    ```python
    import keras, numpy as np
    from keras_ptame.models.fills import apply_fill

    images = np.full((2, 8, 8, 3), 200.0, "float32")
    mask = np.zeros((2, 4, 4, 1), "float32")
    apply_fill(images, mask)   # all zeros
    apply_fill(images, mask, "mixture", seed=keras.random.SeedGenerator(0))
    ```
    """
    images = ops.convert_to_tensor(images)
    mask = resize_like(ops.cast(mask, images.dtype), images)
    if fill == "black":
        return images * mask
    return images * mask + fill_values(images, fill, seed) * (1.0 - mask)


def fill_values(images, fill="black", seed=None):
    """What `apply_fill` puts where a mask is 0, broadcastable to `images`.

    Also the "fill image" itself: what the classifier sees when a map
    keeps nothing. Arguments as in `apply_fill`.
    """
    components = fill_components(fill)
    images = ops.convert_to_tensor(images)
    if len(components) == 1:
        return _single_fill(images, components[0], seed)
    candidates = ops.stack(
        [
            ops.broadcast_to(_single_fill(images, name, seed), ops.shape(images))
            for name in components
        ]
    )
    # One fill per image: a one-hot choice keeps it a product, not a gather,
    # which every backend compiles alike.
    choice = keras.random.randint(ops.shape(images)[:1], 0, len(components), seed=seed)
    weights = ops.cast(ops.one_hot(choice, len(components)), images.dtype)
    return ops.einsum("bk,kbhwc->bhwc", weights, candidates)


def _single_fill(images, name, seed):
    if name == "black":
        return ops.zeros_like(images)
    if name == "mean":
        return ops.mean(images, axis=(1, 2), keepdims=True)
    if name == "blur":
        return gaussian_blur(images)
    return keras.random.uniform(
        ops.shape(images), 0.0, 255.0, dtype=images.dtype, seed=seed
    )


def resize_like(maps, images):
    """Bilinearly resizes `maps` `(B, h, w, K)` to the images' height and width."""
    size = tuple(images.shape[1:3])
    if None in size:
        size = tuple(ops.shape(images)[1:3])
    if tuple(maps.shape[1:3]) == size:
        return maps
    return ops.image.resize(maps, size, interpolation="bilinear")


def gaussian_blur(images, sigma=5.0):
    radius = int(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype("float32")
    channels = images.shape[-1]
    rows = ops.convert_to_tensor(
        np.tile(taps[:, None, None, None], (1, 1, channels, 1))
    )
    cols = ops.convert_to_tensor(
        np.tile(taps[None, :, None, None], (1, 1, channels, 1))
    )

    def blur(x):
        return ops.depthwise_conv(
            ops.depthwise_conv(x, rows, padding="same"), cols, padding="same"
        )

    # Dividing by the blurred ones undoes the darkening by zero padding.
    return blur(images) / blur(ops.ones_like(images))
