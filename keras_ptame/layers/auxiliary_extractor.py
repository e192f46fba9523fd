import keras

from keras_ptame.layers import pretrained_networks
from keras_ptame.layers.frozen_network import FrozenNetwork


@keras.saving.register_keras_serializable(package="keras_ptame")
class AuxiliaryExtractor(FrozenNetwork):
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
        adapter: optional `kp.layers.ChannelAdapter`, applied before
            `preprocessor`, when `model` reads another channel count than
            the images have (an ImageNet network reading grayscale or
            multispectral images). Defaults to `None`.
        **kwargs: Standard layer arguments.

    Call arguments:
        images: `(B, H, W, C)` raw pixels, float in [0, 255] or uint8, with
            the channels `model` reads (or its `adapter` takes).

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

    # The same RGB network on grayscale images, repeated on its 3 channels:
    gray = kp.AuxiliaryExtractor(
        model,
        layer_names=["stage1", "stage2"],
        adapter=kp.layers.ChannelAdapter(repeat=3),
    )
    features = gray(np.zeros((1, 32, 32, 1)))
    ```
    """

    nested_objects = ("model", "preprocessor")

    def __init__(self, model, layer_names=None, preprocessor=None, **kwargs):
        super().__init__(preprocessor=preprocessor, **kwargs)
        if not isinstance(model, keras.layers.Layer):
            raise ValueError(
                f"`model` must be a Keras model. Received: model={type(model).__name__}"
            )
        self.model = model
        self.layer_names = list(layer_names) if layer_names is not None else None
        self.feature_model = (
            _tap(model, self.layer_names) if self.layer_names is not None else model
        )
        self.freeze(model, self.feature_model)

    @property
    def network(self):
        return self.feature_model

    def call(self, images):
        features = self.run_network(images)
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
        config["layer_names"] = self.layer_names
        return config

    # === Presets (keras_ptame.layers.pretrained_networks) ===

    @classmethod
    def from_preset(
        cls,
        preset,
        feature_names=None,
        layer_names=None,
        image_size=None,
        load_weights=True,
        **kwargs,
    ):
        """Builds the auxiliary network from a keras-hub preset or `keras.applications`.

        By default a keras-hub backbone is tapped at all its
        `pyramid_outputs`: for `"resnet_18_imagenet"` the outputs of its
        four stages (P2..P5), the paper's auxiliary features. The preset's
        `ImageConverter` (or the application's `preprocess_input`) is the
        preprocessor, so raw pixels go in.

        Args:
            preset: str. A keras-hub preset name or handle, a local preset
                directory saved with `save_to_preset`, or
                `"keras.applications.<Name>"` (e.g.
                `"keras.applications.ResNet50"`).
            feature_names: optional list of str. Keys of the keras-hub
                backbone's `pyramid_outputs` to tap. Defaults to `None` (all).
            layer_names: optional list of str. Layers to tap instead, for
                backbones without `pyramid_outputs` and for
                `keras.applications` models other than ResNet and VGG.
                Defaults to `None`.
            image_size: optional int or `(height, width)`. For a preset, the
                size its image converter resizes to (defaults to the
                preset's); for `keras.applications`, the input size (defaults
                to 224).
            load_weights: bool. Whether to load the pretrained weights (they
                are downloaded on first use). Defaults to `True`.
            **kwargs: passed to `AuxiliaryExtractor` (`name`, `preprocessor`
                to replace the preset's own, `adapter` for images of other
                channels than the preset's RGB, ...).

        Examples:
        ```python
        import keras_ptame as kp

        extractor = kp.AuxiliaryExtractor.from_preset("resnet_18_imagenet")
        extractor = kp.AuxiliaryExtractor.from_preset(
            "keras.applications.ResNet50"
        )
        # Grayscale images: the ImageNet network reads them repeated on RGB.
        extractor = kp.AuxiliaryExtractor.from_preset(
            "resnet_18_imagenet", adapter=kp.layers.ChannelAdapter(repeat=3)
        )
        ```
        """
        if pretrained_networks.is_application(preset):
            if feature_names is not None:
                raise ValueError(
                    "`feature_names` applies to keras-hub presets; name the layers "
                    "of a `keras.applications` model with `layer_names`. "
                    f"Received: feature_names={feature_names!r}"
                )
            # Checked before building, which may download weights.
            if layer_names is None:
                layer_names = pretrained_networks.application_layer_names(preset)
            model, preprocessor = pretrained_networks.load_application(
                preset,
                weights="imagenet" if load_weights else None,
                image_size=image_size or 224,
                include_top=False,
            )
        else:
            model, layer_names, preprocessor = pretrained_networks.load_feature_network(
                preset,
                feature_names=feature_names,
                layer_names=layer_names,
                image_size=image_size,
                load_weights=load_weights,
            )
        kwargs.setdefault("preprocessor", preprocessor)
        return cls(model, layer_names=layer_names, **kwargs)


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
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=f"{model.name}_features")


# In a saved explainer, the `model` of an extractor that taps the classifier
# itself: the classifier is saved once, and shared again on loading so that its
# weights load once.
SHARED_CLASSIFIER = "__backbone_classifier__"


def serialize_extractor(extractor, classifier):
    """`extractor`'s Keras config, with `classifier` saved as a reference."""
    config = keras.saving.serialize_keras_object(extractor)
    if extractor.model is classifier:
        config["config"]["model"] = SHARED_CLASSIFIER
    return config


def deserialize_extractor(config, classifier):
    """The extractor of `serialize_extractor`, tapping `classifier` if shared."""
    if config["config"].get("model") != SHARED_CLASSIFIER:
        return keras.saving.deserialize_keras_object(config)
    return AuxiliaryExtractor.from_config({**config["config"], "model": classifier})
