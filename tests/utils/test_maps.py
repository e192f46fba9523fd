import numpy as np
import pytest

from keras_ptame.utils.maps import check_maps, normalize_maps, ranking


def test_check_maps_against_images():
    images = np.zeros((2, 4, 5, 3), "uint8")
    maps = check_maps(np.ones((2, 4, 5, 1), "float64"), images)
    assert maps.shape == (2, 4, 5) and maps.dtype == np.float32
    with pytest.raises(ValueError, match=r"one map per image, of shape \(2, 4, 5\)"):
        check_maps(np.ones((2, 5, 4)), images)
    with pytest.raises(ValueError, match="finite"):
        check_maps(np.full((2, 4, 5), np.nan), images)


def test_check_maps_alone():
    maps = check_maps(np.full((1, 3, 3), 0.1), dtype=np.float64)
    assert maps.dtype == np.float64 and maps[0, 0, 0] == 0.1
    for bad in (np.ones((3, 3)), np.ones((0, 3, 3)), np.ones((1, 3, 3, 2))):
        with pytest.raises(ValueError, match=r"\(N, H, W\)"):
            check_maps(bad)


def test_normalize_maps():
    maps = np.stack([np.arange(4.0).reshape(2, 2), np.full((2, 2), 7.0)])
    normalized = normalize_maps(maps)
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized[0], [[0, 1 / 3], [2 / 3, 1]], rtol=1e-6)
    np.testing.assert_array_equal(normalized[1], 0.0)  # constant: all zero


def test_ranking_breaks_ties_in_raster_order():
    maps = np.array([[[0.5, 0.9], [0.5, 0.1]]])
    np.testing.assert_array_equal(ranking(maps), [[1, 0, 2, 3]])
    np.testing.assert_array_equal(ranking(maps, descending=False), [[3, 0, 2, 1]])
    np.testing.assert_array_equal(ranking(np.zeros((1, 2, 2))), [[0, 1, 2, 3]])
