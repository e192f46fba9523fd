import keras
import numpy as np
import pytest
from keras import ops

import keras_ptame as kp
from tests.helpers import (
    random_images,
    tiny_classifier,
    tiny_feature_model,
)
from tests.helpers.test_case import run_layer_test


def test_returns_the_model_outputs_finest_first():
    model = tiny_feature_model()
    features = kp.AuxiliaryExtractor(model)(random_images(2))
    assert [tuple(f.shape) for f in features] == [(2, 8, 8, 6), (2, 4, 4, 10)]


def test_taps_named_layers_in_any_order():
    classifier = tiny_classifier()
    extractor = kp.AuxiliaryExtractor(classifier, layer_names=["stage2", "stage1"])
    images = random_images(2)
    features = extractor(images)
    assert [tuple(f.shape) for f in features] == [(2, 16, 16, 8), (2, 8, 8, 16)]
    stage1 = keras.Model(classifier.input, classifier.get_layer("stage1").output)
    np.testing.assert_allclose(
        ops.convert_to_numpy(features[0]),
        ops.convert_to_numpy(stage1(images.astype("float32"))),
        rtol=1e-5,
        atol=1e-5,
    )


def test_is_frozen():
    extractor = kp.AuxiliaryExtractor(tiny_feature_model())
    extractor.build((None, 16, 16, 3))
    assert extractor.trainable_weights == []


def test_layer_checks_and_saving(tmp_path):
    # It holds the whole classifier, frozen, whichever layers it taps.
    classifier = tiny_classifier()
    extractor = kp.AuxiliaryExtractor(
        classifier, layer_names=["stage1", "stage2"], name="aux"
    )
    restored = run_layer_test(
        extractor,
        random_images(1),
        tmp_path,
        expected_output_shape=[(1, 16, 16, 8), (1, 8, 8, 16)],
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=len(classifier.weights),
    )
    assert restored.layer_names == ["stage1", "stage2"]


def test_a_whole_feature_model_passes_the_layer_checks(tmp_path):
    run_layer_test(
        kp.AuxiliaryExtractor(tiny_feature_model()),
        random_images(2),
        tmp_path,
        expected_output_shape=[(2, 8, 8, 6), (2, 4, 4, 10)],
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=4,
    )


def test_rejects_unknown_layer_names():
    with pytest.raises(ValueError, match="does not have.*nope"):
        kp.AuxiliaryExtractor(tiny_classifier(), layer_names=["stage1", "nope"])


def test_rejects_a_model_that_is_not_keras():
    with pytest.raises(ValueError, match="Keras model"):
        kp.AuxiliaryExtractor(lambda x: x)
