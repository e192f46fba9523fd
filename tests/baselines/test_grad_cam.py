import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.baselines import GradCAM
from keras_ptame.baselines.gradients import layer_gradients
from tests.helpers import random_images, tiny_classifier
from tests.helpers.known_classifiers import two_patch_classifier, two_patch_images


def test_layer_gradients_match_the_head_weights():
    # After the ReLU layer "stage2" come global average pooling and a dense
    # layer: d logit_c / d A[h, w, k] = W[k, c] / (h * w) everywhere.
    model = tiny_classifier()
    images = random_images(3).astype("float32")
    classes = np.array([0, 1, 3])
    activations, gradients = layer_gradients(
        model, model.get_layer("stage2"), images, classes
    )
    kernel = model.layers[-1].get_weights()[0]
    assert activations.shape == gradients.shape == (3, 8, 8, 16)
    expected = kernel[:, classes].T[:, None, None, :] / 64
    np.testing.assert_allclose(
        gradients, np.broadcast_to(expected, gradients.shape), atol=1e-6
    )
    features = keras.Model(model.input, model.get_layer("stage2").output)
    expected_activations = keras.ops.convert_to_numpy(features(images))
    np.testing.assert_allclose(activations, expected_activations, atol=1e-5)


def test_each_class_map_points_at_its_own_patch():
    images, red, green = two_patch_images(count=2)
    explainer = GradCAM(two_patch_classifier(), "conv")
    maps = explainer.explain(images, classes=[0, 1])
    assert maps.shape == (2, 16, 16) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    np.testing.assert_allclose(maps[0], red[0].astype("float32"), atol=1e-6)
    np.testing.assert_allclose(maps[1], green[1].astype("float32"), atol=1e-6)


def test_default_class_is_the_prediction_and_batches_do_not_matter():
    images, red, _ = two_patch_images(count=3)
    images[1, :, :, 1] = 0.0  # image 1: red only, so class 0
    images[2, :, :, 0] = 0.0  # image 2: green only, so class 1
    classifier = two_patch_classifier()
    maps = GradCAM(classifier, "conv", batch_size=1).explain(images)
    together = GradCAM(classifier, "conv", batch_size=3).explain(images)
    np.testing.assert_allclose(maps, together, atol=1e-6)
    assert maps[1][red[1]].min() == 1.0
    assert maps[2][red[2]].max() == 0.0


def test_maps_of_a_coarser_layer_are_upsampled_to_the_images():
    maps = GradCAM(tiny_classifier(), "stage2").explain(random_images(2))  # 8x8
    assert maps.shape == (2, 16, 16)
    assert maps.min() >= 0.0 and maps.max() <= 1.0


def _swap_red_and_green(images):
    return keras.ops.take(images, [1, 0, 2], axis=-1)


def test_a_backbone_s_preprocessor_runs_before_the_classifier():
    # Red and green swapped: class 0 (red) sees the green patch, and the
    # maps, on the raw images, point there.
    images, red, green = two_patch_images(count=2)
    backbone = kp.Backbone(two_patch_classifier(), preprocessor=_swap_red_and_green)
    maps = GradCAM(backbone, "conv").explain(images, classes=[0, 1])
    np.testing.assert_allclose(maps[0], green[0].astype("float32"), atol=1e-6)
    np.testing.assert_allclose(maps[1], red[1].astype("float32"), atol=1e-6)
    # The same preprocessor given beside the bare classifier, and the
    # prediction as the default class: the swapped image of a red patch
    # alone is class 1, whose map is that patch.
    images[:, :, :, 1] = 0.0
    maps = GradCAM(backbone, "conv").explain(images)
    np.testing.assert_allclose(maps[0], red[0].astype("float32"), atol=1e-6)
    given = GradCAM(two_patch_classifier(), "conv", preprocessor=_swap_red_and_green)
    np.testing.assert_allclose(given.explain(images), maps, atol=1e-6)


def test_argument_errors():
    classifier = tiny_classifier()
    with pytest.raises(ValueError, match="layer_name"):
        GradCAM(classifier, "missing")
    with pytest.raises(ValueError, match="spatial"):
        GradCAM(classifier, classifier.layers[-1].name)
    with pytest.raises(ValueError, match="Keras model"):
        GradCAM(lambda x: x, "stage2")
    with pytest.raises(ValueError, match="classes"):
        GradCAM(classifier, "stage2").explain(random_images(2), classes=[0, 9])
