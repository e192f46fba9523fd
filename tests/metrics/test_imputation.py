import time

import numpy as np
import pytest

from keras_ptame.metrics import noisy_linear_imputation, telea_imputation
from keras_ptame.metrics.imputation import NEIGHBOURS, impute


def _weighted_mean_of_neighbours(image, row, col):
    height, width = image.shape[:2]
    total, weights = np.zeros(image.shape[-1]), 0.0
    for dr, dc, weight in NEIGHBOURS:
        r, c = row + dr, col + dc
        if 0 <= r < height and 0 <= c < width:
            total += weight * image[r, c]
            weights += weight
    return total / weights


def test_neighbour_weights_are_one_sixth_direct_and_one_twelfth_diagonal():
    weights = {(dr, dc): w for dr, dc, w in NEIGHBOURS}
    assert len(weights) == 8
    for (dr, dc), weight in weights.items():
        expected = 1 / 6 if abs(dr) + abs(dc) == 1 else 1 / 12
        assert weight == pytest.approx(expected)
    assert sum(weights.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_each_removed_pixel_is_the_weighted_mean_of_its_neighbours(share):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (20, 17, 3))
    removed = rng.random((20, 17)) < share
    removed[0, 0] = removed[-1, -1] = removed[0, 5] = True  # corners and edges
    filled = noisy_linear_imputation(image, removed, noise=0.0).astype(np.float64)
    # Kept pixels are untouched.
    np.testing.assert_allclose(filled[~removed], image[~removed], atol=1e-3)
    # The defining equations, removed neighbours taking their filled values.
    for row, col in zip(*np.nonzero(removed), strict=True):
        np.testing.assert_allclose(
            filled[row, col], _weighted_mean_of_neighbours(filled, row, col), atol=1e-2
        )


def test_a_removed_block_in_a_linear_ramp_is_filled_exactly():
    # A linear function satisfies the mean-of-neighbours equations inside.
    ramp = np.add.outer(np.arange(16.0), 2 * np.arange(16.0))[..., None] + 10
    removed = np.zeros((16, 16), bool)
    removed[4:11, 3:12] = True
    filled = noisy_linear_imputation(ramp, removed, noise=0.0)
    np.testing.assert_allclose(filled, ramp, atol=1e-3)


def test_noise_has_the_documented_scale_and_only_touches_removed_pixels():
    image = np.full((64, 64, 3), 128.0)
    removed = np.random.default_rng(1).random((64, 64)) < 0.5
    filled = noisy_linear_imputation(image, removed, noise=0.01, seed=3)
    np.testing.assert_array_equal(filled[~removed], 128.0)
    residual = filled[removed] - 128.0
    assert abs(residual.std() - 2.55) < 0.15
    assert abs(residual.mean()) < 0.1
    again = noisy_linear_imputation(image, removed, noise=0.01, seed=3)
    np.testing.assert_array_equal(filled, again)


def test_whole_image_removed_and_nothing_removed():
    image = np.full((8, 8, 3), 200.0)
    np.testing.assert_array_equal(
        noisy_linear_imputation(image, np.ones((8, 8), bool), noise=0.0), 0.0
    )
    np.testing.assert_array_equal(
        noisy_linear_imputation(image, np.zeros((8, 8), bool)), image
    )


def test_grayscale_and_shape_errors():
    image = np.arange(64.0).reshape(8, 8)
    removed = np.zeros((8, 8), bool)
    removed[3, 3] = True
    assert noisy_linear_imputation(image, removed, noise=0.0).shape == (8, 8)
    with pytest.raises(ValueError, match="removed"):
        noisy_linear_imputation(np.zeros((8, 8, 3)), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="noise"):
        noisy_linear_imputation(np.zeros((8, 8, 3)), removed, noise=-1)


def test_224_image_with_half_removed_takes_well_under_a_second():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (224, 224, 3))
    # Large blobs, as ROAD removes along a smooth saliency map: the harder
    # case for the solver than scattered pixels.
    saliency = np.kron(rng.random((7, 7)), np.ones((32, 32)))
    saliency += rng.random((224, 224)) * 1e-3
    removed = saliency > np.median(saliency)
    noisy_linear_imputation(image, removed, seed=0)
    best = min(
        _seconds(lambda: noisy_linear_imputation(image, removed, seed=0))
        for _ in range(3)
    )
    # Budget padded for a shared CI machine; ~0.1-0.3 s measured.
    assert best < 1.0, best


def _seconds(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def test_telea_fills_only_removed_pixels():
    pytest.importorskip("cv2")
    image = np.full((32, 32, 3), 90.0)
    image[:, 16:] = 180.0
    removed = np.zeros((32, 32), bool)
    removed[10:14, 4:8] = True
    filled = telea_imputation(image, removed)
    # Whole levels: the authors' truncation leaves them as they are.
    np.testing.assert_array_equal(filled[~removed], image[~removed])
    # Inside the flat left half the fill is the flat value (OpenCV's
    # 8-bit arithmetic is off by a level or two).
    np.testing.assert_allclose(filled[removed], 90.0, atol=3.0)


def _image_and_holes(seed=0, size=48):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 255, (size, size, 3)).astype("float32")
    removed = rng.random((size, size)) < 0.3
    return image, removed


def test_telea_default_is_the_authors_radius_three_and_truncation():
    cv2 = pytest.importorskip("cv2")
    image, removed = _image_and_holes()
    filled = telea_imputation(image, removed)
    # Their evaluation: the [0, 1] image times 255 truncated to uint8 (in
    # BGR order), radius 3, the whole result divided back.
    unit = image / np.float32(255.0)
    bgr = (unit[..., ::-1] * 255).astype(np.uint8)
    mask = removed.astype(np.uint8) * 255
    theirs = cv2.inpaint(bgr, mask, inpaintRadius=3, flags=cv2.INPAINT_TELEA)
    theirs = theirs[..., ::-1].astype(np.float32) / 255.0
    np.testing.assert_allclose(filled / 255.0, theirs, atol=1e-6)
    # Kept pixels are truncated too, never rounded up.
    assert np.all(filled[~removed] <= image[~removed])
    np.testing.assert_array_equal(filled[~removed], np.floor(image[~removed]))
    # A whole level is kept as it is (uint8 in, the same out where kept).
    whole = np.floor(image)
    np.testing.assert_array_equal(
        telea_imputation(whole, removed)[~removed], whole[~removed]
    )
    # Radius 5 would fill some pixels differently.
    other = cv2.inpaint(
        np.floor(image).astype(np.uint8),
        removed.astype(np.uint8),
        5,
        cv2.INPAINT_TELEA,
    )
    assert np.any(other[removed] != filled[removed])


def test_telea_exact_is_the_earlier_fill():
    cv2 = pytest.importorskip("cv2")
    image, removed = _image_and_holes(seed=1)
    filled = telea_imputation(image, removed, radius=5, exact=True)
    # Kept pixels exact; removed ones from the rounded image, radius 5.
    np.testing.assert_array_equal(filled[~removed], image[~removed])
    rounded = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    painted = cv2.inpaint(rounded, removed.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    np.testing.assert_array_equal(filled[removed], painted[removed])
    # The same through `impute`, by name.
    np.testing.assert_array_equal(impute(image, removed, method="telea_exact"), filled)
    np.testing.assert_array_equal(
        impute(image, removed, method="telea"), telea_imputation(image, removed)
    )
