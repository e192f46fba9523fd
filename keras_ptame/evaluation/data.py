"""Reading the images (and object masks or boxes) `evaluate` scores on."""

import numpy as np

from keras_ptame.utils.validation import check_images


def load_data(data, masks=None, boxes=None):
    """Reads images (and ground truth) from arrays, dicts, tuples or a dataset.

    Args:
        data: an array of images `(N, H, W, 3)`; a dict with `"images"` and
            optional `"masks"` or `"boxes"`; a tuple `(images,)`,
            `(images, labels)` or `(images, labels, masks)` (labels are
            ignored: the explained class is the classifier's prediction); or
            an iterable of batches in one of these forms, such as a
            `tf.data.Dataset` (read whole into memory).
        masks: optional array `(N, H, W)`, overrides what `data` holds.
        boxes: optional boxes, overrides what `data` holds.

    Returns:
        A dict with `"images"` and, when known, `"masks"` or `"boxes"`.
    """
    if hasattr(data, "as_numpy_iterator"):
        data = data.as_numpy_iterator()
    if isinstance(data, (np.ndarray, dict, tuple)) or hasattr(data, "__array__"):
        parts = _parts(data)
    else:
        batches = [_parts(batch) for batch in data]
        if not batches:
            raise ValueError("`data` is empty. Received: an iterable with no batches")
        parts = {}
        for key in batches[0]:
            values = [batch[key] for batch in batches]
            parts[key] = (
                sum((list(v) for v in values), [])
                if key == "boxes"
                else np.concatenate(values, axis=0)
            )
    if masks is not None:
        parts["masks"] = np.asarray(masks)
        parts.pop("boxes", None)
    if boxes is not None:
        parts["boxes"] = boxes
        parts.pop("masks", None)
    parts["images"] = check_images(parts["images"], name="data images")
    return parts


def _parts(item):
    """Splits one batch (array, dict or tuple) into images and ground truth."""
    if isinstance(item, dict):
        images = item.get("images", item.get("image"))
        if images is None:
            raise ValueError(
                "A dict of data must have an 'images' key. "
                f"Received: keys {sorted(item)}"
            )
        parts = {"images": np.asarray(images)}
        for key in ("masks", "boxes"):
            if item.get(key) is not None:
                parts[key] = item[key] if key == "boxes" else np.asarray(item[key])
        return parts
    if isinstance(item, (tuple, list)):
        if not 1 <= len(item) <= 3:
            raise ValueError(
                "Tuples of data must be (images,), (images, labels) or "
                f"(images, labels, masks). Received: a tuple of {len(item)} items"
            )
        parts = {"images": np.asarray(item[0])}
        if len(item) == 3:
            parts["masks"] = np.asarray(item[2])
        return parts
    return {"images": np.asarray(item)}
