import keras
import numpy as np
import pytest

from keras_ptame.layers.backbone import Backbone
from keras_ptame.models.classifier_scores import (
    as_backbone,
    check_batch_size,
    class_scores,
    explained_classes,
    probabilities,
)
from tests.helpers.known_classifiers import two_patch_classifier, two_patch_images


def test_as_backbone_reuses_one_wrapper_and_leaves_trainable_alone():
    classifier = two_patch_classifier()
    backbone = as_backbone(classifier)
    assert isinstance(backbone, Backbone)
    assert as_backbone(classifier) is backbone
    assert classifier.trainable  # wrapping must not freeze the model
    assert as_backbone(backbone) is backbone
    rescale = keras.layers.Rescaling(1.0)
    assert as_backbone(classifier, rescale) is not backbone
    with pytest.raises(ValueError, match="preprocessor"):
        as_backbone(backbone, rescale)


def test_probabilities_and_class_scores_do_not_depend_on_batch_size():
    images, _, _ = two_patch_images(count=5)
    images[1::2, :, :, 0] = 0.0  # odd images hold only the green patch
    backbone = as_backbone(two_patch_classifier())
    one = probabilities(backbone, images, batch_size=1)
    many = probabilities(backbone, images, batch_size=4)
    assert one.shape == (5, 2) and one.dtype == np.float32
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one.sum(axis=-1), 1.0, rtol=1e-5)
    scores, predictions = class_scores(backbone, images, [0] * 5)
    np.testing.assert_array_equal(predictions, [0, 1, 0, 1, 0])
    np.testing.assert_allclose(scores, one[:, 0], rtol=1e-6)


def test_a_classifier_that_cannot_be_traced_is_called_eagerly():
    model = two_patch_classifier()

    def classifier(images):
        return model(keras.ops.convert_to_numpy(images))  # not symbolic

    images, _, _ = two_patch_images(count=2)
    expected = probabilities(as_backbone(model), images)
    np.testing.assert_allclose(
        probabilities(as_backbone(classifier), images), expected, rtol=1e-5
    )


def test_explained_classes():
    images, _, _ = two_patch_images(count=2)
    images[1, :, :, 0] = 0.0
    backbone = as_backbone(two_patch_classifier())
    predicted = explained_classes(backbone, images)
    np.testing.assert_array_equal(predicted, [0, 1])
    assert predicted.dtype == np.int32
    np.testing.assert_array_equal(explained_classes(backbone, images, 1), [1, 1])
    with pytest.raises(ValueError, match="classes"):
        explained_classes(backbone, images, [0, 2])


def test_check_batch_size():
    assert check_batch_size(np.int64(3)) == 3
    for bad in (0, -1, 2.0, "4"):
        with pytest.raises(ValueError, match="batch_size"):
            check_batch_size(bad)


# Issue 24: the metrics rescore a multi-label classifier by its sigmoids (the
# scores of `Backbone.probabilities`), traced or called eagerly.
def test_multilabel_backbones_are_scored_by_their_sigmoids():
    images, _, _ = two_patch_images(count=3)
    model = two_patch_classifier()
    logits = keras.ops.convert_to_numpy(model(images))
    expected = 1 / (1 + np.exp(-logits))
    traced = Backbone(model, output_type="multilabel_logits")
    np.testing.assert_allclose(probabilities(traced, images), expected, rtol=1e-5)

    def eager(batch):
        return model(keras.ops.convert_to_numpy(batch))  # not symbolic

    eager_backbone = Backbone(eager, output_type="multilabel_logits")
    np.testing.assert_allclose(
        probabilities(eager_backbone, images), expected, rtol=1e-5
    )
    scores, _ = class_scores(traced, images, [1, 0, 1])
    np.testing.assert_allclose(scores, expected[np.arange(3), [1, 0, 1]], rtol=1e-5)
