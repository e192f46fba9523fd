import numpy as np
import pytest

from keras_ptame.baselines.classifier_explainer import ClassifierExplainer
from tests.helpers.known_classifiers import two_patch_classifier, two_patch_images


class ChannelOfClass(ClassifierExplainer):
    """The map of class c is channel c of the image: red for 0, green for 1."""

    def __init__(self, batch_size):
        super().__init__(two_patch_classifier(), batch_size=batch_size)
        self.seen = []

    def saliency(self, images, classes):
        self.seen.append(classes.copy())
        return images[np.arange(len(images)), :, :, classes] / 2.0


def test_explains_the_predicted_class_by_default_and_normalises():
    images, red, green = two_patch_images(count=2)
    images[1, :, :, 0] = 0.0  # image 1 holds only the green patch: class 1
    maps = ChannelOfClass(batch_size=1).explain(images)
    assert maps.shape == (2, 16, 16) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps[0], red[0].astype("float32"))
    np.testing.assert_array_equal(maps[1], green[1].astype("float32"))


def test_given_classes_are_passed_through_and_batches_cover_every_image():
    images, red, green = two_patch_images(count=5)
    explainer = ChannelOfClass(batch_size=2)
    maps = explainer.explain(images, classes=[1, 1, 1, 1, 1])
    np.testing.assert_array_equal(maps, green.astype("float32"))
    pairs = list(explainer.batches(images, np.arange(5)))
    assert [len(batch) for batch, _ in pairs] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([c for _, c in pairs]), np.arange(5))


def test_bad_classes_are_refused_before_any_saliency_is_computed():
    images, _, _ = two_patch_images(count=2)
    explainer = ChannelOfClass(batch_size=2)
    with pytest.raises(ValueError, match="classes"):
        explainer.explain(images, classes=[0, 2])
    assert explainer.seen == []


def test_batch_size_is_checked():
    with pytest.raises(ValueError, match="batch_size"):
        ChannelOfClass(batch_size=0)
