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
