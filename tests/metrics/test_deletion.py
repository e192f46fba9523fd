import numpy as np
import pytest

from keras_ptame.metrics import curve_area, deletion_insertion
from tests.helpers.known_classifiers import (
    OBJECT,
    object_classifier,
    object_images,
    sigmoid,
)


def test_curve_area_by_hand():
    assert curve_area([1, 1, 1]) == pytest.approx(1.0)
    assert curve_area([1, 0]) == pytest.approx(0.5)
    np.testing.assert_allclose(curve_area([[0, 1, 1], [1, 0, 0]]), [0.75, 0.25])


def test_perfect_map_curves_by_hand():
    # Red object on black: the first quarter of the pixels is the object.
    images = object_images(background=0.0)
    maps = np.broadcast_to(OBJECT, (2, 8, 8)).astype("float32")
    result = deletion_insertion(
        object_classifier(), images, maps, steps=4, insertion_fill="black"
    )
    high, low = sigmoid(3.0), sigmoid(-1.0)
    np.testing.assert_allclose(
        result["deletion_curve"][0], [high] + [low] * 4, rtol=1e-5
    )
    np.testing.assert_allclose(
        result["insertion_curve"][0], [low] + [high] * 4, rtol=1e-5
    )
    assert result["deletion_auc"][0] == pytest.approx(((high + low) / 2 + 3 * low) / 4)
    assert result["insertion_auc"][0] == pytest.approx(
        ((high + low) / 2 + 3 * high) / 4
    )


def test_inverted_map_is_worse_and_batch_size_does_not_matter():
    images = object_images(background=0.0)
    perfect = np.broadcast_to(OBJECT, (2, 8, 8)).astype("float32")
    inverted = 1.0 - perfect
    classifier = object_classifier()
    good = deletion_insertion(classifier, images, perfect, steps=8, batch_size=1)
    bad = deletion_insertion(classifier, images, inverted, steps=8, batch_size=2)
    assert (good["deletion_auc"] < bad["deletion_auc"]).all()
    assert (good["insertion_auc"] > bad["insertion_auc"]).all()
    again = deletion_insertion(classifier, images, perfect, steps=8, batch_size=2)
    np.testing.assert_allclose(
        again["deletion_curve"], good["deletion_curve"], atol=1e-6
    )
