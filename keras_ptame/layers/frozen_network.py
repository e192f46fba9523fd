import keras
from keras import ops


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
        **kwargs: Standard layer arguments.
    """

    nested_objects = ("preprocessor",)

    def __init__(self, preprocessor=None, **kwargs):
        super().__init__(**kwargs)
        if preprocessor is not None and not callable(preprocessor):
            raise ValueError(
                "`preprocessor` must be a Keras layer or callable. "
                f"Received: preprocessor={preprocessor!r}"
            )
        self.preprocessor = preprocessor

    def freeze(self, *parts):
        """Marks `parts` (Keras layers; others are skipped) and this layer frozen."""
        for part in (*parts, self.preprocessor):
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

    def build(self, input_shape):
        for part in (self.preprocessor, self.network):
            if isinstance(part, keras.layers.Layer) and not part.built:
                part.build(input_shape)
        # Freeze again: variables created while building (e.g. when a saved
        # explainer is loaded) start out trainable.
        self.trainable = False
        self.built = True

    def run_network(self, images):
        """Preprocesses raw `images` and runs the network in inference mode."""
        x = ops.cast(images, self.compute_dtype)
        if self.preprocessor is not None:
            x = self.preprocessor(x)
        if isinstance(self.network, keras.layers.Layer):
            return self.network(x, training=False)
        return self.network(x)

    def get_config(self):
        config = super().get_config()
        for key in self.nested_objects:
            config[key] = keras.saving.serialize_keras_object(getattr(self, key))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in cls.nested_objects:
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
