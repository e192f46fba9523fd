import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_ptame")
class ChannelAdapter(keras.layers.Layer):
    """Gives a network the channels it was trained on from images of another count.

    The explainer's images may have any number of channels (grayscale,
    RGB, multispectral) while a pretrained network reads a fixed count,
    usually RGB. This layer sits in front of that network's own
    preprocessing (the `adapter` argument of `AuxiliaryExtractor` and
    `Backbone`, or as their `preprocessor`) and hands it the channels it
    expects: a grayscale image repeated on three channels, or chosen
    channels of a multispectral image. Masking is unaffected: it happens
    on the raw images, on every channel, before any network runs.

    Args:
        channels: optional sequence of int. The input channels to pass on,
            in order: output channel `i` is input channel `channels[i]`
            (e.g. `(0, 1, 2)`: the first three bands; `(3, 2, 1)`: bands
            reordered). Defaults to `None`.
        repeat: optional int. Repeats a one-channel (grayscale) image this
            many times (`3`: grayscale as RGB). Defaults to `None`.
        **kwargs: Standard layer arguments.

    Exactly one of `channels` and `repeat` is given.

    Call arguments:
        images: `(B, H, W, C)` raw pixels. `C` is 1 with `repeat`, and more
            than every index of `channels`.

    Returns:
        `(B, H, W, repeat)` or `(B, H, W, len(channels))`.

    Examples:
    ```python
    import numpy as np
    import keras_ptame as kp

    gray = np.zeros((2, 32, 32, 1), "float32")
    kp.layers.ChannelAdapter(repeat=3)(gray).shape          # (2, 32, 32, 3)
    bands = np.zeros((2, 32, 32, 5), "float32")
    kp.layers.ChannelAdapter(channels=(0, 1, 2))(bands).shape   # (2, 32, 32, 3)
    ```
    """

    def __init__(self, channels=None, repeat=None, **kwargs):
        super().__init__(**kwargs)
        if (channels is None) == (repeat is None):
            raise ValueError(
                "Pass exactly one of `channels` and `repeat`. Received: "
                f"channels={channels!r}, repeat={repeat!r}"
            )
        if channels is not None:
            channels = _check_indices(channels)
        elif isinstance(repeat, bool) or not isinstance(repeat, (int, np.integer)):
            raise ValueError(
                f"`repeat` must be a positive integer. Received: repeat={repeat!r}"
            )
        elif repeat < 1:
            raise ValueError(
                f"`repeat` must be a positive integer. Received: repeat={repeat!r}"
            )
        self.channels = channels
        self.repeat = None if repeat is None else int(repeat)
        self.built = True

    @property
    def output_channels(self):
        """The number of channels this layer returns."""
        return self.repeat if self.repeat is not None else len(self.channels)

    def check_input_channels(self, count):
        """Raises a `ValueError` unless images of `count` channels can be adapted."""
        if count is None:
            return
        if self.repeat is not None and count != 1:
            raise ValueError(
                f"`ChannelAdapter(repeat={self.repeat})` repeats a one-channel "
                f"(grayscale) image. Received: images with {count} channels; "
                "choose channels with `ChannelAdapter(channels=(...))` instead."
            )
        if self.channels is not None and max(self.channels) >= count:
            raise ValueError(
                f"`ChannelAdapter(channels={self.channels})` reads channel "
                f"{max(self.channels)}, but the images have {count} channels "
                f"(0 to {count - 1}). Received: images with {count} channels"
            )

    def call(self, images):
        self.check_input_channels(images.shape[-1])
        if self.repeat is not None:
            return ops.repeat(images, self.repeat, axis=-1)
        if self.channels == list(range(images.shape[-1])):
            return images
        return ops.take(images, ops.convert_to_tensor(self.channels), axis=-1)

    def compute_output_shape(self, input_shape):
        self.check_input_channels(input_shape[-1])
        return (*tuple(input_shape)[:-1], self.output_channels)

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels, "repeat": self.repeat})
        return config


def _check_indices(channels):
    if isinstance(channels, str):
        channels = [channels]
    try:
        indices = [int(c) for c in channels]
        exact = all(
            not isinstance(c, bool) and int(c) == c and c >= 0 for c in channels
        )
    except (TypeError, ValueError):
        indices, exact = [], False
    if not indices or not exact:
        raise ValueError(
            "`channels` must be a non-empty sequence of channel indices (int >= 0). "
            f"Received: channels={channels!r}"
        )
    return indices
