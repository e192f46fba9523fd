"""Classifiers with hand-set weights, so that metric values can be derived by hand."""

import keras
import numpy as np

SIZE = 8
# The object: the top-left 4x4 block of an 8x8 image.
OBJECT = np.zeros((SIZE, SIZE), bool)
OBJECT[:4, :4] = True
OBJECT_GAIN = 4.0  # logit 0 gains 4 x (mean red on the object)
BACKGROUND_GAIN = 2.0  # and loses 2 x (mean red on the background)
CLASS_1_LOGIT = 1.0


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def object_classifier():
    """Two classes on 8x8 images; red on the object is evidence for class 0.

    logit0 = 4 * mean(red on object) - 2 * mean(red on background), with red
    in [0, 1]; logit1 = 1. So p(class 0) = sigmoid(logit0 - 1).
    """
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    dense = keras.layers.Dense(2)
    logits = dense(x)
    kernel = np.zeros((SIZE, SIZE, 3, 2), "float32")
    kernel[..., 0, 0] = np.where(
        OBJECT, OBJECT_GAIN / OBJECT.sum(), -BACKGROUND_GAIN / (~OBJECT).sum()
    )
    dense.set_weights(
        [kernel.reshape(-1, 2), np.array([0.0, CLASS_1_LOGIT], "float32")]
    )
    return keras.Model(inputs, logits)


def object_images(count=2, background=255.0):
    """Red objects (255) on a red background of value `background`."""
    images = np.zeros((count, SIZE, SIZE, 3), "float32")
    images[..., 0] = np.where(OBJECT, 255.0, background)
    return images


def object_maps(values, count=2):
    """`count` copies of one 8x8 map (`OBJECT`, `~OBJECT`, a constant, ...)."""
    return np.broadcast_to(np.asarray(values, "float32"), (count, SIZE, SIZE)).copy()


def two_patch_classifier(size=16, gain=8.0):
    """logit c = gain x mean(ReLU(channel c)): class 0 is red, class 1 green.

    Its layer `"conv"` (a 1x1 convolution) copies the red and green channels.
    """
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="conv")
    x = conv(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, name="logits")
    logits = dense(x)
    kernel = np.zeros((1, 1, 3, 2), "float32")
    kernel[0, 0, 0, 0] = kernel[0, 0, 1, 1] = 1.0
    conv.set_weights([kernel, np.zeros(2, "float32")])
    dense.set_weights([gain * np.eye(2, dtype="float32"), np.zeros(2, "float32")])
    return keras.Model(inputs, logits)


def two_patch_images(count=2, size=16, patch=5):
    """A red patch top-left and a green patch bottom-right, black elsewhere."""
    images = np.zeros((count, size, size, 3), "float32")
    images[:, :patch, :patch, 0] = 255.0
    images[:, -patch:, -patch:, 1] = 255.0
    red = np.zeros((count, size, size), bool)
    red[:, :patch, :patch] = True
    green = np.zeros((count, size, size), bool)
    green[:, -patch:, -patch:] = True
    return images, red, green
