"""`predict`'s input under TensorFlow, for an explainer: tf.data untuned.

Keras' TensorFlow `predict` turns arrays into a `tf.data` pipeline that
prefetches with `AUTOTUNE`. On a 2-core CPU, tf.data's autotuning then takes
a core from the convolutions in spells: whole calls ran at half speed (the
same batches, the same compiled step: 108 against 55 ms an image for a
ResNet-50 in 13 of 20 calls, 108 against 84 for its explanation in 10 of
20), and never with the autotuning off (20 calls of each; issue 27, see
the README's "Speed"). The explainer's `predict` hands Keras the same
batches as a dataset with the autotuning off; its outputs are unchanged.
"""

import keras
import numpy as np


def untuned_dataset(model, x, batch_size):
    """`x` as batches of `batch_size` in a `tf.data.Dataset` without autotuning.

    Returns `None` (leave `x` to Keras) on other backends, for anything but
    an array or a dict of arrays, and under a `tf.distribute` strategy of
    several replicas (whose sharding Keras sets for arrays).
    """
    if keras.config.backend() != "tensorflow":
        return None
    parts = list(x.values()) if isinstance(x, dict) else [x]
    if not parts or not all(isinstance(part, np.ndarray) for part in parts):
        return None
    if model.distribute_strategy.num_replicas_in_sync != 1:
        return None
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(batch_size or 32)
    return dataset.with_options(options)
