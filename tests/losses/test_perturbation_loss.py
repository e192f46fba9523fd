import numpy as np
import pytest
from keras import ops

import keras_ptame as kp
from tests.helpers.test_case import run_loss_test


def _value(x):
    return float(ops.convert_to_numpy(x))


def _reference_smoothness(maps, p, border):
    """The spec's S, written pixel by pixel: each edge whole, corners twice."""
    batch, height, width, count = maps.shape
    total = 0.0
    for b in range(batch):
        for k in range(count):
            m = maps[b, :, :, k]
            for i in range(height):
                for j in range(width):
                    if i + 1 < height:
                        total += abs(m[i + 1, j] - m[i, j]) ** p
                    if j + 1 < width:
                        total += abs(m[i, j + 1] - m[i, j]) ** p
                    edges = (i == 0) + (i == height - 1) + (j == 0) + (j == width - 1)
                    total += edges * border * m[i, j] ** p
    return total / (p * batch)


def test_defaults_are_the_papers():
    assert kp.PerturbationLoss().get_config() == {
        "ce_coeff": 1.5,
        "area_coeff": 2.0,
        "smoothness_coeff": 0.01,
        "smoothness_power": 2.0,
        "border": 0.3,
        "area_power": 0.3,
        "deletion_coeff": 0.0,
    }


def test_terms_match_their_definitions():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5)).astype("float32")
    classes = np.array([4, 0, 4], "int32")
    maps = rng.uniform(size=(3, 6, 7, 3)).astype("float32")
    loss = kp.PerturbationLoss(
        ce_coeff=0.5, area_coeff=0.25, smoothness_coeff=0.125, border=0.3
    )
    terms = {k: _value(v) for k, v in loss.terms(logits, classes, maps).items()}

    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -log_softmax[np.arange(3), classes].mean()
    area = ((maps + 0.0005) ** 0.3).mean()
    smoothness = _reference_smoothness(maps, 2.0, 0.3)
    assert terms["ce"] == pytest.approx(ce, rel=1e-5)
    assert terms["area"] == pytest.approx(area, rel=1e-5)
    assert terms["smoothness"] == pytest.approx(smoothness, rel=1e-4)
    assert terms["loss"] == pytest.approx(
        0.5 * ce + 0.25 * area + 0.125 * smoothness, rel=1e-5
    )


def test_smoothness_with_another_power_and_no_border():
    maps = np.random.default_rng(1).uniform(size=(2, 4, 5, 2)).astype("float32")
    loss = kp.PerturbationLoss(smoothness_power=1.5, border=0.0)
    assert _value(loss.smoothness(maps)) == pytest.approx(
        _reference_smoothness(maps, 1.5, 0.0), rel=1e-4
    )


def test_a_smooth_empty_map_costs_less_than_a_noisy_full_one():
    loss = kp.PerturbationLoss()
    logits = np.array([[5.0, 0.0]], "float32")
    classes = np.array([0], "int32")
    empty = np.zeros((1, 8, 8, 1), "float32")
    noisy = np.random.default_rng(0).uniform(size=(1, 8, 8, 1)).astype("float32")
    assert _value(loss(logits, classes, empty)) < _value(loss(logits, classes, noisy))


def test_deletion_term_is_off_by_default_and_needs_the_deleted_logits():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 4)).astype("float32")
    classes = np.array([0, 3, 1], "int32")
    maps = rng.uniform(size=(3, 5, 5, 3)).astype("float32")
    # Off: the paper's terms only, whatever is passed.
    off = kp.PerturbationLoss().terms(logits, classes, maps, deleted_logits=logits)
    assert set(off) == {"loss", "ce", "area", "smoothness"}
    with pytest.raises(ValueError, match="deleted_logits"):
        kp.PerturbationLoss(deletion_coeff=1.0).terms(logits, classes, maps)


def test_deletion_term_is_minus_log_of_losing_the_class():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 4)).astype("float32")
    deleted = rng.normal(size=(3, 4)).astype("float32") * 4
    deleted[0, 2] = 40.0  # p_t rounds to 1 in float32: the term stays finite
    classes = np.array([2, 3, 1], "int32")
    maps = rng.uniform(size=(3, 5, 5, 3)).astype("float32")
    loss = kp.PerturbationLoss(deletion_coeff=0.5)
    terms = {
        k: _value(v) for k, v in loss.terms(logits, classes, maps, deleted).items()
    }
    shifted = deleted.astype("float64") - deleted.max(-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    others = 1.0 - probabilities[np.arange(3), classes]
    others[0] = np.exp(shifted[0, [0, 1, 3]]).sum() / np.exp(shifted[0]).sum()
    assert terms["deletion"] == pytest.approx(-np.log(others).mean(), rel=1e-4)
    paper = kp.PerturbationLoss().terms(logits, classes, maps)
    assert terms["loss"] == pytest.approx(
        _value(paper["loss"]) + 0.5 * terms["deletion"], rel=1e-5
    )
    # Losing the class costs less than keeping it.
    keeps = np.eye(4, dtype="float32")[classes] * 10
    loses = -keeps
    assert _value(loss.deletion(loses, classes)) < _value(loss.deletion(keeps, classes))


def test_config_round_trip_keeps_the_values():
    loss = kp.PerturbationLoss(
        ce_coeff=0.2, area_power=0.5, border=0.1, deletion_coeff=0.25
    )
    rng = np.random.default_rng(4)
    args = (
        rng.normal(size=(3, 5)).astype("float32"),
        np.array([1, 4, 1]),
        rng.uniform(size=(3, 6, 6, 3)).astype("float32"),
        rng.normal(size=(3, 5)).astype("float32"),
    )
    run_loss_test(loss, args)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ce_coeff": -1},
        {"area_power": 0},
        {"smoothness_power": -2},
        {"deletion_coeff": -0.5},
        # Issue 22, case 8: NaN and Inf would make every loss and map NaN.
        {"ce_coeff": float("nan")},
        {"area_coeff": float("inf")},
        {"border": "0.3"},
    ],
)
def test_rejects_bad_coefficients(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        kp.PerturbationLoss(**kwargs)


# Issue 24: the multi-label loss is the binary cross-entropy of keeping each
# present class, with area and smoothness over the present pairs' maps,
# padding (weight 0) ignored, written out by hand.
def test_multilabel_terms_match_a_hand_computation():
    rng = np.random.default_rng(1)
    masked_logits = rng.normal(size=(4, 5)).astype("float32")  # 2 images x 2
    classes = np.array([3, 1, 0, 2], "int32")
    weights = np.array([1, 1, 1, 0], "float32")
    maps = rng.uniform(size=(2, 5, 6, 4)).astype("float32")
    loss = kp.PerturbationLoss(
        ce_coeff=0.5, area_coeff=0.25, smoothness_coeff=0.125, border=0.3
    )
    terms = loss.terms(masked_logits, classes, maps, weights=weights, multilabel=True)
    terms = {k: _value(v) for k, v in terms.items()}

    kept = masked_logits[np.arange(4), classes][:3]
    ce = np.mean(-np.log(1 / (1 + np.exp(-kept.astype(np.float64)))))
    present = maps[..., :3]
    area = ((present + 0.0005) ** 0.3).mean()
    smoothness = _reference_smoothness(present, 2.0, 0.3)
    assert terms["ce"] == pytest.approx(ce, rel=1e-5)
    assert terms["area"] == pytest.approx(area, rel=1e-5)
    assert terms["smoothness"] == pytest.approx(smoothness, rel=1e-4)
    assert terms["loss"] == pytest.approx(
        0.5 * ce + 0.25 * area + 0.125 * smoothness, rel=1e-4
    )


# Issue 24: the multi-label deletion term is -log(1 - sigmoid) of the deleted
# logit, over the present pairs.
def test_multilabel_deletion_term_is_the_binary_cross_entropy_of_losing():
    deleted = np.array([[2.0, -1.0], [0.5, 4.0], [1.0, 1.0]], "float32")
    classes = np.array([0, 1, 0], "int32")
    weights = np.array([1, 1, 0], "float32")
    loss = kp.PerturbationLoss(deletion_coeff=1.0)
    maps = np.full((3, 4, 4, 3), 0.5, "float32")
    terms = loss.terms(
        np.zeros((3, 2), "float32"), classes, maps, deleted, weights, True
    )
    expected = np.mean(np.log1p(np.exp(np.array([2.0, 4.0]))))
    assert _value(terms["deletion"]) == pytest.approx(expected, rel=1e-5)
