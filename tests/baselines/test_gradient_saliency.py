import numpy as np

from keras_ptame.baselines import GradientSaliency
from tests.helpers.known_classifiers import (
    OBJECT,
    object_classifier,
    object_images,
    two_patch_classifier,
    two_patch_images,
)


def test_linear_classifier_map_is_its_weight_magnitude():
    # |d logit0 / d red| is 4/16 on the object and 2/48 on the background,
    # so the normalised map is the object's indicator.
    maps = GradientSaliency(object_classifier()).explain(object_images(3))
    assert maps.shape == (3, 8, 8) and maps.dtype == np.float32
    np.testing.assert_allclose(maps, np.broadcast_to(OBJECT, (3, 8, 8)), atol=1e-6)


def test_each_class_map_points_at_its_own_patch():
    images, red, green = two_patch_images(count=2)
    explainer = GradientSaliency(two_patch_classifier(), batch_size=1)
    maps = explainer.explain(images, classes=[0, 1])
    np.testing.assert_allclose(maps[0], red[0].astype("float32"), atol=1e-6)
    np.testing.assert_allclose(maps[1], green[1].astype("float32"), atol=1e-6)
