"""The options of `explain` that `predict` compiles in, checked.

`resolution`, `normalize`, `zero_flat` and `dtype` shape the maps; `top_k`
the number of classes explained per image. `PTAME` keeps the last ones used
(`_explain_options`) and `predict`'s step compiled for them, and the steps
of the others used before (`use_options`).
"""

import numpy as np

from keras_ptame.utils.validation import check_option

# Where `explain` returns maps: at the images' size, or the decoder's.
RESOLUTIONS = ("input", "decoder")
# How `explain` scales maps. `"minmax"`, the authors' inference: each raw map
# min-max normalised at the decoder's resolution, then upsampled bilinearly.
# `"minmax_upsampled"`, keras_ptame's earlier default: upsampled first, then
# min-max normalised, so that every map spans [0, 1] exactly (the authors'
# maps may miss 0 and 1 by a little, where their extremes fall between the
# decoder's pixel centres). `"sigmoid"`: their sigmoid taken after upsampling
# (the values of the mask the decoder was trained to keep the class with, the
# same pixel order as both min-max maps). `"none"`: the trained-space sigmoid
# maps as they are.
NORMALIZATIONS = ("minmax", "minmax_upsampled", "sigmoid", "none")
# The maps' dtype: float32 in [0, 1], or uint8 in [0, 255] (`round(255 *
# maps)`, computed where the maps are: a quarter of the bytes to copy off an
# accelerator, to store or to send).
MAP_DTYPES = ("float32", "uint8")


def check_explain_options(resolution, normalize, zero_flat, dtype="float32"):
    """Checks `explain`'s map options; returns them as the tuple it compiles:
    `(resolution, normalize, zero_flat, dtype)`."""
    check_option("resolution", resolution, RESOLUTIONS)
    check_option("normalize", normalize, NORMALIZATIONS)
    dtype = _dtype_name(dtype)
    if not isinstance(zero_flat, (bool, np.bool_, int, np.integer)) or (
        zero_flat not in (0, 1)
    ):
        raise TypeError(
            f"`zero_flat` must be a bool. Received: zero_flat={zero_flat!r}"
        )
    return resolution, normalize, bool(zero_flat), dtype


def _dtype_name(dtype):
    """`dtype`'s name if it is one of `MAP_DTYPES` (`"uint8"`, `np.uint8`,
    `np.dtype("uint8")` alike); raises `ValueError` otherwise."""
    try:
        name = np.dtype(dtype).name if dtype is not None else None
    except TypeError:
        name = None
    if name not in MAP_DTYPES:
        raise ValueError(
            f"`dtype` must be one of {MAP_DTYPES}. Received: dtype={dtype!r}"
        )
    return name


def check_top_k(top_k, classes, num_classes=None):
    """Checks `explain`'s `top_k` (against `num_classes` when known); returns it.

    `None` passes; anything else must be an int in [1, num_classes], and
    not given with `classes`.
    """
    if top_k is None:
        return None
    if classes is not None:
        raise ValueError(
            "Pass either `classes` or `top_k`, not both. Received: "
            f"top_k={top_k!r} and `classes`"
        )
    if isinstance(top_k, (bool, np.bool_)) or not isinstance(top_k, (int, np.integer)):
        raise ValueError(f"`top_k` must be an int. Received: top_k={top_k!r}")
    if top_k < 1 or (num_classes is not None and top_k > num_classes):
        limit = "num_classes" if num_classes is None else num_classes
        raise ValueError(f"`top_k` must be in [1, {limit}]. Received: top_k={top_k!r}")
    return int(top_k)


def use_options(explainer, options):
    """Has `explainer.predict` compile `options` in, keeping each set's step.

    `fit`'s removal check explains with options of its own after every
    epoch: without the steps kept, the next `explain` compiled its step anew
    (under TensorFlow that call then took twice as long as the next, on a
    ResNet-50 with batches of 8). A kept step serves only while what else
    it compiled in (the threshold, the misranked classes, the image size)
    is unchanged; `compile` forgets them all.
    """
    if options == explainer._explain_options:
        return
    stamp = (
        explainer.evidence_threshold,
        explainer.misranked_classes,
        getattr(explainer, "_traced_size", None),
    )
    kept = explainer._compiled_explains
    if explainer.predict_function is not None:
        kept[explainer._explain_options] = (stamp, explainer.predict_function)
    explainer._explain_options = options
    old_stamp, step = kept.pop(options, (None, None))
    explainer.predict_function = step if old_stamp == stamp else None
