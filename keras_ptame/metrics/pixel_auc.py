"""Pixel AUC: how well a map's values rank the object's pixels above the rest."""

import numpy as np
from scipy import stats

from keras_ptame.metrics.localization import ground_truth_masks
from keras_ptame.utils.maps import check_maps


def pixel_auc(maps, masks=None, boxes=None, box_format="xyxy"):
    """The area under the ROC curve of each map as a detector of its object.

    The chance that a pixel drawn on the object has a higher map value than
    one drawn off it (ties count half): 1 when the map is higher on every
    object pixel than anywhere else, 0 when it is the object's inverse, 0.5
    for a map that says nothing (all equal, all zero). Unlike the pointing
    game it reads the whole map, not its peak. An image whose mask is empty
    or full scores 0.5 (there is nothing to rank).

    Args:
        maps: array `(N, H, W)`.
        masks: optional array `(N, H, W)`, nonzero on the object.
        boxes: optional boxes instead of masks (see
            `keras_ptame.metrics.boxes_to_masks`).
        box_format: str. Format of `boxes`. Defaults to `"xyxy"`.

    Returns:
        float32 numpy array `(N,)` in [0, 1].

    Examples:
    ```python
    import numpy as np
    from keras_ptame.metrics.pixel_auc import pixel_auc

    masks = np.zeros((2, 4, 4), bool); masks[:, :2] = True
    maps = np.stack([masks.astype(float)[0], 1.0 - masks[1]])
    pixel_auc(maps, masks)   # array([1., 0.])
    ```
    """
    maps = check_maps(maps, dtype=np.float64)
    truth = ground_truth_masks(maps.shape, masks, boxes, box_format)
    flat_maps = maps.reshape(len(maps), -1)
    flat_truth = truth.reshape(len(truth), -1)
    # Mann-Whitney: the object pixels' rank sum, minus its least value, over
    # the number of (object, background) pairs; average ranks count ties half.
    ranks = stats.rankdata(flat_maps, axis=1)
    inside = flat_truth.sum(axis=1)
    outside = flat_truth.shape[1] - inside
    pairs = inside * outside
    rank_sum = (ranks * flat_truth).sum(axis=1)
    auc = (rank_sum - inside * (inside + 1) / 2) / np.maximum(pairs, 1)
    return np.where(pairs > 0, auc, 0.5).astype(np.float32)
