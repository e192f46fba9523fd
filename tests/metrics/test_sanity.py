import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.baselines import CentreMaps, GradCAM, GradientSaliency
from keras_ptame.metrics import (
    cascade_layers,
    cascading_randomization,
    data_randomization,
    model_randomization,
    randomize_weights,
    rank_correlation,
    structural_similarity,
)
from tests.helpers import random_images, tiny_classifier

C1, C2 = 0.01**2, 0.03**2


def test_rank_correlation_by_hand():
    a = np.arange(16, dtype="float32").reshape(1, 4, 4)
    np.testing.assert_allclose(rank_correlation(a, a**2), [1.0])
    np.testing.assert_allclose(rank_correlation(a, -a), [-1.0])
    np.testing.assert_allclose(rank_correlation(a, np.ones_like(a)), [0.0])
    with pytest.raises(ValueError, match="shape"):
        rank_correlation(a, a[:, :2])


def test_randomize_weights_keeps_the_architecture_and_the_original():
    model = tiny_classifier()
    before = [np.array(w) for w in model.get_weights()]
    copy = randomize_weights(model, seed=3)
    # Seeded, the copy is reproducible.
    for a, b in zip(
        copy.get_weights(), randomize_weights(model, seed=3).get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert copy is not model
    assert [w.shape for w in copy.get_weights()] == [w.shape for w in before]
    kernels = [
        (a, b) for a, b in zip(before, copy.get_weights(), strict=True) if a.ndim > 1
    ]
    assert all(not np.allclose(a, b) for a, b in kernels)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="Keras model"):
        randomize_weights(lambda x: x)


def test_an_explainer_that_ignores_the_model_fails_the_check():
    images = random_images(3)
    check = model_randomization(lambda _: CentreMaps(), tiny_classifier(), images)
    np.testing.assert_allclose(check["rank_correlation"], 1.0)
    np.testing.assert_allclose(check["ssim"], 1.0, atol=1e-6)


def test_grad_cam_depends_on_the_weights():
    images = random_images(4)
    check = model_randomization(
        lambda model: GradCAM(model, "stage2"), tiny_classifier(), images, seed=5
    )
    assert check["rank_correlation"].shape == (4,)
    assert check["mean"] < 0.9
    assert check["mean"] == check["mean_rank_correlation"]


# === SSIM, by hand ===


def _ssim_window(a, b):
    """SSIM of one window, the whole of `a` and `b`, by Wang et al.'s formula
    with the sample (co)variance."""
    mean_a, mean_b = a.mean(), b.mean()
    covariance = np.cov(a.ravel(), b.ravel(), ddof=1)
    return ((2 * mean_a * mean_b + C1) * (2 * covariance[0, 1] + C2)) / (
        (mean_a**2 + mean_b**2 + C1) * (covariance[0, 0] + covariance[1, 1] + C2)
    )


def test_ssim_of_identical_maps_is_one():
    maps = np.random.default_rng(0).random((3, 12, 10))
    ssim = structural_similarity(maps, maps)
    assert ssim.dtype == np.float32 and ssim.shape == (3,)
    np.testing.assert_allclose(ssim, 1.0, atol=1e-6)


def test_ssim_of_constant_maps_is_the_luminance_term():
    a, b = np.full((1, 9, 9), 0.2), np.full((1, 9, 9), 0.5)
    expected = (2 * 0.2 * 0.5 + C1) / (0.2**2 + 0.5**2 + C1)
    np.testing.assert_allclose(structural_similarity(a, b), [expected], rtol=1e-6)


def test_ssim_of_a_shifted_map_loses_only_luminance():
    # On a 7x7 map the valid region is the centre pixel, whose window is the
    # whole map: SSIM is the formula on one window.
    a = np.random.default_rng(1).random((1, 7, 7)) * 0.5
    shifted = a + 0.3
    expected = (2 * a.mean() * shifted.mean() + C1) / (
        a.mean() ** 2 + shifted.mean() ** 2 + C1
    )
    np.testing.assert_allclose(structural_similarity(a, shifted), [expected], rtol=1e-5)
    np.testing.assert_allclose(
        expected, _ssim_window(a[0], shifted[0]), rtol=1e-10
    )  # the contrast-structure term is 1


def test_ssim_of_anticorrelated_maps_is_negative():
    a = np.random.default_rng(2).random((1, 7, 7))
    ssim = structural_similarity(a, 1 - a)
    np.testing.assert_allclose(ssim, [_ssim_window(a[0], 1 - a[0])], rtol=1e-5)
    assert ssim[0] < -0.5


def test_ssim_is_the_mean_over_the_valid_windows():
    rng = np.random.default_rng(3)
    a, b = rng.random((2, 1, 10, 9))
    # Centres whose 7x7 window lies inside the map: rows 3..6, columns 3..5.
    expected = np.mean(
        [
            _ssim_window(
                a[0, i - 3 : i + 4, j - 3 : j + 4], b[0, i - 3 : i + 4, j - 3 : j + 4]
            )
            for i in range(3, 7)
            for j in range(3, 6)
        ]
    )
    np.testing.assert_allclose(structural_similarity(a, b), [expected], rtol=1e-5)


def test_ssim_refuses_bad_maps():
    maps = np.zeros((2, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        structural_similarity(maps, maps[:1])
    with pytest.raises(ValueError, match="at least 7x7"):
        structural_similarity(maps[:, :6], maps[:, :6])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        structural_similarity(maps, maps + 2)


# === Cascading randomisation ===


def _moved(model, seed):
    """Every weight of `model` moved off its initial value, as training does
    (a fresh copy's Dense bias and BatchNorm statistics would equal them)."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.uniform(0.1, 0.5, w.shape) for w in model.get_weights()])
    return model


def _bn_classifier(seed=0):
    """Conv, BatchNorm, conv, Dense: four weighted layers among others."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", name="c1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.1, name="dropout")(x)
    return _moved(keras.Model(inputs, keras.layers.Dense(3, name="logits")(x)), seed)


def _nested_classifier():
    """A conv and BatchNorm inside an inner functional model, a Dense head
    outside, in a `Backbone` with a preprocessor."""
    keras.utils.set_random_seed(4)
    features = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="c1")(features)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    inner = keras.Model(features, x, name="inner")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(inner(inputs))
    outer = _moved(keras.Model(inputs, keras.layers.Dense(3, name="logits")(x)), 4)
    return kp.Backbone(outer, preprocessor=keras.layers.Rescaling(1 / 255))


def _recording(explainer_class):
    """A `make_explainer` that keeps every classifier it is given."""
    given = []

    def make_explainer(classifier):
        given.append(classifier)
        return explainer_class(classifier)

    return make_explainer, given


def _layer_weights(network):
    """Each weighted layer's weights by its path, nested models walked."""
    weights = {}
    for layer in network.layers:
        if isinstance(layer, keras.Model):
            inner = _layer_weights(layer)
            weights.update({f"{layer.name}/{k}": v for k, v in inner.items()})
        elif layer.weights:
            weights[layer.name] = [np.array(w) for w in layer.get_weights()]
    return weights


def test_cascade_order_and_names():
    assert cascade_layers(_bn_classifier()) == ["logits", "c2", "bn1", "c1"]
    assert cascade_layers(_nested_classifier()) == ["logits", "inner/bn1", "inner/c1"]
    with pytest.raises(ValueError, match="Keras model"):
        cascade_layers(lambda x: x)


def test_cascade_through_a_keras_hub_backbone(tmp_path):
    from keras_ptame.demo import save_tiny_resnet

    backbone = kp.Backbone.from_preset(save_tiny_resnet(tmp_path / "resnet"))
    names = cascade_layers(backbone)
    network = backbone.classifier
    inner = [layer for layer in network.layers if isinstance(layer, keras.Model)]
    assert len(inner) == 1
    leaves = [layer.name for layer in inner[0].layers if layer.weights]
    assert names[0] == network.layers[-1].name
    assert names[1:] == [f"{inner[0].name}/{name}" for name in leaves[::-1]]
    before = [np.array(w) for w in network.get_weights()]
    make_explainer, given = _recording(lambda _: CentreMaps())
    images = random_images(2, size=32)
    check = cascading_randomization(make_explainer, backbone, images, seed=1, steps=[3])
    assert check["layers"] == [[], names[:3]]
    assert isinstance(given[1], kp.Backbone)
    assert given[1].preprocessor is backbone.preprocessor
    for a, b in zip(before, network.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("nested", [False, True])
def test_step_k_randomises_exactly_the_top_k_layers(nested):
    classifier = _nested_classifier() if nested else _bn_classifier()
    network = classifier.classifier if nested else classifier
    names = cascade_layers(classifier)
    before = _layer_weights(network)
    random = _layer_weights(randomize_weights(network, seed=9))
    assert sorted(names) == sorted(before)
    make_explainer, given = _recording(lambda _: CentreMaps())
    check = cascading_randomization(
        make_explainer, classifier, random_images(2), seed=9
    )
    assert check["steps"] == list(range(len(names) + 1))
    assert check["layers"] == [names[:k] for k in range(len(names) + 1)]
    assert len(given) == len(names) + 1 and given[0] is classifier
    for k, step in enumerate(given):
        weights = _layer_weights(step.classifier if nested else step)
        for index, name in enumerate(names):
            expected = random[name] if index < k else before[name]
            for a, b in zip(weights[name], expected, strict=True):
                np.testing.assert_array_equal(a, b)
            # Every variable of a randomised layer moved (BatchNorm's too).
            if index < k:
                for a, b in zip(weights[name], before[name], strict=True):
                    assert not np.allclose(a, b)
    # The user's classifier did not move.
    for name, weights in _layer_weights(network).items():
        for a, b in zip(weights, before[name], strict=True):
            np.testing.assert_array_equal(a, b)


def test_weight_dependent_maps_change_and_the_centre_prior_does_not():
    images = random_images(4)
    classifier = _bn_classifier()
    check = cascading_randomization(GradientSaliency, classifier, images, seed=2)
    steps = len(check["steps"])
    assert check["rank_correlation"].shape == (steps, 4)
    assert check["ssim"].shape == (steps, 4)
    np.testing.assert_allclose(check["rank_correlation"][0], 1.0)
    np.testing.assert_allclose(check["ssim"][0], 1.0, atol=1e-6)
    assert check["mean_rank_correlation"][-1] < 0.8
    assert check["mean_ssim"][-1] < 0.8
    np.testing.assert_allclose(
        check["mean_ssim"], check["ssim"].mean(axis=1), rtol=1e-6
    )
    centre = cascading_randomization(lambda _: CentreMaps(), classifier, images, seed=2)
    np.testing.assert_allclose(centre["rank_correlation"], 1.0)
    np.testing.assert_allclose(centre["ssim"], 1.0, atol=1e-6)


def test_every_step_explains_the_trained_classifiers_class():
    images = random_images(3)
    classifier = _bn_classifier()
    seen = []

    class Recorder(CentreMaps):
        def explain(self, images, classes=None):
            seen.append(np.array(classes))
            return super().explain(images, classes)

    predicted = np.argmax(classifier.predict(images, verbose=0), axis=-1)
    check = cascading_randomization(lambda _: Recorder(), classifier, images, seed=2)
    np.testing.assert_array_equal(check["classes"], predicted)
    assert len(seen) == 5 and all((s == predicted).all() for s in seen)
    cascading_randomization(
        lambda _: Recorder(), classifier, images, classes=[2, 1, 0], steps=[4]
    )
    np.testing.assert_array_equal(seen[-1], [2, 1, 0])


def test_cascading_refuses_bad_input():
    images = random_images(2)
    classifier = _bn_classifier()
    with pytest.raises(ValueError, match="Keras model"):
        cascading_randomization(lambda _: CentreMaps(), lambda x: x, images)
    with pytest.raises(ValueError, match="steps"):
        cascading_randomization(lambda _: CentreMaps(), classifier, images, steps=[5])

    class WrongSize(CentreMaps):
        def explain(self, images, classes=None):
            return super().explain(images[:, :8, :8], classes)

    with pytest.raises(ValueError, match="one map per image"):
        cascading_randomization(lambda _: WrongSize(), classifier, images)
    with pytest.raises(ValueError, match="explain"):
        cascading_randomization(lambda _: object(), classifier, images)


# === Data randomisation ===


def test_data_randomization_compares_two_classifiers():
    images = random_images(4)
    trained, shuffled = tiny_classifier(seed=0), tiny_classifier(seed=1)
    check = data_randomization(GradientSaliency, trained, shuffled, images)
    assert check["rank_correlation"].shape == check["ssim"].shape == (4,)
    assert check["mean_rank_correlation"] < 0.9
    assert check["mean_ssim"] == pytest.approx(float(check["ssim"].mean()))
    same = data_randomization(GradientSaliency, trained, trained, images)
    np.testing.assert_allclose(same["rank_correlation"], 1.0)
    centre = data_randomization(lambda _: CentreMaps(), trained, shuffled, images)
    np.testing.assert_allclose(centre["ssim"], 1.0, atol=1e-6)


def test_data_randomization_refuses_bad_input():
    images = random_images(2)
    trained = tiny_classifier()
    with pytest.raises(ValueError, match="random_label_classifier"):
        data_randomization(GradientSaliency, trained, lambda x: x, images)
    with pytest.raises(ValueError, match="classes"):
        data_randomization(
            GradientSaliency,
            trained,
            tiny_classifier(num_classes=2),
            images,
            classes=[3, 3],
        )
