"""Loading what the subcommands work on: explainers, classifiers, auxiliary
networks, evaluation methods, with one set of defaults and one-line errors.

Every `.keras` file is loaded with `compile=False` and Keras' default
`safe_mode=True` (`--unsafe` turns it off), whichever subcommand asks.
"""

import os

from keras_ptame import baselines
from keras_ptame.cli.errors import UsageError, one_line
from keras_ptame.converters.ptame_checkpoint import (
    MissingNetworkWeights,
    missing_weights_message,
)
from keras_ptame.layers.auxiliary_extractor import AuxiliaryExtractor
from keras_ptame.layers.backbone import Backbone
from keras_ptame.models.loading import (
    CHECKPOINT_SUFFIXES,
    load_explainer,
    load_keras_model,
)
from keras_ptame.utils.install import install_hint

# The `--method` forms of `ptame evaluate`, for its help and its errors.
METHOD_FORMS = (
    "NAME=PATH.keras (or an authors' NAME=PATH.ckpt), rise[:MASKS], "
    "gradcam:LAYER, gradient, random or centre"
)

# How the CLI passes the networks of a checkpoint that holds the decoder alone.
CHECKPOINT_FLAGS = {
    "classifier": "--classifier-weights",
    "auxiliary": "--auxiliary-weights",
}


def open_explainer(path, safe_mode=True, **checkpoint_options):
    """`kp.load_explainer(path, ...)`, its errors in one line naming the flags.

    Args:
        path: str, the explainer: `--model`, or the path of `--method
            NAME=PATH`.
        safe_mode: bool. Keras' `safe_mode` (`--unsafe` turns it off).
        **checkpoint_options: `load_explainer`'s `classifier_weights`,
            `auxiliary_weights` and `image_size` (`--classifier-weights`,
            `--auxiliary-weights`, `--image-size`).
    """
    try:
        return load_explainer(path, safe_mode=safe_mode, **checkpoint_options)
    except MissingNetworkWeights as error:
        # Named without its folder, or not at all: errors are cut at 500
        # characters, and this one must keep its end.
        message = missing_weights_message(
            repr(os.path.basename(path)), error.missing, CHECKPOINT_FLAGS
        )
        if len(message) > 500:
            message = missing_weights_message(
                "The checkpoint", error.missing, CHECKPOINT_FLAGS
            )
        raise UsageError(message) from error
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as error:
        message = one_line(error)
        for name in ("classifier_weights", "auxiliary_weights", "image_size"):
            message = message.replace(f"`{name}`", "--" + name.replace("_", "-"))
        raise UsageError(message) from error
    except ImportError as error:
        raise UsageError(one_line(error)) from error


def load_backbone(source, image_size=None, output_type=None):
    """The classifier to explain, as a `Backbone`.

    Args:
        source: str. A `.keras` file (a model on raw pixels in [0, 255]
            returning logits, or probabilities with `output_type`), a
            keras-hub preset, a local preset folder or
            `"keras.applications.<Name>"`.
        image_size: optional int, the input size asked of a preset.
        output_type: optional str, one of `OUTPUT_TYPES`: what the
            classifier returns. Defaults to `None` (a preset's own, else
            `"logits"`).
    """
    options = {} if output_type is None else {"output_type": output_type}
    if source.endswith(".keras"):
        return Backbone(load_keras_model(source, "classifier"), **options)
    return _from_preset(
        Backbone.from_preset, source, "classifier", image_size=image_size, **options
    )


def load_auxiliary(source, layer_names=None, image_size=None):
    """The auxiliary feature network, as an `AuxiliaryExtractor`.

    Args:
        source: str. A `.keras` file (its outputs, or the layers named by
            `layer_names`, are the feature maps), a keras-hub preset (tapped
            at its pyramid outputs), a local preset folder or
            `"keras.applications.<Name>"`.
        layer_names: optional list of str, the layers to tap.
        image_size: optional int, the input size asked of a preset.
    """
    if source.endswith(".keras"):
        return AuxiliaryExtractor(
            load_keras_model(source, "auxiliary network"), layer_names=layer_names
        )
    return _from_preset(
        AuxiliaryExtractor.from_preset,
        source,
        "auxiliary network",
        layer_names=layer_names,
        image_size=image_size,
    )


def make_explainer(
    spec, classifier, batch_size=32, seed=0, safe_mode=True, checkpoint_options=None
):
    """Builds one explainer to evaluate from a `--method` spec.

    Specs: `NAME=PATH.keras` (a saved P-TAME explainer, or the authors'
    `NAME=PATH.ckpt`, loaded by `kp.load_explainer`, in the row NAME), `rise`
    or `rise:MASKS`, `gradcam:LAYER`, `gradient`, `random`, `centre`.

    Args:
        spec: str, the spec.
        classifier: the Keras classifier the baselines explain.
        batch_size: int. Images per classifier call. Defaults to `32`.
        seed: int. Seed of RISE's masks and of the random maps. Defaults
            to `0`.
        safe_mode: bool. Keras' `safe_mode` for `NAME=PATH.keras`. Defaults
            to `True`.
        checkpoint_options: optional dict of `load_explainer`'s
            `classifier_weights`, `auxiliary_weights` and `image_size`, for
            the authors' checkpoints. Defaults to `None`.

    Returns:
        A tuple `(name, explainer)`.
    """
    if "=" in spec:
        name, path = spec.split("=", 1)
        if not name:
            raise UsageError(f"--method {spec!r} needs a name: NAME=PATH.keras")
        options = checkpoint_options or {}
        if not path.endswith(CHECKPOINT_SUFFIXES):
            options = {}
        return name, open_explainer(path, safe_mode=safe_mode, **options)
    kind, _, argument = spec.partition(":")
    if kind == "rise":
        masks = _count(argument, spec) if argument else 4000
        return "RISE", baselines.RISE(classifier, num_masks=masks, seed=seed)
    if kind == "gradcam":
        if not argument:
            raise UsageError("`gradcam` needs a layer name: gradcam:LAYER")
        return "Grad-CAM", baselines.GradCAM(
            classifier, argument, batch_size=batch_size
        )
    if kind == "gradient":
        return "gradient", baselines.GradientSaliency(classifier, batch_size=batch_size)
    if kind == "random":
        return "random", baselines.RandomMaps(seed=seed)
    if kind in ("centre", "center"):
        return "centre", baselines.CentreMaps()
    raise UsageError(f"Unknown method. Received: {spec!r}; use {METHOD_FORMS}")


def _from_preset(from_preset, source, what, **kwargs):
    try:
        return from_preset(source, **kwargs)
    except (ValueError, OSError) as error:
        raise UsageError(
            f"Cannot load the {what} preset {source!r}: {one_line(error)}"
        ) from error
    except ImportError as error:
        # keras_ptame's own message names the requirement already; say it once.
        message, hint = one_line(error), install_hint("hub")
        if hint not in message:
            message += f" ({hint})"
        raise UsageError(
            f"Loading the {what} preset {source!r} needs keras-hub: {message}"
        ) from error


def _count(text, spec):
    if not text.isdigit() or int(text) <= 0:
        raise UsageError(
            f"The number of masks must be a positive integer. Received: {spec!r}"
        )
    return int(text)
