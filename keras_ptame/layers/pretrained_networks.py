"""Load pretrained networks for the classifier and the auxiliary network.

Two sources are supported:

- **keras-hub presets**: a built-in name (`"resnet_50_imagenet"`,
  `"vgg_16_imagenet"`, `"vit_base_patch16_224_imagenet"`,
  `"resnet_18_imagenet"`, ...), a `kaggle://` or `hf://` handle, or a local
  directory written by `model.save_to_preset(directory)`. The preset's own
  `ImageConverter`, as Keras ops on the accelerator (`ImagePreprocessor`),
  becomes the preprocessor, so raw pixels of any size go in.
- **`keras.applications`**: `"keras.applications.ResNet50"` and the like,
  with the application's own `preprocess_input`.

Most users reach these through `kp.Backbone.from_preset(...)` and
`kp.AuxiliaryExtractor.from_preset(...)`:

```python
import keras_ptame as kp

backbone = kp.Backbone.from_preset("resnet_50_imagenet")
extractor = kp.AuxiliaryExtractor.from_preset("resnet_18_imagenet")
explainer = kp.PTAME(backbone, extractor)
```

Built-in presets and `keras.applications` weights are downloaded on first
use. Without network access the download fails with an `OSError` that says
so; save the model once where a network is available
(`model.save_to_preset(directory)`) and pass the directory instead.

The preprocessing layers live in `keras_ptame.layers.preprocessors`; this
module sits beside them in `layers/` (not in `utils/`) because it builds
them, and `Backbone` and `AuxiliaryExtractor` import it for `from_preset`.
"""

import importlib
import os
import pkgutil

import keras

from keras_ptame.layers.preprocessors import ApplicationPreprocessor, ImagePreprocessor
from keras_ptame.utils.install import install_hint

APPLICATIONS_PREFIX = "keras.applications."

# The pooled outputs of VGG's blocks 2..5 (strides 4..32), the stages of a
# VGG that match a ResNet's four residual stages; block 1 (stride 2) would
# cost the decoder the most and add the least.
_VGG_STAGES = ["block2_pool", "block3_pool", "block4_pool", "block5_pool"]

# Stages of keras-hub backbones that have no `pyramid_outputs`, by class.
_HUB_STAGES = {"VGGBackbone": _VGG_STAGES}

# The outputs of the four residual stages (the paper's `layer1..layer4`) of
# the `keras.applications` ResNets (from their blocks per stage), so that
# they can serve as the auxiliary network without naming layers.
_APPLICATION_STAGES = {
    name: [f"conv{stage}_block{count}_out" for stage, count in enumerate(blocks, 2)]
    for name, blocks in (
        ("ResNet50", (3, 4, 6, 3)),
        ("ResNet101", (3, 4, 23, 3)),
        ("ResNet152", (3, 8, 36, 3)),
    )
}
_APPLICATION_STAGES.update(VGG16=_VGG_STAGES, VGG19=_VGG_STAGES)


def is_application(preset):
    """Whether `preset` names a `keras.applications` model."""
    return isinstance(preset, str) and preset.startswith(APPLICATIONS_PREFIX)


# === keras-hub presets ===


def load_classifier(preset, image_size=None, load_weights=True):
    """Loads a keras-hub image classifier and its image converter.

    Args:
        preset: str. A keras-hub preset name or handle, or a local preset
            directory, of an `ImageClassifier`.
        image_size: optional int or `(height, width)`. Overrides the size the
            image converter resizes to. Defaults to `None` (the preset's).
        load_weights: bool. Whether to load the pretrained weights. Defaults
            to `True`.

    Returns:
        A tuple `(classifier, preprocessor, output_type)`: the classifier (a
        `keras.Model` on preprocessed images, returning one score per
        class), its `ImageConverter` as an `ImagePreprocessor` (raw pixels
        in), and `"logits"` or `"probabilities"` depending on the classifier
        head's activation.
    """
    keras_hub = _import_keras_hub()
    classifier = _from_hub(
        # Not compiled: the explainer never trains the classifier, and a
        # compiled task would carry an optimizer and metrics of its own.
        lambda: keras_hub.models.ImageClassifier.from_preset(
            preset, load_weights=load_weights, compile=False
        ),
        preset,
    )
    task_preprocessor = getattr(classifier, "preprocessor", None)
    converter = getattr(task_preprocessor, "image_converter", None)
    preprocessor = _preprocessor_of(converter, preset, image_size)
    activation = keras.activations.get(getattr(classifier, "activation", None))
    output_type = (
        "probabilities" if activation is keras.activations.softmax else "logits"
    )
    # A plain functional model over the task's own layers and weights: a
    # keras-hub task compiles itself whenever it is deserialized, so a saved
    # explainer holding one would come back with the task's unbuilt metrics
    # (and `fit` would fail on them).
    classifier = keras.Model(
        classifier.inputs, classifier.outputs, name=classifier.name
    )
    return classifier, preprocessor, output_type


def load_feature_network(
    preset, feature_names=None, layer_names=None, image_size=None, load_weights=True
):
    """Loads a keras-hub backbone and picks the feature maps to tap.

    Args:
        preset: str. A keras-hub preset name or handle, or a local preset
            directory (a backbone or a task preset).
        feature_names: optional list of str. Keys of the backbone's
            `pyramid_outputs` to tap. Defaults to `None` (all of them, e.g.
            `P2..P5` of a ResNet: the outputs of its four stages; for a VGG,
            which has none, `block2_pool..block5_pool`).
        layer_names: optional list of str. Layers of the backbone to tap
            instead, for other backbones without `pyramid_outputs`. Defaults
            to `None`.
        image_size: optional int or `(height, width)`. Overrides the size the
            image converter resizes to. Defaults to `None` (the preset's).
        load_weights: bool. Whether to load the pretrained weights. Defaults
            to `True`.

    Returns:
        A tuple `(backbone, layer_names, preprocessor)`: the preprocessor is
        the preset's `ImageConverter` as an `ImagePreprocessor`.
    """
    keras_hub = _import_keras_hub()
    if feature_names is not None and layer_names is not None:
        raise ValueError(
            "Pass `feature_names` or `layer_names`, not both. Received: "
            f"feature_names={feature_names!r}, layer_names={layer_names!r}"
        )
    backbone = _from_hub(
        lambda: keras_hub.models.Backbone.from_preset(
            preset, load_weights=load_weights
        ),
        preset,
    )
    if layer_names is None:
        layer_names = pyramid_layer_names(backbone, feature_names)
    converter = _from_hub(
        lambda: keras_hub.layers.ImageConverter.from_preset(preset), preset
    )
    return backbone, list(layer_names), _preprocessor_of(converter, preset, image_size)


def pyramid_layer_names(backbone, feature_names=None):
    """The names of the layers that output a backbone's `pyramid_outputs`.

    Args:
        backbone: a keras-hub `FeaturePyramidBackbone` (ResNet, ...), or a
            backbone whose stages are known without them (VGG).
        feature_names: optional list of str, keys of `pyramid_outputs`.
            Defaults to `None` (all keys, in sorted order: `P2`, `P3`, ...;
            or the known stages).

    Returns:
        A list of layer names, one per feature.
    """
    pyramid = getattr(backbone, "pyramid_outputs", None)
    known = _HUB_STAGES.get(type(backbone).__name__)
    if not pyramid and known and feature_names is None:
        return list(known)
    if not pyramid:
        raise ValueError(
            f"The backbone {type(backbone).__name__} has no `pyramid_outputs`. "
            "Name the layers to tap with `layer_names=[...]`. Its layers are: "
            f"{[layer.name for layer in backbone.layers]}"
        )
    if feature_names is None:
        feature_names = sorted(pyramid, key=_level)
    missing = [name for name in feature_names if name not in pyramid]
    if missing:
        raise ValueError(
            f"`feature_names` names features that the backbone does not have: "
            f"{missing}. Its `pyramid_outputs` are: {sorted(pyramid, key=_level)}"
        )
    # Tap by layer name rather than by tensor, so that the extractor saves
    # the keras-hub backbone itself (and loads it with its own class).
    return [pyramid[name]._keras_history.operation.name for name in feature_names]


def _level(name):
    digits = "".join(c for c in str(name) if c.isdigit())
    return (int(digits) if digits else 0, str(name))


def _preprocessor_of(converter, preset, image_size):
    """The preset's image converter as an `ImagePreprocessor`, maybe resized."""
    if converter is None:
        raise ValueError(
            f"The preset {preset!r} has no image converter, so its preprocessing "
            "is unknown. Build the network yourself and pass its preprocessing "
            "as `preprocessor=...`, e.g. `keras.layers.Rescaling(1 / 255)`."
        )
    preprocessor = ImagePreprocessor.from_converter(converter)
    if image_size is not None:
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        preprocessor.image_size = tuple(int(size) for size in image_size)
    return preprocessor


def _import_keras_hub():
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(
            f"Loading presets needs keras-hub: {install_hint('hub')}. ({error})"
        ) from error
    return keras_hub


def _from_hub(load, preset):
    try:
        return load()
    except OSError as error:
        if isinstance(preset, str) and os.path.isdir(preset):
            raise
        raise OSError(
            f"Could not download the keras-hub preset {preset!r}: {error}. "
            "Built-in presets are downloaded from Kaggle (or Hugging Face) on "
            "first use, which needs network access. Run with network access "
            "(e.g. in Colab), or save the model once with "
            "`model.save_to_preset(directory)` where a network is available "
            "and pass that local directory as the preset."
        ) from error


# === keras.applications ===


def _application_module(name):
    """The `keras.applications` submodule that defines model `name`."""
    import keras.applications as applications

    # `ResNet50` is in both `resnet` and `resnet50`: prefer the module named
    # after the model.
    modules = sorted(
        (info.name for info in pkgutil.iter_modules(applications.__path__)),
        key=lambda module: module != name.lower(),
    )
    for module_name in modules:
        module = importlib.import_module(f"keras.applications.{module_name}")
        if hasattr(module, name) and hasattr(module, "preprocess_input"):
            return module_name
    raise ValueError(
        f"Unknown `keras.applications` model. Received: {APPLICATIONS_PREFIX}{name}. "
        "Use a model name as in `keras.applications`, e.g. "
        f"'{APPLICATIONS_PREFIX}ResNet50'."
    )


def load_application(
    preset,
    weights="imagenet",
    image_size=224,
    include_top=True,
    classes=1000,
):
    """Builds a `keras.applications` model and its preprocessing layer.

    Args:
        preset: str. `"keras.applications.<Name>"`, e.g.
            `"keras.applications.ResNet50"`.
        weights: `"imagenet"`, `None` (random weights) or a weights file.
            Defaults to `"imagenet"`.
        image_size: int or `(height, width)`. The input size. Defaults to
            `224`.
        include_top: bool. Whether to keep the classification head (for a
            classifier) or not (for an auxiliary network). Defaults to `True`.
        classes: int. Number of classes when `weights` is not `"imagenet"`.
            Defaults to `1000`.

    Returns:
        A tuple `(model, preprocessor)`. With the head, the model returns
        logits (`classifier_activation=None`).
    """
    if not is_application(preset):
        raise ValueError(
            f"A `keras.applications` model is named '{APPLICATIONS_PREFIX}<Name>'. "
            f"Received: {preset!r}"
        )
    name = preset[len(APPLICATIONS_PREFIX) :]
    module = _application_module(name)
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    kwargs = {"weights": weights, "input_shape": (*image_size, 3)}
    if include_top:
        kwargs.update(classes=classes, classifier_activation=None)
    else:
        kwargs.update(include_top=False)
    build = getattr(keras.applications, name)
    try:
        model = build(**kwargs)
    except Exception as error:
        # `keras.utils.get_file` reports a failed download as a bare
        # `Exception("URL fetch failure ...")`.
        if "fetch failure" not in str(error) and not isinstance(error, OSError):
            raise
        raise OSError(
            f"Could not download the weights of {preset!r}: {error}. Run with "
            "network access (e.g. in Colab), or build it with random weights "
            "(`load_weights=False` in `from_preset`, `weights=None` here)."
        ) from error
    return model, ApplicationPreprocessor(module, name=f"{module}_preprocess")


def application_layer_names(preset):
    """The stage outputs to tap on a `keras.applications` model, if known."""
    name = preset[len(APPLICATIONS_PREFIX) :]
    if name not in _APPLICATION_STAGES:
        raise ValueError(
            f"No default feature layers are known for {preset!r}. Name the layers "
            f"to tap with `layer_names=[...]`. Known defaults: "
            f"{sorted(_APPLICATION_STAGES)}"
        )
    return list(_APPLICATION_STAGES[name])
