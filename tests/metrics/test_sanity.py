import numpy as np
import pytest

from keras_ptame.baselines import CentreMaps, GradCAM
from keras_ptame.metrics import model_randomization, randomize_weights, rank_correlation
from tests.helpers import random_images, tiny_classifier


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


def test_grad_cam_depends_on_the_weights():
    images = random_images(4)
    check = model_randomization(
        lambda model: GradCAM(model, "stage2"), tiny_classifier(), images, seed=5
    )
    assert check["rank_correlation"].shape == (4,)
    assert check["mean"] < 0.9
