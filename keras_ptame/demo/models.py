"""The demo's two small networks: the classifier explained and the auxiliary CNN."""

import keras

# The decoder reads the 1/2, 1/4 and 1/8 stages: its maps are 32x32 for
# 64x64 images (2 pixels a cell). With only the 1/4 and 1/8 stages (16x16
# maps) the thin bars' maps missed them: in `benchmarks/honest_maps.py`, on
# the classifier without a "none" class, the bars' pointing game rose from
# 0.77 to 0.98 with the 1/2 stage, for 30% more training time on CPU.
AUXILIARY_LAYERS = ["stage1", "stage2", "stage3"]


def build_classifier(image_size=64, num_classes=6, name="classifier"):
    """The explained classifier: a small CNN, raw pixels in, logits out.

    Args:
        image_size: int. Height and width of the images. Defaults to `64`.
        num_classes: int. Number of classes. Defaults to `6`.
        name: str. Model name. Defaults to `"classifier"`.

    Returns:
        An uncompiled `keras.Model` from `(image_size, image_size, 3)` pixels
        in [0, 255] to `num_classes` logits.

    Examples:
    ```python
    from keras_ptame.demo import build_classifier

    classifier = build_classifier(64, 6)
    classifier.output_shape   # (None, 6)
    ```
    """
    return _strided_cnn(
        image_size, num_classes, (16, 32, 64), 1 / 255.0, 0.0, "block", name
    )


def build_auxiliary(image_size=64, num_classes=6, name="auxiliary"):
    """The auxiliary network: a different small CNN, three strided stages.

    Its stages (1/2, 1/4, 1/8 of the input size) play ResNet-18's in the
    paper (the demo taps `AUXILIARY_LAYERS`); a head lets it be trained. It
    normalises its input to [-1, 1] where the classifier uses [0, 1], as
    networks in the wild differ.

    Args:
        image_size: int. Defaults to `64`.
        num_classes: int. Classes of the training head. Defaults to `6`.
        name: str. Defaults to `"auxiliary"`.

    Returns:
        An uncompiled `keras.Model` from pixels in [0, 255] to logits, with
        layers named `"stage1"`, `"stage2"` and `"stage3"`.
    """
    return _strided_cnn(
        image_size, num_classes, (24, 48, 64), 1 / 127.5, -1.0, "stage", name
    )


def _strided_cnn(image_size, num_classes, widths, scale, offset, stage_name, name):
    """Pixels -> logits through stages `<stage_name>1..3` and a max-pooled head."""
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = keras.layers.Rescaling(scale, offset=offset, name="rescale")(inputs)
    # Strided convolutions rather than pooling: a quarter of the work at each
    # stage, which is what keeps the demo within minutes on two CPU cores.
    for index, filters in enumerate(widths):
        x = keras.layers.Conv2D(filters, 3, 2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(name=f"{stage_name}{index + 1}")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    # Max pooling over space: the object may be anywhere, and a global max
    # keeps its evidence whatever the clutter around it.
    x = keras.layers.GlobalMaxPooling2D()(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name)
