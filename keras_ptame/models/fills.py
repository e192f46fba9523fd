"""What replaces the pixels a mask removes, and resizing masks to images.

P-TAME multiplies an image by its map: where the map is 0 the pixel is
replaced by the fill, black (zero) in the paper.
"""

import numpy as np
from keras import ops

FILLS = ("black", "mean", "blur")


def apply_fill(images, mask, fill="black"):
    """Keeps `images` where `mask` `(B, h, w, 1)` is 1, the `fill` where 0.

    Args:
        images: `(B, H, W, C)` raw pixels.
        mask: `(B, h, w, 1)` in [0, 1], resized bilinearly to `(H, W)`.
        fill: str. `"black"` (zero), `"mean"` (each image's mean colour) or
            `"blur"` (a Gaussian-blurred copy, sigma 5 pixels). Defaults to
            `"black"`.
    """
    mask = resize_like(mask, images)
    if fill == "black":
        return images * mask
    if fill == "mean":
        filled = ops.mean(images, axis=(1, 2), keepdims=True)
    else:
        filled = gaussian_blur(images)
    return images * mask + filled * (1.0 - mask)


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
