"""The preprocessing of pretrained networks, as Keras layers on the accelerator.

- `ImagePreprocessor`: a keras-hub `ImageConverter` (resize, scale, offset)
  computed with `keras.ops`, where the model runs;
- `ApplicationPreprocessor`: a `keras.applications` model's
  `preprocess_input`, as a layer that saves and loads with `safe_mode=True`.

`keras_ptame.layers.pretrained_networks` builds them for the networks it
loads; each network owns its preprocessing, so raw pixels go in.
"""

import importlib

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_ptame")
class ImagePreprocessor(keras.layers.Layer):
    """Resizes and rescales raw pixels, in Keras ops: an `ImageConverter` that
    runs where the model runs.

    keras-hub's `ImageConverter` runs under `tf.device("cpu")` whenever it is
    traced by TensorFlow (in `fit` and `predict` under the TensorFlow
    backend), so every step would resize and normalise its batches, and
    their gradients, on the CPU. This layer computes the same thing with
    `keras.ops`, on the device of the images, under every backend. Unlike
    the converter, it never crops to the aspect ratio: an image of another
    shape is resized whole, so that maps stay aligned with it.

    Args:
        image_size: optional `(height, width)`. The size the images are
            resized to; `None` keeps their size. Defaults to `None`.
        scale: optional float or one float per channel. Defaults to `None`
            (no scaling).
        offset: optional float or one float per channel, added after
            `scale`. Defaults to `None` (no offset).
        interpolation: str. The resizing interpolation. Defaults to
            `"bilinear"`.
        antialias: bool. Whether to antialias when downsampling. Defaults to
            `False`.
        **kwargs: Standard layer arguments.

    Call arguments:
        images: `(B, H, W, C)` raw pixels, float in [0, 255] or uint8.

    Examples:
    ```python
    import numpy as np
    from keras_ptame.layers.preprocessors import ImagePreprocessor

    preprocess = ImagePreprocessor((4, 4), scale=1 / 127.5, offset=-1.0)
    x = preprocess(np.full((1, 8, 8, 3), 255.0, "float32"))   # (1, 4, 4, 3) of 1.0
    ```
    """

    def __init__(
        self,
        image_size=None,
        scale=None,
        offset=None,
        interpolation="bilinear",
        antialias=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = None if image_size is None else tuple(image_size)
        self.scale = _as_constant(scale)
        self.offset = _as_constant(offset)
        self.interpolation = interpolation
        self.antialias = bool(antialias)
        self.built = True

    @classmethod
    def from_converter(cls, converter):
        """The same preprocessing as a (channels-last) keras-hub `ImageConverter`."""
        scale, offset = converter.scale, converter.offset
        # keras-hub 0.21's `ViTImageConverter` normalises once more after
        # `scale` and `offset`: `(x - norm_mean) / norm_std`, folded in here.
        mean = getattr(converter, "norm_mean", None)
        std = getattr(converter, "norm_std", None)
        if mean is not None or std is not None:
            mean = np.asarray(0.0 if mean is None else mean, "float64")
            std = np.asarray(1.0 if std is None else std, "float64")
            scale = np.asarray(1.0 if scale is None else scale, "float64") / std
            offset = (np.asarray(0.0 if offset is None else offset) - mean) / std
        return cls(
            image_size=converter.image_size,
            scale=scale,
            offset=offset,
            interpolation=converter.interpolation,
            antialias=converter.antialias,
            name=converter.name,
            dtype=converter.dtype_policy,
        )

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.image_size is not None and tuple(x.shape[1:3]) != self.image_size:
            x = ops.image.resize(
                x,
                self.image_size,
                interpolation=self.interpolation,
                antialias=self.antialias,
            )
        # Numpy constants: folded into compiled graphs, one tiny copy eagerly.
        if self.scale is not None:
            x = x * ops.convert_to_tensor(_broadcastable(self.scale), x.dtype)
        if self.offset is not None:
            x = x + ops.convert_to_tensor(_broadcastable(self.offset), x.dtype)
        return x

    def get_config(self):
        config = super().get_config()
        for key in ("image_size", "scale", "offset", "interpolation", "antialias"):
            config[key] = getattr(self, key)
        return config


def _as_constant(value):
    """A float, a list of per-channel floats, or None, as a config holds it."""
    if value is None:
        return None
    array = np.asarray(value, dtype="float64")
    return float(array) if array.ndim == 0 else [float(v) for v in array.ravel()]


def _broadcastable(value):
    return np.asarray(value, dtype="float32").reshape((1, 1, 1, -1))


@keras.saving.register_keras_serializable(package="keras_ptame")
class ApplicationPreprocessor(keras.layers.Layer):
    """The `preprocess_input` of a `keras.applications` model, as a layer.

    A layer (rather than the bare function) so that an explainer built on a
    `keras.applications` model saves and loads with `safe_mode=True`.

    Args:
        module: str. The `keras.applications` module whose `preprocess_input`
            to apply, e.g. `"resnet50"`, `"vgg16"`, `"efficientnet"`.
        **kwargs: Standard layer arguments.

    Call arguments:
        images: `(B, H, W, 3)` raw pixels, float in [0, 255].

    Examples:
    ```python
    import numpy as np
    from keras_ptame.layers.preprocessors import ApplicationPreprocessor

    preprocess = ApplicationPreprocessor("resnet50")
    x = preprocess(np.full((1, 8, 8, 3), 128.0, "float32"))   # BGR, mean removed
    ```
    """

    def __init__(self, module, **kwargs):
        super().__init__(**kwargs)
        self._preprocess = _preprocess_input_of(module)
        self.module = module

    def call(self, images):
        # `preprocess_input` may modify numpy inputs in place; copy via ops.
        return self._preprocess(keras.ops.convert_to_tensor(images, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"module": self.module})
        return config


def _preprocess_input_of(module):
    try:
        found = importlib.import_module(f"keras.applications.{module}")
    except ImportError as error:
        raise ValueError(
            "`module` must name a `keras.applications` module. "
            f"Received: module={module!r}"
        ) from error
    if not hasattr(found, "preprocess_input"):
        raise ValueError(
            f"`keras.applications.{module}` has no `preprocess_input`. "
            f"Received: module={module!r}"
        )
    return found.preprocess_input
