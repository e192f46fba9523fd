"""Scoring raw images with a classifier, batched, on the host.

Shared by the removal check, the metrics (which rescore perturbed images)
and the baselines (which pick the class to explain and query the
classifier), all of which sit on or above `models/`. The classifier
runs through `keras.ops` on the active backend; everything it returns comes
back to the host as numpy.
"""

import keras
import numpy as np
from keras import ops

from keras_ptame.layers.backbone import Backbone
from keras_ptame.utils.validation import check_classes, check_positive_int


def as_backbone(classifier, preprocessor=None):
    """Wraps a classifier on raw pixels in a `Backbone` (kept if it is one).

    The same classifier always gets the same wrapper, so that the compiled
    scoring function is reused, and the classifier's `trainable` flag is left
    as it was (evaluating a model must not freeze it).

    Args:
        classifier: a `Backbone`, or a Keras model or callable returning
            logits.
        preprocessor: optional Keras layer or callable applied to the raw
            pixels first; not allowed with a `Backbone`, which has its own.
            Defaults to `None`.

    Returns:
        A `Backbone`.
    """
    if isinstance(classifier, Backbone):
        if preprocessor is not None:
            raise ValueError(
                "Pass `preprocessor` either to the `Backbone` or here, not both. "
                f"Received: preprocessor={preprocessor!r} with a Backbone"
            )
        return classifier
    wrappers = _cache(classifier, "_keras_ptame_backbones")
    key = id(preprocessor)
    if key not in wrappers or wrappers[key][0] is not preprocessor:
        states = [
            getattr(part, "trainable", None) for part in (classifier, preprocessor)
        ]
        backbone = Backbone(classifier, preprocessor=preprocessor)
        for part, state in zip((classifier, preprocessor), states, strict=True):
            if state is not None:
                part.trainable = state
        wrappers[key] = (preprocessor, backbone)
    return wrappers[key][1]


def check_batch_size(batch_size):
    """Checks that `batch_size` is a positive integer and returns it as `int`."""
    return check_positive_int("batch_size", batch_size)


def probabilities(backbone, images, batch_size=32):
    """Class scores `(N, C)` of raw images (`Backbone.probabilities`), `batch_size` at a time."""
    batch_size = check_batch_size(batch_size)
    predict = _predictor(backbone, np.shape(images)[1:])
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size], dtype="float32")
        outputs.append(predict(batch))
    return np.concatenate(outputs, axis=0).astype(np.float32)


def class_scores(backbone, images, classes, batch_size=32):
    """Softmax probability of `classes[i]` and the argmax, per image.

    Returns:
        A tuple `(scores, predictions)` of numpy arrays `(N,)`.
    """
    probs = probabilities(backbone, images, batch_size)
    classes = np.asarray(classes, dtype=np.int64)
    return probs[np.arange(len(probs)), classes], probs.argmax(axis=-1)


def explained_classes(backbone, images, classes=None, batch_size=32):
    """The classes to explain: `classes` checked, or the classifier's predictions.

    The classifier runs only when it must: to predict, or to learn how many
    classes it has.

    Returns:
        int32 numpy array `(N,)`.
    """
    num_classes = backbone.num_classes
    if classes is None or num_classes is None:
        probs = probabilities(backbone, images, batch_size)
        num_classes = probs.shape[-1]
        if classes is None:
            classes = probs.argmax(axis=-1)
    return check_classes(classes, len(images), num_classes)


def _predictor(backbone, shape):
    # One compiled scoring model per backbone and image shape: the metrics
    # call the classifier hundreds of times, and eager dispatch (JAX above
    # all) would dominate the cost of a small classifier.
    cache = _cache(backbone, "_keras_ptame_predictors")
    shape = tuple(shape)
    if shape not in cache:
        try:
            inputs = keras.Input(shape)
            model = keras.Model(inputs, backbone.probabilities(backbone(inputs)))
            cache[shape] = _on_batch(model)
        except Exception:
            # A classifier that cannot be traced symbolically (a plain
            # callable, say) is called eagerly instead.
            def eager(batch):
                scores = backbone(ops.convert_to_tensor(batch))
                return ops.convert_to_numpy(backbone.probabilities(scores))

            cache[shape] = eager
    predict = cache[shape]
    return lambda batch: np.asarray(predict(batch))


def _on_batch(model):
    """`model.predict_on_batch`, or `predict` where that would be wrong.

    Under a TensorFlow strategy with several replicas (a `fit` inside
    `MirroredStrategy.scope()`), Keras' `predict_on_batch` runs the whole
    batch on every replica and concatenates the copies; `predict` splits it.
    Decided at each call: the same classifier may be scored in and out of a
    strategy's scope.
    """
    if keras.config.backend() != "tensorflow":
        return model.predict_on_batch
    import tensorflow as tf

    def predict(batch):
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            return model.predict(batch, batch_size=len(batch), verbose=0)
        return model.predict_on_batch(batch)

    return predict


def _cache(owner, name):
    """A dict stored on `owner`, outside Keras' attribute tracking.

    Kept on the object itself (not in a global table) so that it lives and
    dies with it; `object.__setattr__` keeps Keras from tracking the cached
    models as sublayers.
    """
    cache = owner.__dict__.get(name) if hasattr(owner, "__dict__") else None
    if cache is None:
        cache = {}
        try:
            object.__setattr__(owner, name, cache)
        except (AttributeError, TypeError):
            pass  # an object without attributes: no caching, still correct
    return cache
