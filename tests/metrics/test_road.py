import numpy as np
import pytest

from keras_ptame.metrics import removal_masks, road, road_scores, road_summary
from keras_ptame.metrics.road import PERCENTAGES
from tests.helpers.known_classifiers import (
    OBJECT,
    object_classifier,
    object_images,
    object_maps,
)

# Red object (255) on black: logit0 = 4 > logit1 = 1. Removing the whole object
# fills it from the black background (exactly 0 without noise): class 1.
HAND = {"noise": 0.0, "percentages": (30, 50, 70)}


def test_summary_by_hand():
    assert road_summary([1, 1, 1, 1]) == pytest.approx(0.85)
    assert road_summary([0, 0, 0, 0]) == pytest.approx(0.05)
    # x = [0, .1, .3, .5, .7, 1], y = [1, .8, .6, .4, .2, 0].
    # .1 * 1.8 / 2 + .2 * 1.4 / 2 + .2 * 1.0 / 2 + .2 * .6 / 2 + .3 * .2 / 2
    assert road_summary([0.8, 0.6, 0.4, 0.2]) == pytest.approx(0.42)
    assert road_summary([0, 0, 0], (30, 50, 70)) == pytest.approx(0.15)


def test_removal_masks_count_and_order():
    maps = np.arange(16, dtype="float32").reshape(1, 4, 4)
    # The authors' rule: MoRF keeps what lies below the int(16 * .75) = 12th
    # smallest value (11 pixels), LeRF what lies above the int(16 * .25) =
    # 4th (12 pixels).
    morf = removal_masks(maps, 25, "morf")
    lerf = removal_masks(maps, 25, "lerf")
    assert morf.sum() == 5 and lerf.sum() == 4
    assert morf[0, 3].all() and morf[0, 2, 3] and lerf[0, 0].all()
    # Exact counts by option.
    morf = removal_masks(maps, 25, "morf", selection="rank")
    lerf = removal_masks(maps, 25, "lerf", selection="rank")
    assert morf.sum() == lerf.sum() == 4
    assert morf[0, 3].all() and lerf[0, 0].all()
    with pytest.raises(ValueError, match="order"):
        removal_masks(maps, 25, "up")
    with pytest.raises(ValueError, match="selection"):
        removal_masks(maps, 25, "morf", selection="top")


@pytest.mark.parametrize(
    "order, counts",
    [("morf", (5019, 15054, 25089, 35125)), ("lerf", (5017, 15052, 25088, 35123))],
)
def test_removal_counts_at_224_follow_the_authors(order, counts):
    maps = np.random.default_rng(0).random((2, 224, 224)).astype("float32")
    flat = maps.reshape(2, -1)
    for percentage, count in zip(PERCENTAGES, counts, strict=True):
        removed = removal_masks(maps, percentage, order)
        assert removed.reshape(2, -1).sum(axis=1).tolist() == [count, count]
        # Written out: kth value (from 1) of k = int(n * share), strict.
        share = percentage / 100
        k = int(flat.shape[1] * (1 - share if order == "morf" else share))
        threshold = np.sort(flat, axis=1)[:, k - 1 : k]
        kept = flat < threshold if order == "morf" else flat > threshold
        np.testing.assert_array_equal(removed.reshape(2, -1), ~kept)
        rank = removal_masks(maps, percentage, order, selection="rank")
        assert rank[0].sum() == round(share * 224 * 224)


def test_the_authors_rule_removes_every_tied_pixel():
    maps = np.full((1, 8, 8), 0.3, "float32")
    for order in ("morf", "lerf"):
        assert removal_masks(maps, 10, order).all()
        assert removal_masks(maps, 10, order, selection="rank").sum() == 6
    # Nothing removed at 0% least relevant first; everything at 100%.
    ramp = np.arange(64, dtype="float32").reshape(1, 8, 8)
    assert not removal_masks(ramp, 0, "lerf").any()
    assert removal_masks(ramp, 100, "lerf").all()
    assert removal_masks(ramp, 100, "morf").all()


def test_perfect_map():
    classifier, images = object_classifier(), object_images(background=0.0)
    morf = road(classifier, images, object_maps(OBJECT), order="morf", **HAND)
    assert morf["accuracy"] == {30: 0.0, 50: 0.0, 70: 0.0}
    assert morf["summary"] == pytest.approx(0.15)
    # Least relevant first: only background goes, the object stays.
    lerf = road(classifier, images, object_maps(OBJECT), order="lerf", noise=0.0)
    assert lerf["accuracy"] == {10: 1.0, 30: 1.0, 50: 1.0, 70: 1.0}
    assert lerf["summary"] == pytest.approx(0.85)


def test_inverted_map_swaps_the_orders():
    classifier, images = object_classifier(), object_images(background=0.0)
    morf = road(classifier, images, object_maps(~OBJECT), order="morf", noise=0.0)
    lerf = road(classifier, images, object_maps(~OBJECT), order="lerf", **HAND)
    assert morf["summary"] == pytest.approx(0.85)
    assert lerf["accuracy"] == {30: 0.0, 50: 0.0, 70: 0.0}


def test_constant_map_scores_the_same_both_ways():
    classifier, images = object_classifier(), object_images(background=0.0)
    morf = road(classifier, images, object_maps(0.3), order="morf")
    lerf = road(classifier, images, object_maps(0.3), order="lerf")
    assert morf == lerf


def test_values_do_not_depend_on_batch_size():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (5, 8, 8, 3)).astype("float32")
    maps = rng.random((5, 8, 8)).astype("float32")
    classifier = object_classifier()
    one = road(classifier, images, maps, batch_size=1, seed=4)
    many = road(classifier, images, maps, batch_size=4, seed=4)
    assert one == many


def test_telea_option():
    pytest.importorskip("cv2")
    classifier, images = object_classifier(), object_images(background=0.0)
    result = road(
        classifier, images, object_maps(~OBJECT), order="morf", imputation="telea"
    )
    assert result["summary"] == pytest.approx(0.85)
    exact = road(
        classifier, images, object_maps(~OBJECT), order="morf", imputation="telea_exact"
    )
    assert exact["summary"] == pytest.approx(0.85)
    with pytest.raises(ValueError, match="imputation"):
        road(classifier, images, object_maps(OBJECT), imputation="zeros")


def test_road_scores_are_both_orders_as_columns_in_percent():
    classifier, images = object_classifier(), object_images(background=0.0)
    scores = road_scores(classifier, images, object_maps(OBJECT), **HAND)
    assert list(scores) == [
        *("MoRF30", "MoRF50", "MoRF70", "MoRF"),
        *("LeRF30", "LeRF50", "LeRF70", "LeRF"),
    ]
    assert [scores[f"MoRF{p}"] for p in (30, 50, 70)] == [0.0, 0.0, 0.0]
    assert [scores[f"LeRF{p}"] for p in (30, 50, 70)] == [100.0, 100.0, 100.0]
    assert scores["MoRF"] == pytest.approx(15.0)
    assert scores["LeRF"] == pytest.approx(85.0)


def test_road_scores_equal_the_two_road_calls():
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    maps = rng.random((3, 8, 8)).astype("float32")
    classifier = object_classifier()
    options = dict(percentages=(20, 60), batch_size=2, seed=7)
    scores = road_scores(classifier, images, maps, **options)
    expected = {}
    for order, tag in (("morf", "MoRF"), ("lerf", "LeRF")):
        result = road(classifier, images, maps, order=order, **options)
        for percentage, accuracy in result["accuracy"].items():
            expected[f"{tag}{percentage}"] = 100.0 * accuracy
        expected[tag] = 100.0 * result["summary"]
    assert scores == expected
    # Summaries only, or one order: the same numbers, fewer columns.
    summaries = road_scores(classifier, images, maps, accuracies=False, **options)
    assert summaries == {"MoRF": expected["MoRF"], "LeRF": expected["LeRF"]}
    lerf = road_scores(classifier, images, maps, orders=("lerf",), **options)
    assert lerf == {key: value for key, value in expected.items() if "LeRF" in key}


def test_road_scores_reject_an_unknown_order():
    classifier, images = object_classifier(), object_images(background=0.0)
    with pytest.raises(ValueError, match="orders"):
        road_scores(classifier, images, object_maps(OBJECT), orders=("up",))
