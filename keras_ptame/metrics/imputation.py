"""Filling removed pixels for ROAD: noisy linear imputation and Telea inpainting.

Both work on the host (numpy, scipy, OpenCV) on one image at a time, in raw
pixel space `[0, 255]`.
"""

import numpy as np
from scipy import sparse
from scipy.sparse import linalg

from keras_ptame.utils.install import install_hint

# The 8 neighbours of a pixel (row offset, column offset, weight): the four
# direct ones weigh 1/6 and the four diagonal ones 1/12, so that an interior
# pixel's weights sum to one (Rong et al. 2022).
NEIGHBOURS = (
    (-1, 0, 1 / 6),
    (1, 0, 1 / 6),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (-1, -1, 1 / 12),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (1, 1, 1 / 12),
)
# `"telea"` fills as the P-TAME authors' code does; `"telea_exact"` is
# keras_ptame's earlier Telea (radius 5, kept pixels exact).
IMPUTATIONS = ("linear", "telea", "telea_exact")
# The radius of `"telea_exact"`.
TELEA_EXACT_RADIUS = 5


def _check_image_and_mask(image, removed):
    image = np.asarray(image)
    removed = np.asarray(removed)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(
            "`image` must be one image of shape (height, width, channels). "
            f"Received: image with shape {image.shape}"
        )
    if removed.shape != image.shape[:2]:
        raise ValueError(
            "`removed` must be a boolean mask of shape (height, width) matching "
            f"the image. Received: removed with shape {removed.shape}, image "
            f"with shape {image.shape}"
        )
    return image, removed.astype(bool)


def noisy_linear_imputation(image, removed, noise=0.01, value_range=255.0, seed=None):
    """Fills removed pixels by noisy linear imputation (ROAD).

    Every removed pixel becomes the weighted mean of its (up to 8) neighbours
    inside the image, with weight 1/6 for the 4 direct and 1/12 for the 4
    diagonal neighbours, removed neighbours included: the removed pixels
    together solve one sparse linear system per image, set up with vectorised
    index arithmetic and factorised once for all channels. Gaussian noise of
    standard deviation `noise * value_range` is then added to the filled
    pixels, so that a classifier cannot read the removal pattern from how
    smooth the fill is.

    If every pixel is removed there is nothing to interpolate from; the image
    becomes zero (black) plus the noise.

    Args:
        image: array `(H, W, C)` (or `(H, W)`), float or uint8.
        removed: bool array `(H, W)`, `True` where the pixel is removed.
        noise: float. Standard deviation of the noise as a fraction of
            `value_range`. Defaults to `0.01` (the ROAD default).
        value_range: float. The pixel scale; the result is clipped to
            `[0, value_range]`. Defaults to `255.0` (raw pixels).
        seed: optional int or `numpy.random.Generator` for the noise.
            Defaults to `None`.

    Returns:
        float32 numpy array shaped like `image`, kept pixels unchanged.

    Examples:
    ```python
    import numpy as np
    from keras_ptame.metrics import noisy_linear_imputation

    image = np.random.default_rng(0).uniform(0, 255, (224, 224, 3))
    removed = np.random.default_rng(1).random((224, 224)) < 0.5
    filled = noisy_linear_imputation(image, removed, seed=0)
    ```
    """
    squeeze = np.asarray(image).ndim == 2
    image, removed = _check_image_and_mask(image, removed)
    if noise < 0:
        raise ValueError(f"`noise` must be non-negative. Received: noise={noise}")
    result = image.astype(np.float64)
    if not removed.any():
        return _as_float32_maps(result, squeeze)
    rows, cols = np.nonzero(removed)
    if removed.all():
        # Nothing to interpolate from (the system would be singular); any
        # group of removed pixels short of the whole image touches a kept one.
        result[:] = 0.0
    else:
        matrix, rhs = _linear_system(result, rows, cols)
        # The matrix is symmetric (neighbour weights are): a symmetric
        # fill-reducing ordering factorises faster, and one factorisation
        # serves every channel.
        factor = linalg.splu(
            matrix, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True}
        )
        result[rows, cols] = factor.solve(rhs)
    if noise > 0:
        rng = np.random.default_rng(seed)
        noise_shape = (rows.size, image.shape[-1])
        result[rows, cols] += rng.normal(0.0, noise * value_range, noise_shape)
    np.clip(result, 0.0, value_range, out=result)
    return _as_float32_maps(result, squeeze)


def _linear_system(image, rows, cols):
    """The sparse system of the removed pixels `(rows, cols)` of `image`.

    Each removed pixel equals the weighted mean of its neighbours inside the
    image (`NEIGHBOURS`): removed neighbours are unknowns, kept ones move to
    the right-hand side.

    Returns:
        A tuple `(matrix, rhs)`: CSC matrix `(U, U)` and array `(U, C)` for
        the `U` removed pixels, in the order of `rows` and `cols`.
    """
    height, width, channels = image.shape
    unknowns = rows.size
    index = np.full((height, width), -1, dtype=np.int64)
    index[rows, cols] = np.arange(unknowns)
    diagonal = np.zeros(unknowns)
    rhs = np.zeros((unknowns, channels))
    a_rows, a_cols, a_values = [], [], []
    for dr, dc, weight in NEIGHBOURS:
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        diagonal[inside] += weight
        source = np.nonzero(inside)[0]
        neighbour = index[r[inside], c[inside]]
        is_unknown = neighbour >= 0
        a_rows.append(source[is_unknown])
        a_cols.append(neighbour[is_unknown])
        a_values.append(np.full(is_unknown.sum(), -weight))
        known = source[~is_unknown]
        rhs_values = image[r[inside][~is_unknown], c[inside][~is_unknown]]
        np.add.at(rhs, known, weight * rhs_values)
    a_rows.append(np.arange(unknowns))
    a_cols.append(np.arange(unknowns))
    a_values.append(diagonal)
    matrix = sparse.csc_matrix(
        (np.concatenate(a_values), (np.concatenate(a_rows), np.concatenate(a_cols))),
        shape=(unknowns, unknowns),
    )
    return matrix, rhs


def telea_imputation(image, removed, radius=3, value_range=255.0, exact=False):
    """Fills removed pixels with OpenCV's Telea inpainting.

    By default as the P-TAME authors' evaluation code does (its default ROAD
    fill): the whole image is scaled to [0, 255] and truncated to 8 bits
    (`(image_in_0_1 * 255).astype(uint8)`, not rounded), inpainted with
    radius 3, and the result, kept pixels included, is scaled back, so kept
    pixels lose their fraction of a level too. (Their code inpaints in BGR
    order; Telea fills each channel alike with the same weights, so the
    order does not change a value.) ROAD scores with this fill, the default
    `selection` and the same maps, classifier and images are the authors'
    `ROAD` scores, with one difference: their images reach this step through
    the ImageNet normalisation and back in float32, which leaves some integer
    levels a hair below `k / 255`, and truncation drops those a level (104,
    26 and 94 of the 256 levels of R, G and B); here an integer pixel keeps
    its level. Their published numbers also depend on their trained
    decoder, classifier weights and 2,000 validation images.

    With `exact=True` (keras_ptame's earlier fill, `imputation="telea_exact"`
    in `road`, with radius 5): the image is rounded to 8 bits for OpenCV and
    only the removed pixels take its values, the kept ones stay exact.
    Needs `opencv-python-headless` (keras-ptame's `eval` extra).

    Args:
        image: array `(H, W, 3)` (or `(H, W)`), float in `[0, value_range]`
            or uint8.
        removed: bool array `(H, W)`, `True` where the pixel is removed.
        radius: int. Neighbourhood radius of the inpainting, in pixels.
            Defaults to `3` (the authors').
        value_range: float. The pixel scale. Defaults to `255.0`.
        exact: bool. Whether kept pixels stay exact (and the image is
            rounded, not truncated, for OpenCV). Defaults to `False` (the
            authors' whole-image truncation).

    Returns:
        float32 numpy array shaped like `image`.

    Examples:
    ```python
    import numpy as np
    from keras_ptame.metrics import telea_imputation

    image = np.random.default_rng(0).uniform(0, 255, (32, 32, 3))
    removed = np.zeros((32, 32), bool); removed[8:24, 8:24] = True
    filled = telea_imputation(image, removed)   # all pixels whole levels
    ```
    """
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            f"Telea inpainting needs OpenCV: {install_hint('eval')}."
        ) from error
    squeeze = np.asarray(image).ndim == 2
    image, removed = _check_image_and_mask(image, removed)
    if exact:
        original = image.astype(np.float64)
        scaled = np.rint(original * (255.0 / value_range))
    else:
        # As the authors: a float32 image in [0, 1], times 255, truncated.
        unit = (image.astype(np.float64) / value_range).astype(np.float32)
        scaled = unit * np.float32(255.0)
    scaled = np.clip(scaled, 0, 255).astype(np.uint8)
    painted = cv2.inpaint(
        np.ascontiguousarray(scaled),
        removed.astype(np.uint8),
        radius,
        cv2.INPAINT_TELEA,
    )
    if painted.ndim == 2:
        painted = painted[..., None]
    painted = painted.astype(np.float64) * (value_range / 255.0)
    if not exact:
        return _as_float32_maps(painted, squeeze)
    result = original.copy()
    result[removed] = painted[removed]
    return _as_float32_maps(result, squeeze)


def check_imputation(imputation):
    """Checks the name of a fill for removed pixels: one of `IMPUTATIONS`."""
    if imputation not in IMPUTATIONS:
        raise ValueError(
            f"`imputation` must be one of {IMPUTATIONS}. "
            f"Received: imputation={imputation!r}"
        )
    return imputation


def impute(image, removed, method="linear", noise=0.01, seed=None, value_range=255.0):
    """Fills removed pixels with `method`, one of `IMPUTATIONS`."""
    method = check_imputation(method)
    if method == "linear":
        return noisy_linear_imputation(
            image, removed, noise=noise, value_range=value_range, seed=seed
        )
    if method == "telea_exact":
        return telea_imputation(
            image, removed, TELEA_EXACT_RADIUS, value_range=value_range, exact=True
        )
    return telea_imputation(image, removed, value_range=value_range)


def _as_float32_maps(result, squeeze):
    result = result.astype(np.float32)
    return result[..., 0] if squeeze else result
