"""Arrays given to `fit` and `predict`: under TensorFlow fed by an untuned
`tf.data` pipeline (`keras_ptame.models.tf_data`), with the batches, the
order and the validation split of Keras' own."""

import keras
import numpy as np
import pytest

from keras_ptame.models import tf_data
from tests.helpers import random_images, tiny_explainer, weights_of

ONLY_TF = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="the tf.data pipeline feeds arrays under TensorFlow only",
)


def _twins():
    """Two compiled explainers with the same weights."""
    first, second = tiny_explainer(), tiny_explainer()
    for explainer in (first, second):
        explainer.ensure_built((2, 16, 16, 3))
    second.set_weights(first.get_weights())
    for explainer in (first, second):
        explainer.compile(optimizer=keras.optimizers.SGD(0.1))
    return first, second


def _options(images):
    labels = np.arange(len(images)) % 3
    weights = np.linspace(0.5, 1.5, len(images)).astype("float32")
    return {
        "split": {"shuffle": False, "validation_split": 0.3},
        "labels and weights": {
            "y": labels,
            "sample_weight": weights,
            "shuffle": False,
            "validation_data": (images[:3], labels[:3]),
            "validation_batch_size": 2,
        },
    }


@pytest.mark.parametrize("case", ["split", "labels and weights"])
def test_fit_on_arrays_trains_as_keras_own_fit(case):
    # On every backend: the package's `fit` on arrays against Keras' `fit`
    # called directly (its own input pipeline), from the same weights.
    images = random_images(10)
    options = _options(images)[case]
    ours, keras_own = _twins()
    args = {"batch_size": 4, "epochs": 2, "verbose": 0, **options}
    history = ours.fit(images, removal_check=0, **args)
    expected = keras.Model.fit(keras_own, images, **args)
    for actual, wanted in zip(weights_of(ours.decoder), weights_of(keras_own.decoder)):
        np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-6)
    for name in ("loss", "val_loss"):
        np.testing.assert_allclose(
            history.history[name], expected.history[name], rtol=1e-5
        )


@ONLY_TF
def test_shuffled_batches_hold_every_row_once_an_epoch():
    keras.utils.set_random_seed(3)
    dataset = tf_data.arrays_dataset(np.arange(10), 4, shuffle=True)
    epochs = [[batch.numpy() for batch in dataset] for _ in range(2)]
    for batches in epochs:
        assert [len(batch) for batch in batches] == [4, 4, 2]
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))


@ONLY_TF
def test_fit_and_predict_hand_keras_an_untuned_dataset(monkeypatch):
    seen = []
    for name in ("fit", "predict"):
        original = getattr(keras.Model, name)

        def recording(self, x=None, *args, original=original, **kwargs):
            seen.append((x, kwargs.get("validation_data")))
            return original(self, x, *args, **kwargs)

        monkeypatch.setattr(keras.Model, name, recording)
    explainer = tiny_explainer()
    images = random_images(6)
    explainer.fit(images, validation_split=0.5, epochs=1, verbose=0, removal_check=0)
    explainer.explain(images)
    (fitted, validation), (predicted, _) = seen[0], seen[-1]
    for dataset in (fitted, validation, predicted):
        assert dataset.options().autotune.enabled is False
    assert sum(len(batch) for batch in fitted) == 3
    assert sum(len(batch) for batch in validation) == 3


@ONLY_TF
def test_options_keras_shards_or_weighs_are_left_to_keras():
    explainer = tiny_explainer()
    images = random_images(4)
    assert tf_data.fit_datasets(explainer, images, None, {}) is not None
    for options in ({"shuffle": "batch"}, {"class_weight": {0: 1.0}}):
        assert tf_data.fit_datasets(explainer, images, None, options) is None
    # Sample weights without labels cannot be one dataset's elements.
    weights = np.ones(4, "float32")
    unlabelled = {"sample_weight": weights}
    assert tf_data.fit_datasets(explainer, images, None, unlabelled) is None
    # A list is several inputs to Keras.
    assert tf_data.fit_datasets(explainer, list(images), None, {}) is None
