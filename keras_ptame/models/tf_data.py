"""Arrays fed through tf.data without autotuning, under TensorFlow.

Keras' TensorFlow `fit` and `predict` turn arrays into a `tf.data` pipeline
that maps and prefetches with `AUTOTUNE`. On a 2-core CPU, tf.data's
autotuning then takes a core from the convolutions in spells: whole calls
ran at half speed (the same batches, the same compiled step: 108 against
55 ms an image for a ResNet-50's `predict` in 13 of 20 calls, 108 against 84
for its explanation in 10 of 20), and never with the autotuning off (20
calls of each). A training step fed by Keras' pipeline took 429 ms an image,
one fed untuned 273 (issue 27, see the README's "Speed").

`UntunedArrays`, a mixin of `PTAME`, hands Keras the same batches as an
untuned dataset: in the same order (shuffled each epoch as Keras shuffles
arrays), with `validation_split` taken as Keras takes it (the last share).
"""

import keras
import numpy as np

# `fit` options whose array handling is left to Keras (its own pipeline).
_LEFT_TO_KERAS = ("class_weight", "steps_per_epoch")


class UntunedArrays:
    """`fit` and `predict` on arrays: batches from an untuned `tf.data`."""

    def fit(self, x=None, y=None, **kwargs):
        converted = fit_datasets(self, x, y, kwargs)
        if converted is not None:
            x, y, kwargs = converted
        return super().fit(x, y, **kwargs)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        if _feeds(self, x):
            x, batch_size = arrays_dataset(x, batch_size or 32), None
        return super().predict(x, batch_size, verbose, steps, callbacks)


def fit_datasets(model, x, y, kwargs):
    """`fit`'s arguments with its arrays as untuned datasets.

    Returns `(x, y, kwargs)` for `fit`: `x` the training dataset, `y` `None`,
    `validation_data` a dataset too if it was arrays; or `None` (Keras reads
    the arrays) unless `x`, `y` and the sample
    weights are arrays (`y` and the weights may be `None`) under TensorFlow
    on one replica, shuffled either not at all or fully, without class
    weights or a step count.
    """
    kwargs = dict(kwargs)
    # Shuffled here: Keras would warn that a dataset is not shuffled by it.
    shuffle, kwargs["shuffle"] = kwargs.get("shuffle", True), False
    data = _element(x, y, kwargs.pop("sample_weight", None))
    if (
        shuffle == "batch"
        or any(kwargs.get(name) is not None for name in _LEFT_TO_KERAS)
        or not _feeds(model, data)
    ):
        return None
    split = kwargs.pop("validation_split", 0.0)
    batch_size = kwargs.pop("batch_size", None) or 32
    validation = kwargs.get("validation_data")
    if split and validation is None:
        data, validation = _split(data, split)
    if isinstance(validation, tuple) and 1 <= len(validation) <= 3:
        validation = _element(*validation)
    if _feeds(model, validation):
        size = kwargs.pop("validation_batch_size", None) or batch_size
        kwargs["validation_data"] = arrays_dataset(validation, size)
    return arrays_dataset(data, batch_size, shuffle=bool(shuffle)), None, kwargs


def arrays_dataset(arrays, batch_size, shuffle=False):
    """`arrays` (an array or a tuple or dict of them) batched, untuned.

    The batches are gathered by index from the whole arrays (one copy, not a
    shuffle buffer); with `shuffle`, in a new order each epoch, drawn from
    TensorFlow's random seed (`keras.utils.set_random_seed` sets it).
    """
    import tensorflow as tf

    tensors = keras.tree.map_structure(tf.convert_to_tensor, arrays)
    count = len(keras.tree.flatten(arrays)[0])
    indices = tf.data.Dataset.range(count)
    if shuffle:
        indices = indices.shuffle(count, reshuffle_each_iteration=True)
    batches = tf.data.Dataset.zip(
        indices.batch(batch_size), tf.data.Dataset.from_tensors(tensors).repeat()
    )
    dataset = batches.map(
        lambda rows, data: keras.tree.map_structure(
            lambda tensor: tf.gather(tensor, rows), data
        )
    )
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def _feeds(model, data):
    """Whether `data` (an array, or a tuple or dict of them) is fed here."""
    if keras.config.backend() != "tensorflow" or not _arrays(data):
        return False
    # Over several replicas, Keras shards arrays itself.
    return model.distribute_strategy.num_replicas_in_sync == 1


def _arrays(data):
    """Whether `data` is an array, or a tuple or dict of arrays (or of those)."""
    if isinstance(data, np.ndarray):
        return True
    if isinstance(data, dict):
        data = tuple(data.values())
    return isinstance(data, tuple) and bool(data) and all(map(_arrays, data))


def _element(x, y=None, weights=None):
    """What each batch holds: `x` alone, or `(x, y[, weights])`; `None`
    where it cannot be a dataset's (weights without labels)."""
    if weights is None:
        return x if y is None else (x, y)
    return None if y is None else (x, y, weights)


def _split(data, share):
    """The first and the last `share` of `data`, as Keras' `validation_split`."""
    count = len(keras.tree.flatten(data)[0])
    at = int(np.floor(count * (1.0 - share)))
    return (
        keras.tree.map_structure(lambda array: array[:at], data),
        keras.tree.map_structure(lambda array: array[at:], data),
    )
