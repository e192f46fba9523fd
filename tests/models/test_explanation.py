"""Honest maps: evidence reported, flat maps flagged and never stretched."""

import warnings

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.models import explanation
from tests.helpers import (
    IMAGE_SIZE,
    NUM_CLASSES,
    random_images,
    tiny_explainer,
    to_numpy,
)


def explainer_blind_to(blind_class):
    """A tiny explainer whose decoder holds nothing for `blind_class`: its
    maps are constant, as those of a class that needs no evidence. The other
    classes' maps get contrast well above the threshold whatever the
    decoder's initialisation (scaled up tenfold)."""
    explainer = tiny_explainer()
    explainer.ensure_built((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    kernel = 10.0 * to_numpy(explainer.decoder.fuser.kernel)
    kernel[..., blind_class] = 0.0
    explainer.decoder.fuser.kernel.assign(kernel)
    return explainer


def test_a_map_without_evidence_comes_back_flat_and_flagged():
    explainer = explainer_blind_to(2)
    images = random_images(4)
    outputs = explainer.explain_outputs(images, classes=[2, 2, 1, 3])
    assert outputs["flat"].tolist() == [True, True, False, False]
    np.testing.assert_allclose(outputs["evidence"][:2], 0.0, atol=1e-6)
    assert np.all(outputs["evidence"][2:] > explainer.evidence_threshold)
    # Flat maps are zeros, not stretched noise; the others lie in [0, 1].
    assert not np.any(outputs["maps"][:2])
    assert np.all((outputs["maps"] >= 0) & (outputs["maps"] <= 1 + 1e-6))
    assert not np.any(np.isnan(outputs["maps"]))
    # Normalised after upsampling (the earlier default), they span [0, 1].
    spanning = explainer.explain(images, [2, 2, 1, 3], normalize="minmax_upsampled")
    assert not np.any(spanning[:2])
    np.testing.assert_allclose(spanning[2:].min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(spanning[2:].max(axis=(1, 2)), 1.0, atol=1e-5)


def _upsample(maps, size):
    """Bilinear resizing of `(N, h, w)` maps, half-pixel centres, in numpy."""

    def axis_weights(source, target):
        position = np.maximum((np.arange(target) + 0.5) * source / target - 0.5, 0)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, source - 1)
        weights = np.zeros((target, source))
        np.add.at(weights, (np.arange(target), low), 1 - (position - low))
        np.add.at(weights, (np.arange(target), high), position - low)
        return weights

    rows = axis_weights(maps.shape[1], size)
    cols = axis_weights(maps.shape[2], size)
    return np.einsum("ih,nhw,jw->nij", rows, maps, cols)


def _minmax(maps):
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return (maps - low) / np.maximum(high - low, 1e-8)


def _raw_maps(explainer, images, classes):
    explainer.ensure_built(images.shape)
    features = explainer.extractor(keras.ops.cast(images, "float32"))
    raw = explainer.decoder(
        features, classes=np.asarray(classes, "int32")[:, None], training=False
    )
    return to_numpy(raw)[..., 0].astype(np.float64)


def test_minmax_maps_are_the_authors_minmax_then_upsampling():
    # No map flagged: all are normalised.
    explainer = tiny_explainer(evidence_threshold=0.0)
    images = random_images(3)
    classes = [0, 1, 3]
    raw = _raw_maps(explainer, images, classes)
    assert raw.shape[1] < IMAGE_SIZE  # upsampled from the decoder's size
    maps = explainer.explain(images, classes)
    expected = _upsample(_minmax(raw), IMAGE_SIZE)
    np.testing.assert_allclose(maps, expected, atol=1e-5)
    np.testing.assert_allclose(
        explainer.explain(images, classes, resolution="decoder"),
        _minmax(raw),
        atol=1e-5,
    )
    # The earlier order by option: upsampled, then normalised.
    upsampled = explainer.explain(images, classes, normalize="minmax_upsampled")
    np.testing.assert_allclose(
        upsampled, _minmax(_upsample(raw, IMAGE_SIZE)), atol=1e-5
    )
    # Both orders rank the pixels alike: one is an increasing affine
    # function of the other.
    for found, other in zip(maps, upsampled, strict=True):
        slope, offset = np.polyfit(other.ravel(), found.ravel(), 1)
        assert slope > 0
        np.testing.assert_allclose(slope * other + offset, found, atol=1e-5)


def test_flat_maps_come_unzeroed_on_request():
    explainer = explainer_blind_to(2)
    images = random_images(3)
    classes = [2, 0, 1]
    outputs = explainer.explain_outputs(images, classes, zero_flat=False)
    assert outputs["flat"].tolist() == [True, False, False]
    raw = _raw_maps(explainer, images, classes)
    np.testing.assert_allclose(
        outputs["maps"], _upsample(_minmax(raw), IMAGE_SIZE), atol=1e-5
    )
    zeroed = explainer.explain(images, classes)
    assert not np.any(zeroed[0])
    np.testing.assert_array_equal(zeroed[1:], outputs["maps"][1:])


def test_unnormalised_maps_are_the_sigmoid_maps_and_give_the_evidence():
    explainer = explainer_blind_to(2)
    images = random_images(3)
    classes = [2, 0, 1]
    outputs = explainer.explain_outputs(images, classes)
    raw = explainer.explain(images, classes, resolution="decoder", normalize="none")
    # The blind class's sigmoid maps are 0.5 everywhere, as trained.
    np.testing.assert_allclose(raw[0], 0.5, atol=1e-6)
    np.testing.assert_allclose(
        raw.max(axis=(1, 2)) - raw.min(axis=(1, 2)), outputs["evidence"], atol=1e-6
    )
    full = explainer.explain(images, classes, normalize="none")
    assert full.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert np.all((full > 0) & (full < 1))


def test_sigmoid_maps_keep_the_minmax_order_with_the_trained_values():
    explainer = explainer_blind_to(2)
    images = random_images(3)
    classes = [2, 0, 1]
    minmax = explainer.explain(images, classes)
    sigmoid = explainer.explain(images, classes, normalize="sigmoid")
    # The flat map stays all zeros; the others are the sigmoid of maps that
    # are an increasing affine function of the min-max maps (the same
    # upsampled raw maps), so the pixels rank alike.
    assert not np.any(sigmoid[0])
    for index in (1, 2):
        logits = np.log(sigmoid[index]) - np.log1p(-sigmoid[index])
        slope, offset = np.polyfit(minmax[index].ravel(), logits.ravel(), 1)
        assert slope > 0
        np.testing.assert_allclose(slope * minmax[index] + offset, logits, atol=1e-3)
    # At the decoder's resolution they are the trained sigmoid maps.
    np.testing.assert_allclose(
        explainer.explain(
            images[1:], classes[1:], resolution="decoder", normalize="sigmoid"
        ),
        explainer.explain(
            images[1:], classes[1:], resolution="decoder", normalize="none"
        ),
        atol=1e-6,
    )


def test_the_threshold_is_an_option_saved_with_the_explainer(tmp_path):
    explainer = tiny_explainer(evidence_threshold=0.0)
    images = random_images(2)
    assert not np.any(explainer.explain_outputs(images)["flat"])
    # Changed after a first `explain`: the next one uses the new value.
    explainer.evidence_threshold = 1.0
    assert np.all(explainer.explain_outputs(images)["flat"])
    path = str(tmp_path / "explainer.keras")
    explainer.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.evidence_threshold == 1.0
    assert np.all(loaded.explain_outputs(images)["flat"])


@pytest.mark.parametrize(
    "options, match",
    [
        ({"normalize": "softmax"}, "`normalize` must be one of"),
        ({"resolution": "half"}, "`resolution` must be one of"),
    ],
)
def test_unknown_explain_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        tiny_explainer().explain(random_images(1), **options)


def _single_class_calls(explainer, images, classes, **options):
    """`explain_outputs` for each column of `classes` `(N, k)`, stacked on axis 1."""
    calls = [
        explainer.explain_outputs(images, classes=classes[:, j], **options)
        for j in range(classes.shape[1])
    ]
    return {key: np.stack([c[key] for c in calls], axis=1) for key in calls[0]}


def _assert_same_outputs(several, single):
    assert several.keys() == single.keys()
    for key, value in single.items():
        assert several[key].shape == value.shape, key
        if value.dtype == bool or key == "classes":
            np.testing.assert_array_equal(several[key], value, err_msg=key)
        else:
            np.testing.assert_allclose(several[key], value, atol=1e-5, err_msg=key)


# Issue 24: the top-k maps (and every output) equal k single-class calls.
@pytest.mark.parametrize(
    "options",
    [{}, {"resolution": "decoder", "normalize": "sigmoid", "zero_flat": False}],
)
def test_top_k_outputs_equal_single_class_calls(options):
    # Class 2's maps are flat, class 1's misranked: every flag is exercised.
    explainer = explainer_blind_to(2)
    explainer.misranked_classes = [1]
    images = random_images(5)
    top = explainer.explain_outputs(images, top_k=3, **options)
    assert top["maps"].shape[:2] == (5, 3) and top["classes"].shape == (5, 3)
    _assert_same_outputs(
        top, _single_class_calls(explainer, images, top["classes"], **options)
    )


# Issue 24: `classes` (N, k), different per image and repeated, as k calls.
def test_classes_per_image_equal_single_class_calls():
    explainer = explainer_blind_to(2)
    images = random_images(4)
    classes = np.array([[2, 0], [1, 1], [3, 2], [0, 3]])
    several = explainer.explain_outputs(images, classes=classes)
    _assert_same_outputs(several, _single_class_calls(explainer, images, classes))
    assert several["flat"][:, 1].tolist() == [False, False, True, False]


# Issue 24: top_k ranks by the classifier's scores, highest first.
def test_top_k_follows_the_classifier_scores():
    explainer = tiny_explainer()
    images = random_images(6, seed=3)
    outputs = explainer.explain_outputs(images, top_k=NUM_CLASSES)
    logits = to_numpy(explainer.backbone(keras.ops.cast(images, "float32")))
    probabilities = to_numpy(keras.ops.softmax(logits))
    np.testing.assert_array_equal(
        outputs["classes"], np.argsort(-probabilities, axis=-1, kind="stable")
    )
    np.testing.assert_allclose(
        outputs["scores"], -np.sort(-probabilities, axis=-1), atol=1e-6
    )
    assert np.all(np.diff(outputs["scores"], axis=-1) <= 0)


# Issue 24: the default keeps its shapes; top_k=1 keeps the class axis; a
# change of k recompiles predict (the shapes follow each call).
def test_top_k_shapes_and_recompiling():
    explainer = tiny_explainer()
    images = random_images(3)
    default = explainer.explain_outputs(images)
    assert default["maps"].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert default["classes"].shape == default["flat"].shape == (3,)
    for k in (2, 1, 4):
        maps = explainer.explain(images, top_k=k)
        assert maps.shape == (3, k, IMAGE_SIZE, IMAGE_SIZE)
    np.testing.assert_allclose(
        explainer.explain(images, top_k=1)[:, 0], default["maps"], atol=1e-6
    )
    again = explainer.explain_outputs(images)
    assert again["maps"].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    np.testing.assert_array_equal(again["classes"], default["classes"])


# Issue 24: a bad top_k, or top_k with classes, is refused with the value.
@pytest.mark.parametrize(
    "options, match",
    [
        ({"top_k": 0}, r"`top_k` must be in \[1, 4\]. Received: top_k=0"),
        ({"top_k": 5}, r"`top_k` must be in \[1, 4\]. Received: top_k=5"),
        ({"top_k": 2.0}, r"`top_k` must be an int. Received: top_k=2.0"),
        ({"top_k": True}, r"`top_k` must be an int. Received: top_k=True"),
        ({"top_k": 2, "classes": [0, 1]}, "either `classes` or `top_k`"),
        ({"classes": np.zeros((2, 0), int)}, r"shape \(2, 0\)"),
        ({"classes": [[0, 4], [1, 1]]}, r"\[0, 4\).*from 0 to 4"),
    ],
)
def test_bad_top_k_and_classes_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        tiny_explainer().explain(random_images(2), **options)


def test_a_threshold_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match=r"`evidence_threshold` must be in \[0, 1\]"):
        tiny_explainer(evidence_threshold=1.5)


def test_fit_logs_the_share_of_empty_maps():
    explainer = tiny_explainer(evidence_threshold=1.0)
    explainer.compile()
    history = explainer.fit(random_images(8), epochs=1, batch_size=4, verbose=0)
    # Every map falls below a threshold of 1: all are empty.
    assert history.history["empty"] == [1.0]
    explainer = tiny_explainer(evidence_threshold=0.0)
    explainer.compile()
    history = explainer.fit(random_images(8), epochs=1, batch_size=4, verbose=0)
    assert history.history["empty"] == [0.0]


def black_predicts_class_zero():
    """Two classes: 0 for dark images (0.88 on black), 1 for bright ones."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    dense = keras.layers.Dense(2)
    outputs = dense(x)
    dense.set_weights([np.array([[-4.0, 4.0]] * 3, "float32"), np.array([1.0, -1.0])])
    return keras.Model(inputs, outputs)


def test_fit_warns_about_the_classes_the_fill_predicts():
    classifier = black_predicts_class_zero()
    features = keras.Model(classifier.input, classifier.layers[1].output)
    explainer = kp.PTAME(classifier, kp.AuxiliaryExtractor(features))
    explainer.compile()
    with pytest.warns(UserWarning, match=r"predicts class 0 \(probability 0\.88\)"):
        explainer.fit(random_images(4), epochs=1, batch_size=4, verbose=0)


def test_the_black_fill_is_probed_once_per_image_size(monkeypatch):
    probed = []
    probe = explanation.fill_predictions

    def counting(backbone, images, fill):
        probed.append(tuple(images.shape))
        return probe(backbone, images, fill)

    monkeypatch.setattr(explanation, "fill_predictions", counting)
    classifier = black_predicts_class_zero()
    features = keras.Model(classifier.input, classifier.layers[1].output)
    explainer = kp.PTAME(classifier, kp.AuxiliaryExtractor(features))
    explainer.compile()
    with pytest.warns(UserWarning, match="predicts class 0"):
        explainer.fit(random_images(4), epochs=1, batch_size=4, verbose=0)
    # The black image is the same for any data: a second fit asks no more
    # (and warns about nothing, the removal check being off).
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        explainer.fit(
            random_images(4, seed=1),
            epochs=1,
            batch_size=4,
            verbose=0,
            removal_check=0,
        )
    assert probed == [(1, IMAGE_SIZE, IMAGE_SIZE, 3)]


def test_fit_is_quiet_when_the_fill_predicts_nothing_confidently():
    explainer = tiny_explainer()
    explainer.compile()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explainer.fit(random_images(4), epochs=1, batch_size=4, verbose=0)
    assert not [w for w in caught if "fill image" in str(w.message)]


# Issue 22, case 10
@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"batch_size": -1}, ValueError, "`batch_size` must be a positive integer"),
        ({"batch_size": 1.5}, ValueError, "`batch_size` must be a positive integer"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be a positive integer"),
        ({"verbose": -3}, ValueError, "`verbose` must be one of"),
        ({"zero_flat": "no"}, TypeError, "`zero_flat` must be a bool"),
    ],
)
def test_a_refused_explain_argument_leaves_the_explainer_working(options, error, match):
    explainer = tiny_explainer()
    images = random_images(3)
    expected = explainer.explain(images)
    with pytest.raises(error, match=match):
        explainer.explain(images, **options)
    np.testing.assert_allclose(explainer.explain(images), expected, atol=1e-6)


class _FailingAfterABatch(keras.callbacks.Callback):
    def on_predict_batch_end(self, batch, logs=None):
        raise KeyboardInterrupt


# Issue 22, case 10
def test_an_interrupted_predict_leaves_the_explainer_working():
    # Under JAX, Keras' `predict` takes the weights off the model while it
    # runs: an interrupt used to leave them off, and every later call failing.
    explainer = tiny_explainer()
    images = random_images(3)
    expected = explainer.explain(images)
    with pytest.raises(KeyboardInterrupt):
        explainer.predict(images, batch_size=1, callbacks=[_FailingAfterABatch()])
    np.testing.assert_allclose(explainer.explain(images), expected, atol=1e-6)


def test_the_explained_class_is_numpy_s_argmax():
    # Written without argmax (for LiteRT's builtin operations): ties go to
    # the first, a NaN counts as the highest, as in numpy.
    logits = np.array(
        [[1, 3, 3, 0], [0, 0, 0, 0], [2, np.nan, 5, np.nan], [-1, -2, -0.5, -3]],
        "float32",
    )
    got = explanation.highest_class(keras.ops.convert_to_tensor(logits))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(got), np.argmax(logits, -1)
    )
    assert keras.backend.standardize_dtype(got.dtype) == "int32"
