"""Gradients of a class score, per backend: the one place baselines need them.

Keras 3 has no backend-neutral gradient call, so each backend's own
machinery sits behind `keras.config.backend()` with a local import.
"""

import contextlib

import keras
import numpy as np
from keras import ops


def _class_score(logits, classes):
    # Summing the per-image scores gives each image's own gradient: images
    # of a batch do not interact in inference mode.
    return ops.sum(ops.take_along_axis(logits, classes[:, None], axis=-1))


def input_gradients(backbone, images, classes):
    """d logit[class] / d pixels for a batch, as numpy `(B, H, W, 3)`.

    Args:
        backbone: a `Backbone` (raw pixels in, logits out).
        images: float32 numpy `(B, H, W, 3)`.
        classes: int numpy `(B,)`.
    """
    backend = _check_backend()
    classes_t = ops.convert_to_tensor(np.asarray(classes, dtype="int32"))
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(images, dtype="float32")
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = _class_score(backbone(x), classes_t)
        return tape.gradient(score, x).numpy()
    if backend == "jax":
        import jax

        def score(x):
            return _class_score(backbone(x), classes_t)

        return np.asarray(jax.grad(score)(jax.numpy.asarray(images, dtype="float32")))
    import torch

    x = ops.convert_to_tensor(images, dtype="float32").detach().requires_grad_(True)
    with torch.enable_grad():
        score = _class_score(backbone(x), classes_t)
        (gradient,) = torch.autograd.grad(score, x)
    return gradient.detach().cpu().numpy()


def layer_gradients(model, layer, images, classes, preprocessor=None):
    """A layer's activations and d logit[class] / d activations.

    Args:
        model: a functional or sequential Keras model (preprocessed images in,
            logits out) containing `layer`.
        layer: the Keras layer whose output is differentiated against.
        images: float32 numpy `(B, H, W, 3)` raw pixels.
        classes: int numpy `(B,)`.
        preprocessor: optional callable applied to the raw pixels first.

    Returns:
        `(activations, gradients)`, numpy arrays of the layer output's shape.
    """
    gradients = {
        "tensorflow": _layer_gradients_tensorflow,
        "torch": _layer_gradients_torch,
        "jax": _layer_gradients_jax,
    }[_check_backend()]
    classes = ops.convert_to_tensor(np.asarray(classes, dtype="int32"))

    def prepare(x):
        return preprocessor(x) if preprocessor is not None else x

    return gradients(model, layer, images, classes, prepare)


def _check_backend():
    backend = keras.config.backend()
    if backend not in ("tensorflow", "jax", "torch"):
        raise ValueError(
            "Gradients are implemented for the tensorflow, jax and torch backends. "
            f"Received: backend {backend!r}"
        )
    return backend


def _tapped(model, layer):
    # TensorFlow and torch differentiate with respect to any intermediate
    # tensor, so a two-output view of the model is enough.
    return keras.Model(model.inputs, [layer.output, model.outputs[0]])


def _layer_gradients_tensorflow(model, layer, images, classes, prepare):
    import tensorflow as tf

    tapped = _tapped(model, layer)
    x = tf.convert_to_tensor(images, dtype="float32")
    with tf.GradientTape() as tape:
        # Watching the input records the path even for frozen weights.
        tape.watch(x)
        activations, logits = tapped(prepare(x), training=False)
        score = _class_score(ops.cast(logits, "float32"), classes)
    gradients = tape.gradient(score, activations)
    return activations.numpy(), gradients.numpy()


def _layer_gradients_torch(model, layer, images, classes, prepare):
    import torch

    tapped = _tapped(model, layer)
    x = ops.convert_to_tensor(images, dtype="float32").detach().requires_grad_(True)
    with torch.enable_grad():
        activations, logits = tapped(prepare(x), training=False)
        score = _class_score(ops.cast(logits, "float32"), classes)
        (gradients,) = torch.autograd.grad(score, activations)
    return activations.detach().cpu().numpy(), gradients.detach().cpu().numpy()


def _layer_gradients_jax(model, layer, images, classes, prepare):
    import jax

    # JAX differentiates functions, not tensors: make the layer's output an
    # argument by adding a zero offset to it inside the model's call, and
    # differentiate with respect to the offset.
    x = jax.numpy.asarray(images, dtype="float32")

    def score(offset):
        with _offset_output(layer, offset) as seen:
            logits = model(prepare(x), training=False)
        return _class_score(ops.cast(logits, "float32"), classes), seen[0]

    shape = keras.Model(model.inputs, layer.output)(prepare(x), training=False).shape
    gradients, activations = jax.grad(score, has_aux=True)(jax.numpy.zeros(shape))
    return np.asarray(activations), np.asarray(gradients)


@contextlib.contextmanager
def _offset_output(layer, offset):
    """Within the block, `layer`'s output is shifted by `offset` and recorded."""
    seen = []
    original = layer.call

    def call(*args, **kwargs):
        output = original(*args, **kwargs) + offset
        seen.append(output)
        return output

    layer.call = call
    try:
        yield seen
    finally:
        # Restore the class's method even if the model call fails.
        del layer.call
        if layer.call != original:
            layer.call = original
