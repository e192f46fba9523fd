import numpy as np
import pytest

from keras_ptame.baselines import RISE
from keras_ptame.metrics import mass_inside, pointing_game
from tests.helpers.known_classifiers import two_patch_classifier, two_patch_images


def test_each_class_map_points_at_its_own_patch():
    images, red, green = two_patch_images(count=2)
    # A steep classifier, so that a few hundred masks resolve its evidence.
    classifier = two_patch_classifier(gain=40.0)
    explainer = RISE(classifier, num_masks=300, grid_size=4, batch_size=100)
    maps = explainer.explain(images, classes=[0, 1])
    assert maps.shape == (2, 16, 16) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    truth = np.stack([red[0], green[1]])
    np.testing.assert_array_equal(pointing_game(maps, truth), [1.0, 1.0])
    # Clearly more mass on the patch than its 25/256 share of the image.
    assert (mass_inside(maps, truth) > 0.15).all()


def test_maps_do_not_depend_on_batch_size():
    images, _, _ = two_patch_images(count=2)
    classifier = two_patch_classifier()
    small = RISE(classifier, num_masks=60, batch_size=7, seed=3).explain(images)
    large = RISE(classifier, num_masks=60, batch_size=60, seed=3).explain(images)
    np.testing.assert_allclose(small, large, atol=1e-5)


def test_masks_are_bounded_and_shifted():
    explainer = RISE(two_patch_classifier(), num_masks=10, grid_size=4, batch_size=4)
    masks = explainer.masks(0, 4, (16, 16))
    assert masks.shape == (4, 16, 16)
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    # Mask 1 is the same drawn alone: the same random grid, upsampled by a
    # resize compiled for another batch size, which XLA need not round alike
    # (one unit in the last place, without its LLVM optimisations).
    np.testing.assert_allclose(
        masks[1], explainer.masks(1, 2, (16, 16))[0], rtol=0, atol=1e-6
    )


def test_argument_errors():
    classifier = two_patch_classifier()
    with pytest.raises(ValueError, match="num_masks"):
        RISE(classifier, num_masks=0)
    with pytest.raises(ValueError, match="keep_probability"):
        RISE(classifier, keep_probability=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        RISE(classifier, batch_size=0)
