"""What the tests share: tiny models (random weights, 16x16 images, a few
classes) and images.

`tests.helpers.test_case` holds the checks every public layer, model, loss
and optimiser goes through, `tests.helpers.known_classifiers` classifiers
whose evidence is known (for the metrics); tiny keras-hub presets come from
the package (`keras_ptame.demo.save_tiny_resnet`, `save_tiny_vit`).
"""

import keras
import numpy as np

import keras_ptame as kp

IMAGE_SIZE = 16
NUM_CLASSES = 4


def tiny_classifier(
    num_classes=NUM_CLASSES, size=IMAGE_SIZE, seed=0, name="classifier", channels=3
):
    """A small CNN on raw pixels in [0, 255] returning logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stage1")(x)
    x = keras.layers.Conv2D(
        16, 3, strides=2, padding="same", activation="relu", name="stage2"
    )(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name=name)


def tiny_feature_model(size=IMAGE_SIZE, seed=1, name="auxiliary", channels=3):
    """A small auxiliary network with two feature maps: size/2 and size/4."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    f1 = keras.layers.Conv2D(
        6, 3, strides=2, padding="same", activation="relu", name="f1"
    )(x)
    f2 = keras.layers.Conv2D(
        10, 3, strides=2, padding="same", activation="relu", name="f2"
    )(f1)
    return keras.Model(inputs, [f1, f2], name=name)


def tiny_explainer(num_classes=NUM_CLASSES, size=IMAGE_SIZE, channels=3, **kwargs):
    """An uncompiled PTAME over `tiny_classifier` and `tiny_feature_model`
    (both on `channels`-channel images)."""
    return kp.PTAME(
        kp.Backbone(tiny_classifier(num_classes, size, channels=channels)),
        kp.AuxiliaryExtractor(tiny_feature_model(size, channels=channels)),
        **kwargs,
    )


def briefly_trained_explainer(seed=7):
    """`tiny_explainer` after one epoch on eight random images (for exports)."""
    keras.utils.set_random_seed(seed)
    explainer = tiny_explainer()
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-3, amsgrad=True))
    explainer.fit(random_images(8, seed=3), epochs=1, batch_size=4, verbose=0)
    return explainer


def random_images(count=8, size=IMAGE_SIZE, seed=0, dtype="uint8", channels=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, size, size, channels)).astype(dtype)


def weights_of(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def keras_hub_before(version):
    """Whether the installed keras-hub is older than `version`, a `(major, minor)`."""
    import keras_hub

    return tuple(int(part) for part in keras_hub.__version__.split(".")[:2]) < version
