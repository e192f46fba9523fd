import keras
from keras import ops

from keras_ptame.layers.backbone import _call_frozen, _freeze


@keras.saving.register_keras_serializable(package="keras_ptame")
class AuxiliaryExtractor(keras.layers.Layer):
    """A frozen feature network whose feature maps the `MaskDecoder` reads.

    In the paper this is an ImageNet ResNet-18 tapped after its four stages.
    Any network works whose chosen outputs are channels-last feature maps.

    Args:
        model: a Keras model. Either its outputs are the feature maps, or
            `layer_names` names the layers whose outputs are.
        layer_names: optional list of str. Layers of `model` to tap, in any
            order. Defaults to `None` (use `model`'s own outputs).
        preprocessor: optional Keras layer or callable applied to the raw
            pixels (float, [0, 255]) before `model`. Defaults to `None`.
        **kwargs: Standard layer arguments.

    Call arguments:
        images: `(B, H, W, 3)` raw pixels, float in [0, 255] or uint8.

    Returns:
        A list of 4-D feature maps `(B, h_i, w_i, c_i)`, finest first.

    Examples:
    ```python
    import keras, numpy as np
    import keras_ptame as kp

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stage1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="stage2")(x)
    model = keras.Model(inputs, x)
    extractor = kp.AuxiliaryExtractor(model, layer_names=["stage1", "stage2"])
    features = extractor(np.zeros((1, 32, 32, 3)))   # [(1, 32, 32, 8), (1, 16, 16, 16)]
    ```
    """

    def __init__(self, model, layer_names=None, preprocessor=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, keras.layers.Layer):
            raise ValueError(
                "`model` must be a Keras model. Received: "
                f"model={type(model).__name__}"
            )
        if preprocessor is not None and not callable(preprocessor):
            raise ValueError(
                "`preprocessor` must be a Keras layer or callable. "
                f"Received: preprocessor={preprocessor!r}"
            )
        self.model = model
        self.layer_names = list(layer_names) if layer_names is not None else None
        self.preprocessor = preprocessor
        self.feature_model = (
            _tap(model, self.layer_names) if self.layer_names is not None else model
        )
        _freeze(model)
        _freeze(self.feature_model)
        _freeze(preprocessor)
        self.trainable = False

    def build(self, input_shape):
        for part in (self.preprocessor, self.feature_model):
            if isinstance(part, keras.layers.Layer) and not part.built:
                part.build(input_shape)
        self.built = True

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.preprocessor is not None:
            x = self.preprocessor(x)
        features = _call_frozen(self.feature_model, x)
        if isinstance(features, dict):
            features = [features[key] for key in sorted(features)]
        elif not isinstance(features, (list, tuple)):
            features = [features]
        features = list(features)
        # Finest first, where the sizes are known before running.
        if all(len(f.shape) == 4 and None not in f.shape[1:3] for f in features):
            features.sort(key=lambda f: -f.shape[1] * f.shape[2])
        return features

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "model": keras.saving.serialize_keras_object(self.model),
                "layer_names": self.layer_names,
                "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("model", "preprocessor"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _tap(model, layer_names):
    if not layer_names:
        raise ValueError(
            "`layer_names` must name at least one layer. "
            f"Received: layer_names={layer_names!r}"
        )
    known = {layer.name for layer in model.layers}
    missing = [name for name in layer_names if name not in known]
    if missing:
        raise ValueError(
            f"`layer_names` names layers that `model` does not have: {missing}. "
            f"Its layers are: {sorted(known)}"
        )
    try:
        outputs = [model.get_layer(name).output for name in layer_names]
    except (AttributeError, ValueError) as error:
        raise ValueError(
            "Feature layers can only be tapped from a functional or Sequential "
            f"Keras model that has been built on an input. Received: {model.name} "
            f"({error})"
        ) from error
    return keras.Model(model.inputs, outputs, name=f"{model.name}_features")
