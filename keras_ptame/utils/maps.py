"""Saliency maps on the host: checking, normalising and ranking their pixels.

Shared by the metrics, the baselines and the evaluation table. A batch of
maps is a numpy array `(N, H, W)`, one map per image.
"""

import numpy as np


def check_maps(maps, images=None, dtype="float32"):
    """Checks a batch of finite maps and returns it as `dtype` `(N, H, W)`.

    A trailing channel axis of size 1 is dropped.

    Args:
        maps: array `(N, H, W)` or `(N, H, W, 1)`.
        images: optional array `(N, H, W, ...)`: if given, there must be
            exactly one map per image, of the image's size. Defaults to
            `None` (any non-empty batch of maps).
        dtype: the float dtype returned. Defaults to `"float32"`.

    Returns:
        numpy array `(N, H, W)` of `dtype`.
    """
    maps = np.asarray(maps)
    if maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    if images is not None:
        expected = tuple(np.shape(images)[:3])
        if maps.shape != expected:
            raise ValueError(
                f"`maps` must hold one map per image, of shape {expected}. "
                f"Received: maps with shape {maps.shape}"
            )
    elif maps.ndim != 3 or maps.shape[0] == 0:
        raise ValueError(
            "`maps` must be a non-empty batch of maps of shape (N, H, W). "
            f"Received: maps with shape {maps.shape}"
        )
    maps = maps.astype(dtype)
    if not np.isfinite(maps).all():
        raise ValueError("`maps` must be finite. Received: NaN or Inf values")
    return maps


def normalize_maps(maps, epsilon=1e-8):
    """Min-max normalises each map `(N, H, W)` to [0, 1] (constant maps to 0)."""
    maps = np.asarray(maps, dtype=np.float32)
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return ((maps - low) / np.maximum(high - low, epsilon)).astype(np.float32)


def ranking(maps, descending=True):
    """Pixel order of each map, flattened `(N, H * W)`, ties in raster order.

    A stable sort keeps ties (a constant map, say) in raster order, so that
    the result depends only on the map.
    """
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    return np.argsort(-flat if descending else flat, axis=1, kind="stable")
