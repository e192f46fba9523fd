import numpy as np
import pytest

from keras_ptame.baselines import CentreMaps, RandomMaps


def test_centre_map_peaks_in_the_middle():
    maps = CentreMaps().explain(np.zeros((2, 9, 9, 3), "uint8"))
    assert maps.shape == (2, 9, 9) and maps.dtype == np.float32
    assert maps.min() == pytest.approx(0.0) and maps.max() == pytest.approx(1.0)
    assert np.unravel_index(maps[0].argmax(), (9, 9)) == (4, 4)
    np.testing.assert_allclose(maps[0], maps[0].T)
    np.testing.assert_allclose(maps[0], maps[0, ::-1, ::-1])
    with pytest.raises(ValueError, match="sigma"):
        CentreMaps(sigma=0)


def test_random_maps_are_seeded_and_in_range():
    images = np.zeros((3, 16, 16, 3), "uint8")
    a = RandomMaps(seed=1).explain(images)
    b = RandomMaps(seed=1).explain(images, classes=[0, 1, 2])
    assert a.shape == (3, 16, 16) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])
    assert not np.allclose(a, RandomMaps(seed=2).explain(images))
    pixelwise = RandomMaps(resolution=None).explain(images)
    assert pixelwise.shape == (3, 16, 16)
    with pytest.raises(ValueError, match="resolution"):
        RandomMaps(resolution=0)
