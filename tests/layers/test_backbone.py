import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_ptame as kp
from tests.helpers import random_images, tiny_classifier
from tests.helpers.test_case import run_layer_test


def test_returns_the_classifier_logits_on_raw_pixels():
    classifier = tiny_classifier()
    backbone = kp.Backbone(classifier)
    images = random_images(3)
    np.testing.assert_allclose(
        ops.convert_to_numpy(backbone(images)),
        ops.convert_to_numpy(classifier(images.astype("float32"))),
        rtol=1e-5,
        atol=1e-5,
    )


def test_preprocessor_runs_before_the_classifier():
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(2, use_bias=False)(
        keras.layers.GlobalAveragePooling2D()(inputs)
    )
    classifier = keras.Model(inputs, outputs)
    images = random_images(2)
    plain = ops.convert_to_numpy(kp.Backbone(classifier)(images))
    scaled = ops.convert_to_numpy(
        kp.Backbone(classifier, preprocessor=keras.layers.Rescaling(0.5))(images)
    )
    np.testing.assert_allclose(scaled, plain * 0.5, rtol=1e-5, atol=1e-4)


def test_probabilities_are_turned_into_log_probabilities():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    probabilities = keras.layers.Dense(3, activation="softmax")(x)
    backbone = kp.Backbone(
        keras.Model(inputs, probabilities), output_type="probabilities"
    )
    logits = ops.convert_to_numpy(backbone(random_images(2)))
    np.testing.assert_allclose(np.exp(logits).sum(-1), 1, rtol=1e-5)


def test_is_frozen():
    backbone = kp.Backbone(tiny_classifier())
    backbone.build((None, 16, 16, 3))
    assert backbone.trainable_weights == []
    assert len(backbone.non_trainable_weights) == len(backbone.classifier.weights)


def test_knows_the_number_of_classes():
    assert kp.Backbone(tiny_classifier(num_classes=9)).num_classes == 9


def test_layer_checks_and_saving(tmp_path):
    classifier = tiny_classifier()
    backbone = kp.Backbone(
        classifier, preprocessor=keras.layers.Rescaling(2.0), name="bb"
    )
    restored = run_layer_test(
        backbone,
        random_images(2),
        tmp_path,
        expected_output_shape=(2, 4),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=len(classifier.weights),
    )
    assert restored.output_type == "logits"
    assert isinstance(restored.preprocessor, keras.layers.Rescaling)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="classifier"):
        kp.Backbone("resnet")
    with pytest.raises(ValueError, match="preprocessor"):
        kp.Backbone(tiny_classifier(), preprocessor=3)
    with pytest.raises(ValueError, match="output_type"):
        kp.Backbone(tiny_classifier(), output_type="softmax")


def _multilabel_backbone(**kwargs):
    return kp.Backbone(tiny_classifier(), output_type="multilabel_logits", **kwargs)


# Issue 24: a multi-label classifier's scores are independent sigmoids, a
# softmax classifier's stay softmax probabilities.
def test_probabilities_are_sigmoids_for_multilabel_outputs():
    logits = np.array([[2.0, -1.0, 0.5, 3.0], [0.0, 0.0, -4.0, 1.0]], "float32")
    sigmoid = 1 / (1 + np.exp(-logits))
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    got = ops.convert_to_numpy(_multilabel_backbone().probabilities(logits))
    np.testing.assert_allclose(got, sigmoid, rtol=1e-6)
    got = ops.convert_to_numpy(kp.Backbone(tiny_classifier()).probabilities(logits))
    np.testing.assert_allclose(got, softmax, rtol=1e-6)


# Issue 24: the present classes are those above the threshold, at most
# `max_labels`, padded with weight 0, and the top class when none is present.
def test_present_classes_pad_and_fall_back_to_the_top_class():
    backbone = _multilabel_backbone(label_threshold=0.5, max_labels=3)
    logits = np.array(
        [
            [2.0, -1.0, 0.5, 3.0],  # three present: 3, 0, 2
            [-3.0, -2.0, -4.0, -1.0],  # none present: the top class, 3
            [1.0, 2.0, 3.0, 4.0],  # four present: the top three
            [-1.0, 1.0, -2.0, -3.0],  # one present
        ],
        "float32",
    )
    classes, weights = backbone.present_classes(logits)
    np.testing.assert_array_equal(ops.convert_to_numpy(classes)[:, 0], [3, 3, 3, 1])
    np.testing.assert_array_equal(ops.convert_to_numpy(classes)[0], [3, 0, 2])
    np.testing.assert_array_equal(ops.convert_to_numpy(classes)[2], [3, 2, 1])
    np.testing.assert_array_equal(
        ops.convert_to_numpy(weights),
        [[1, 1, 1], [1, 0, 0], [1, 1, 1], [1, 0, 0]],
    )


# Issue 24: the multi-label options survive get_config and a .keras round trip.
def test_multilabel_backbone_saves_and_loads(tmp_path):
    backbone = _multilabel_backbone(label_threshold=0.3, max_labels=2, name="ml")
    restored = run_layer_test(
        backbone,
        random_images(2),
        tmp_path,
        expected_output_shape=(2, 4),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=len(backbone.classifier.weights),
    )
    assert restored.output_type == "multilabel_logits"
    assert (restored.label_threshold, restored.max_labels) == (0.3, 2)
    assert restored.multilabel


# Issue 24: sigmoid outputs read as multi-label logits are not warned about,
# while the same outputs declared softmax probabilities still are.
def test_check_outputs_does_not_warn_for_multilabel_outputs():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    sigmoids = keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(x))
    backbone = kp.Backbone(sigmoids, output_type="multilabel_logits")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backbone.check_outputs((16, 16))
    with pytest.warns(UserWarning, match="not rows in"):
        kp.Backbone(sigmoids, output_type="probabilities").check_outputs((16, 16))


# Issue 24: bad multi-label options are refused with their names.
def test_rejects_bad_multilabel_options():
    with pytest.raises(ValueError, match="label_threshold"):
        _multilabel_backbone(label_threshold=1.5)
    with pytest.raises(ValueError, match="max_labels"):
        _multilabel_backbone(max_labels=0)
