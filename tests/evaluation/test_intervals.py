"""Confidence intervals beside the evaluation table's values, and the winners
they decide: known intervals by hand, and `evaluate(..., intervals=0.95)`."""

import csv
import io

import numpy as np
import pytest

from keras_ptame.evaluation import evaluate
from keras_ptame.evaluation.intervals import (
    binomial_interval,
    column_interval,
    decide,
    table_intervals,
)
from keras_ptame.metrics import confidence_metrics, road
from tests.helpers.known_classifiers import (
    OBJECT,
    object_classifier,
    object_images,
    object_maps,
)


def test_binomial_interval_matches_clopper_pearson_by_hand():
    # Clopper and Pearson's 95% bounds for 5 of 10: 0.1871 and 0.8129; for
    # 0 of 10 the upper bound is 1 - 0.025 ** (1 / 10) = 0.3085.
    low, high = binomial_interval(5, 10)
    assert low == pytest.approx(0.18709, abs=1e-5)
    assert high == pytest.approx(0.81291, abs=1e-5)
    assert binomial_interval(0, 10) == pytest.approx((0.0, 1 - 0.025**0.1))
    assert binomial_interval(10, 10) == pytest.approx((0.025**0.1, 1.0))
    # More images, a narrower interval around the same share.
    wide, narrow = binomial_interval(50, 100), binomial_interval(500, 1000)
    assert narrow[0] > wide[0] and narrow[1] < wide[1]


def test_shares_get_the_binomial_interval_other_columns_the_bootstrap():
    draws = np.random.default_rng(0).integers(0, 20, size=(2000, 20))
    shares = np.array([100.0] * 5 + [0.0] * 15)
    assert column_interval(shares, draws) == pytest.approx(
        tuple(100 * end for end in binomial_interval(5, 20))
    )
    # The bootstrap of a mean: around it, and a point for a constant column.
    values = np.linspace(0.0, 10.0, 20)
    low, high = column_interval(values, draws)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(20), rel=0.2)
    assert column_interval(np.full(20, 3.5), draws) == (3.5, 3.5)


def test_table_intervals_are_the_same_for_the_same_seed():
    rng = np.random.default_rng(1)
    per_image = {
        "a": {"AD100": rng.random(30), "seconds": np.ones(30)},
        "b": {"AD100": rng.random(30), "seconds": np.ones(30)},
    }
    first = table_intervals(per_image, seed=3)
    assert first == table_intervals(per_image, seed=3)
    assert first != table_intervals(per_image, seed=4)
    assert set(first["a"]) == {"AD100"}  # timings have no interval
    with pytest.raises(ValueError, match="level"):
        table_intervals(per_image, level=95)


def test_decide_marks_a_winner_only_outside_the_others_intervals():
    values = {"a": 10.0, "b": 20.0, "c": 21.0}
    intervals = {"a": (8.0, 12.0), "b": (18.0, 22.0), "c": (19.0, 23.0)}
    assert decide(values, intervals, lower_is_better=True) == ("winner", ["a"])
    assert decide(values, intervals, lower_is_better=False) == ("tie", ["c", "b"])


def _evaluate(count=12, **options):
    images = object_images(count, background=0.0)
    masks = np.broadcast_to(OBJECT, (count, 8, 8)).copy()
    noise = np.random.default_rng(0).random((count, 8, 8)).astype("float32")

    class Maps:
        def __init__(self, maps):
            self.maps = maps

        def explain(self, images, classes=None):
            return self.maps[: len(images)]

    explainers = {
        "object": Maps(np.where(OBJECT, 1.0, 0.1) + 0.01 * noise),
        "noise": Maps(noise),
    }
    return evaluate(
        explainers,
        object_classifier(),
        {"images": images, "masks": masks},
        noise=0.0,
        verbose=0,
        **options,
    )


def test_evaluate_with_intervals_shows_them_and_decides_winners():
    table = _evaluate(intervals=0.95)
    # Every column is the mean of the images' own values.
    for name, row in table.rows.items():
        for column, values in table.per_image[name].items():
            assert row[column] == pytest.approx(np.mean(values))
            low, high = table.intervals[name][column]
            assert low <= row[column] <= high
    # The object's map points at the object on all 12 images, the noise's
    # on some: 12 of 12 against fewer, intervals apart.
    winners = table.winners()
    assert winners["pointing_game"] == ("winner", ["object"])
    assert table.compare("object", "noise")["pointing_game"] == "ahead"
    assert table.compare("noise", "object")["pointing_game"] == "behind"
    # Both keep the class with the object's map applied at full strength.
    assert winners["LeRF10"][0] == "tie"
    assert table.compare("object", "noise")["LeRF10"] == "tie"
    with pytest.raises(ValueError, match="two different methods"):
        table.compare("object", "object")
    with pytest.raises(ValueError, match="No method 'RISE'"):
        table.compare("object", "RISE")
    markdown = table.to_markdown()
    pointing = table.columns.index("pointing_game")
    cells = markdown.splitlines()[2].split(" | ")
    assert cells[pointing + 1].startswith("**100.00 [")
    assert "confidence interval" in markdown
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert float(rows[0]["pointing_game_low"]) == pytest.approx(
        table.intervals["object"]["pointing_game"][0]
    )
    assert "seconds_low" not in rows[0]


def test_evaluate_without_intervals_and_bad_levels():
    table = _evaluate(count=4)
    assert table.intervals is None and table.winners() == {}
    assert "[" not in table.to_markdown().splitlines()[2]
    assert set(table.per_image["object"]) == set(table.columns) - {"seconds"}
    for level in (95, 0.0, True, "0.95"):
        with pytest.raises(ValueError, match="confidence level"):
            _evaluate(count=4, intervals=level)


def test_metrics_per_image_average_to_their_values():
    images = object_images(6, background=0.0)
    maps = object_maps(0.3, count=6) + np.random.default_rng(0).random((6, 8, 8))
    classifier = object_classifier()
    each = confidence_metrics(classifier, images, maps, per_image=True)
    mean = confidence_metrics(classifier, images, maps)
    assert {k: np.mean(v) for k, v in each.items()} == pytest.approx(mean)
    assert all(v.shape == (6,) for v in each.values())
    each = road(classifier, images, maps, noise=0.0, per_image=True)
    mean = road(classifier, images, maps, noise=0.0)
    assert np.mean(each["summary"]) == pytest.approx(mean["summary"])
    for percentage, kept in each["accuracy"].items():
        assert set(np.unique(kept)) <= {0.0, 1.0}
        assert np.mean(kept) == mean["accuracy"][percentage]
