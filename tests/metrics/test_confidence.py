import numpy as np
import pytest

from keras_ptame.metrics import (
    average_drop,
    confidence_metrics,
    increase_in_confidence,
    keep_top_fraction,
)
from tests.helpers.known_classifiers import (
    OBJECT,
    object_classifier,
    object_images,
    object_maps,
    sigmoid,
)

# object_images(): logit0 = 4 - 2 = 2, logit1 = 1, so Y = sigmoid(1).
Y = sigmoid(1.0)


def test_average_drop_and_increase_in_confidence_by_hand():
    assert average_drop([0.8, 0.5], [0.4, 0.6]) == pytest.approx(100 * (0.5 + 0) / 2)
    assert increase_in_confidence([0.8, 0.5], [0.4, 0.6]) == pytest.approx(50.0)
    assert increase_in_confidence([0.5], [0.5]) == 0.0


def test_keep_top_fraction_keeps_soft_values_of_the_top_pixels():
    maps = np.arange(16, dtype="float32").reshape(1, 4, 4) / 15
    kept = keep_top_fraction(maps, 0.25)
    assert np.count_nonzero(kept) == 4
    np.testing.assert_allclose(kept[0, 3], maps[0, 3])
    np.testing.assert_array_equal(kept[0, :3], 0.0)
    np.testing.assert_array_equal(keep_top_fraction(maps, 1.0), maps)
    with pytest.raises(ValueError, match="fraction"):
        keep_top_fraction(maps, 0.0)


def test_perfect_map():
    # Keeping the object and dropping the background (negative evidence)
    # raises logit0 to 4: O = sigmoid(3) > Y at 100%; at 15% the 10 kept
    # object pixels give logit0 = 4 * 10 / 16 (exact counts: the authors'
    # threshold keeps no pixel of a binary map, all tied at 1).
    scores = confidence_metrics(
        object_classifier(), object_images(), object_maps(OBJECT), selection="rank"
    )
    assert scores["AD100"] == pytest.approx(0.0)
    assert scores["IC100"] == pytest.approx(100.0)
    assert scores["AD15"] == pytest.approx(0.0)
    assert scores["IC15"] == pytest.approx(100.0)
    assert sigmoid(4 * 10 / 16 - 1) > Y


def test_inverted_map():
    scores = confidence_metrics(
        object_classifier(), object_images(), object_maps(~OBJECT)
    )
    # Object zeroed: logit0 = -2, O = sigmoid(-3).
    assert scores["AD100"] == pytest.approx(100 * (Y - sigmoid(-3.0)) / Y, rel=1e-4)
    assert scores["IC100"] == 0.0


def test_constant_maps():
    classifier, images = object_classifier(), object_images()
    ones = confidence_metrics(classifier, images, object_maps(1.0), selection="rank")
    assert ones["AD100"] == pytest.approx(0.0, abs=1e-4)
    assert ones["IC100"] == 0.0
    # Exact counts, ties in raster order: at 50% rows 0-3 (object + 16 of 48
    # background pixels), at 15% ten pixels (6 object, 4 background).
    assert ones["IC50"] == 100.0
    expected = 100 * (Y - sigmoid(4 * 6 / 16 - 2 * 4 / 48 - 1)) / Y
    assert ones["AD15"] == pytest.approx(expected, rel=1e-4)
    halves = confidence_metrics(classifier, images, object_maps(0.5), fractions=(1.0,))
    # Everything halved: logit0 = 1, O = 0.5.
    assert halves["AD100"] == pytest.approx(100 * (Y - 0.5) / Y, rel=1e-4)
    assert set(halves) == {"AD100", "IC100"}


def test_values_do_not_depend_on_batch_size():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (7, 8, 8, 3)).astype("float32")
    maps = rng.random((7, 8, 8)).astype("float32")
    classifier = object_classifier()
    one = confidence_metrics(classifier, images, maps, batch_size=1)
    three = confidence_metrics(classifier, images, maps, batch_size=3)
    for key, value in one.items():
        assert three[key] == pytest.approx(value, abs=1e-4)


def test_explicit_classes_and_bad_maps():
    classifier, images = object_classifier(), object_images()
    scores = confidence_metrics(classifier, images, object_maps(0.5), classes=[1, 1])
    # Class 1 has a constant logit: halving the image moves logit0 from 2 to
    # 1, so p(class 1) rises from sigmoid(-1) to 0.5.
    assert scores["IC100"] == 100.0
    with pytest.raises(ValueError, match="maps"):
        confidence_metrics(classifier, images, np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match="classes"):
        confidence_metrics(classifier, images, object_maps(1.0), classes=[0, 5])


def _reference_kept(maps, fraction):
    """The authors' rule, written out: strictly above the k-th smallest."""
    flat = maps.reshape(len(maps), -1)
    k = int(flat.shape[1] * (1 - fraction))
    if k == 0:
        return np.ones(maps.shape, bool)
    threshold = np.sort(flat, axis=1)[:, k - 1 : k]
    return (flat > threshold).reshape(maps.shape)


@pytest.mark.parametrize("fraction, count", [(1.0, 50176), (0.5, 25088), (0.15, 7527)])
def test_the_default_keeps_what_the_authors_threshold_keeps(fraction, count):
    # At 224x224 without ties: H * W - int(H * W * (1 - fraction)) pixels,
    # one more than round(fraction * H * W) at 15%.
    maps = np.random.default_rng(0).random((2, 224, 224)).astype("float32")
    kept = keep_top_fraction(maps, fraction)
    assert [np.count_nonzero(m) for m in kept] == [count, count]
    expected = _reference_kept(maps, fraction)
    np.testing.assert_array_equal(kept != 0, expected)
    np.testing.assert_array_equal(kept[expected], maps[expected])
    rank = keep_top_fraction(maps, fraction, selection="rank")
    assert np.count_nonzero(rank[0]) == round(fraction * 224 * 224)


def test_the_authors_threshold_drops_every_tied_pixel():
    maps = np.full((1, 4, 4), 0.5, "float32")
    assert not np.any(keep_top_fraction(maps, 0.5))
    np.testing.assert_array_equal(keep_top_fraction(maps, 1.0), maps)
    assert np.count_nonzero(keep_top_fraction(maps, 0.5, selection="rank")) == 8
    # A constant map at 50% scores the black image by default.
    classifier, images = object_classifier(), object_images()
    scores = confidence_metrics(classifier, images, object_maps(1.0), fractions=(0.5,))
    black = sigmoid(0.0 - 1.0)  # logit0 = 0, logit1 = 1: class 0 at sigmoid(-1)
    assert scores["AD50"] == pytest.approx(100 * (Y - black) / Y, rel=1e-4)
    with pytest.raises(ValueError, match="selection"):
        keep_top_fraction(maps, 0.5, selection="top")
