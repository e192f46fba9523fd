"""Localisation against ground truth: pointing game and mass inside the object.

These are the package's one definition of both scores (the demo, the
evaluation table and the benchmarks use them). A map that says nothing (all
equal, or all zero) scores chance, the object's share of the image, under
both; see `pointing_game` and `mass_inside`.
"""

import numpy as np
from scipy import ndimage

from keras_ptame.utils.maps import check_maps

BOX_FORMATS = ("xyxy", "yxyx", "rel_xyxy", "rel_yxyx")


def boxes_to_masks(boxes, shape, box_format="xyxy"):
    """Rasterises boxes into boolean masks.

    Args:
        boxes: per image, one box `(4,)` or several `(K, 4)`: an array
            `(N, 4)`, `(N, K, 4)` or a list of such arrays. Rows of NaN or
            with no area are ignored (padding).
        shape: `(N, H, W)` of the masks.
        box_format: str. `"xyxy"` or `"yxyx"` in pixels (max edges
            exclusive), or `"rel_xyxy"` / `"rel_yxyx"` as fractions of the
            image size. Defaults to `"xyxy"`.

    Returns:
        bool numpy array `(N, H, W)`, `True` inside any box of the image.
    """
    if box_format not in BOX_FORMATS:
        raise ValueError(
            f"`box_format` must be one of {BOX_FORMATS}. Received: box_format={box_format!r}"
        )
    count, height, width = shape
    if isinstance(boxes, np.ndarray) and boxes.ndim == 2:
        boxes = boxes[:, None]
    if len(boxes) != count:
        raise ValueError(
            f"`boxes` must hold boxes for each of the {count} images. "
            f"Received: boxes for {len(boxes)} images"
        )
    masks = np.zeros((count, height, width), dtype=bool)
    for index, image_boxes in enumerate(boxes):
        image_boxes = np.asarray(image_boxes, dtype=np.float64).reshape(-1, 4)
        for box in image_boxes:
            if not np.isfinite(box).all():
                continue
            if box_format.endswith("yxyx"):
                y0, x0, y1, x1 = box
            else:
                x0, y0, x1, y1 = box
            if box_format.startswith("rel_"):
                y0, y1, x0, x1 = y0 * height, y1 * height, x0 * width, x1 * width
            y0, x0 = max(int(np.floor(y0)), 0), max(int(np.floor(x0)), 0)
            y1, x1 = min(int(np.ceil(y1)), height), min(int(np.ceil(x1)), width)
            if y1 > y0 and x1 > x0:
                masks[index, y0:y1, x0:x1] = True
    return masks


def ground_truth_masks(shape, masks=None, boxes=None, box_format="xyxy"):
    """The ground-truth masks `(N, H, W)` from either masks or boxes."""
    if (masks is None) == (boxes is None):
        raise ValueError("Pass exactly one of `masks` and `boxes`.")
    if boxes is not None:
        return boxes_to_masks(boxes, shape, box_format)
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.shape != tuple(shape):
        raise ValueError(
            f"`masks` must be one mask per map, of shape {tuple(shape)}. "
            f"Received: masks with shape {masks.shape}"
        )
    return masks > 0


def pointing_game(maps, masks=None, boxes=None, box_format="xyxy", tolerance=0):
    """Does each map's peak fall on the object? One score per map.

    The score is the chance that the map's peak, picked uniformly among its
    tied maxima, lies on the object (grown by `tolerance` pixels):

    - a unique maximum scores 1 on the object and 0 off it;
    - a tied plateau scores the share of its pixels on the object;
    - so an all-equal map (all zero, say) scores the object's share of the
      image, which is chance: never a free hit, nor a free miss;
    - an image without an object (an empty mask) scores 0.

    Args:
        maps: array `(N, H, W)`.
        masks: optional array `(N, H, W)`, nonzero on the object.
        boxes: optional boxes instead of masks (see `boxes_to_masks`).
        box_format: str. Format of `boxes`. Defaults to `"xyxy"`.
        tolerance: int. Pixels by which the object is grown (the original
            pointing game uses 15 at 224 pixels). Defaults to `0`.

    Returns:
        float32 numpy array `(N,)` in [0, 1]; its mean is the hit rate.

    Examples:
    ```python
    import numpy as np
    from keras_ptame.metrics import pointing_game

    maps = np.zeros((1, 8, 8)); maps[0, 2, 3] = 1.0
    pointing_game(maps, boxes=np.array([[2, 1, 5, 4]]))   # array([1.])
    pointing_game(np.zeros((1, 8, 8)), boxes=np.array([[0, 0, 4, 4]]))   # array([0.25])
    ```
    """
    if not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(
            "`tolerance` must be a non-negative integer number of pixels. "
            f"Received: tolerance={tolerance!r}"
        )
    maps = check_maps(maps, dtype=np.float64)
    truth = ground_truth_masks(maps.shape, masks, boxes, box_format)
    if tolerance > 0:
        yy, xx = np.mgrid[-tolerance : tolerance + 1, -tolerance : tolerance + 1]
        disc = yy**2 + xx**2 <= tolerance**2
        truth = np.stack([ndimage.binary_dilation(t, disc) for t in truth])
    peaks = maps == maps.max(axis=(1, 2), keepdims=True)
    hits = (peaks & truth).sum(axis=(1, 2)) / peaks.sum(axis=(1, 2))
    return hits.astype(np.float32)


def mass_inside(maps, masks=None, boxes=None, box_format="xyxy"):
    """Share of each map's mass that lies on the object.

    Like `pointing_game`, a map that says nothing scores chance: a constant
    map, and an all-zero one (which has no mass to share), score the
    object's share of the image. An image without an object scores 0.

    Args:
        maps: array `(N, H, W)` of non-negative maps.
        masks: optional array `(N, H, W)`, nonzero on the object.
        boxes: optional boxes instead of masks (see `boxes_to_masks`).
        box_format: str. Format of `boxes`. Defaults to `"xyxy"`.

    Returns:
        float32 numpy array `(N,)` in [0, 1].

    Examples:
    ```python
    import numpy as np
    from keras_ptame.metrics import mass_inside

    masks = np.zeros((1, 4, 4), bool); masks[0, :2] = True
    mass_inside(np.ones((1, 4, 4)), masks)   # array([0.5])
    ```
    """
    maps = check_maps(maps, dtype=np.float64)
    if (maps < 0).any():
        raise ValueError("`maps` must be non-negative. Received: negative values")
    truth = ground_truth_masks(maps.shape, masks, boxes, box_format)
    total = maps.sum(axis=(1, 2))
    inside = (maps * truth).sum(axis=(1, 2))
    share = np.where(
        total > 0, inside / np.where(total > 0, total, 1.0), truth.mean(axis=(1, 2))
    )
    return share.astype(np.float32)
