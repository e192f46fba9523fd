import keras
from keras import ops

from keras_ptame.layers.channel_adapter import ChannelAdapter


class FrozenNetwork(keras.layers.Layer):
    """Base of the networks P-TAME calls but never trains.

    `Backbone` (the classifier explained) and `AuxiliaryExtractor` (the
    feature network) share everything but what they return: a network run on
    raw pixels after its own preprocessing, always with `training=False`,
    whose weights never change and which reports no metrics.

    Subclasses define the property `network` (the Keras model or callable to
    run), call `self.freeze(...)` on the Keras objects they hold, and
    list in `nested_objects` the `__init__` arguments that are Keras objects
    (serialised in `get_config`).

    Args:
        preprocessor: optional Keras layer or callable applied to the raw
            pixels (float, [0, 255]) before the network, e.g. a keras-hub
            `ImageConverter` or `keras.layers.Rescaling(1 / 255)`. Masking
            happens before it, in pixel space. Defaults to `None` (the
            network takes raw pixels).
        adapter: optional `keras_ptame.layers.ChannelAdapter` (or Keras
            layer) applied to the raw pixels before `preprocessor`, for a
            network that reads another channel count than the images have:
            `ChannelAdapter(repeat=3)` gives an RGB network grayscale
            images, `ChannelAdapter(channels=(0, 1, 2))` three bands of a
            multispectral image. Saved with the explainer. Defaults to
            `None` (the network reads the images' own channels).
        **kwargs: Standard layer arguments.
    """

    nested_objects = ("preprocessor",)

    def __init__(self, preprocessor=None, adapter=None, **kwargs):
        super().__init__(**kwargs)
        for name, part in (("preprocessor", preprocessor), ("adapter", adapter)):
            if part is not None and not callable(part):
                raise ValueError(
                    f"`{name}` must be a Keras layer or callable. "
                    f"Received: {name}={part!r}"
                )
        self.preprocessor = preprocessor
        self.adapter = adapter

    def freeze(self, *parts):
        """Marks `parts` (Keras layers; others are skipped) and this layer frozen."""
        for part in (*parts, self.adapter, self.preprocessor):
            if isinstance(part, keras.layers.Layer):
                part.trainable = False
        self.trainable = False

    @property
    def network(self):
        raise NotImplementedError

    @property
    def fixed_input_size(self):
        """`(height, width)`: the only size the network takes, or `None` (any).

        A network built for one size takes any size when its preprocessor
        resizes to that size (a keras-hub `ImageConverter` or
        `preprocessors.ImagePreprocessor` with an `image_size`).
        """
        shape = None
        if hasattr(self.network, "inputs"):
            shape = getattr(self.network, "input_shape", None)
        if not isinstance(shape, tuple) or len(shape) != 4 or None in shape[1:3]:
            return None
        size = tuple(shape[1:3])
        resized = getattr(self.preprocessor, "image_size", None)
        if resized is not None and tuple(resized) == size:
            return None
        return size

    @property
    def metrics(self):
        # A frozen network reports nothing: a compiled model's trackers would
        # otherwise join the explainer's logs and overwrite its `loss`.
        return []

    @property
    def input_channels(self):
        """The channel count of the images this network takes, or `None`.

        Known before a call where the network declares its input (a
        functional Keras model) and no adapter changes the count, or where
        a `ChannelAdapter` repeats a grayscale channel (as `adapter`, or as
        the `preprocessor` itself).
        """
        for part in (self.adapter, self.preprocessor):
            if isinstance(part, ChannelAdapter):
                return 1 if part.repeat else None
        return None if self.adapter is not None else self.network_channels

    @property
    def network_channels(self):
        """The channel count the network declares for its input, or `None`."""
        shape = None
        if hasattr(self.network, "inputs"):
            shape = getattr(self.network, "input_shape", None)
        if not isinstance(shape, tuple) or len(shape) != 4:
            return None
        return shape[-1]

    def check_channels(self, input_shape):
        """Raises a `ValueError` naming both counts when images of
        `input_shape` reach the network with other channels than it reads.

        Returns the shape the network receives (channels adapted).
        """
        shape = tuple(input_shape)
        for part in (self.adapter, self.preprocessor):
            shape = _shape_through(part, shape)
        expected, received = self.network_channels, shape[-1]
        if None in (expected, received) or expected == received:
            return shape
        name = getattr(self.network, "name", type(self.network).__name__)
        after = "" if self.adapter is None else " after its adapter"
        plural = "" if received == 1 else "s"
        raise ValueError(
            f"The network `{name}` of this {type(self).__name__} reads "
            f"{expected}-channel images, but receives {received} channel{plural}"
            f"{after}. Received: images of shape {tuple(input_shape)}. Give it an "
            "adapter: `adapter=kp.layers.ChannelAdapter(repeat=3)` to repeat "
            "grayscale on RGB, `adapter=kp.layers.ChannelAdapter(channels=(0, 1, "
            "2))` to pass it chosen channels; or use a network built for "
            f"{received}-channel images."
        )

    def build(self, input_shape):
        # Each part builds on what reaches it: the channels adapted (a size
        # change by the preprocessor is left: the network builds on any).
        self.check_channels(input_shape)
        shape = tuple(input_shape)
        for part in (self.adapter, self.preprocessor, self.network):
            if isinstance(part, keras.layers.Layer) and not part.built:
                part.build(shape)
            if part is not self.network:
                shape = (*shape[:-1], _shape_through(part, shape)[-1])
        # Freeze again: variables created while building (e.g. when a saved
        # explainer is loaded) start out trainable.
        self.trainable = False
        self.built = True

    def run_network(self, images):
        """Preprocesses raw `images` and runs the network in inference mode."""
        x = ops.cast(images, self.compute_dtype)
        if self.adapter is not None:
            x = self.adapter(x)
        if self.preprocessor is not None:
            x = self.preprocessor(x)
        if isinstance(self.network, keras.layers.Layer):
            return self.network(x, training=False)
        return self.network(x)

    def get_config(self):
        config = super().get_config()
        for key in self.nested_objects:
            config[key] = keras.saving.serialize_keras_object(getattr(self, key))
        if self.adapter is not None:
            # Only when set: the configs of networks without one are as before.
            config["adapter"] = keras.saving.serialize_keras_object(self.adapter)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in (*cls.nested_objects, "adapter"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _shape_through(part, shape):
    """The shape `part` (a layer, a callable or `None`) returns for `shape`.

    A `ChannelAdapter` refuses channels it cannot adapt, with its own
    message; other layers are asked symbolically, and a part that cannot
    say (a plain callable, or a failed symbolic call) keeps the shape.
    """
    if isinstance(part, ChannelAdapter):
        return part.compute_output_shape(shape)
    if not isinstance(part, keras.layers.Layer):
        return shape
    try:
        return tuple(part.compute_output_shape(shape))
    except Exception:
        return shape
