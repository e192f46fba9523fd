"""Imports the explainers that the P-TAME authors trained and published.

The authors (Ntrougkas, Mezaris, Patras; arXiv 2501.17813) publish trained
explainers for VGG-16, ResNet-50 and ViT-B/16 as PyTorch Lightning
checkpoints, under academic, non-commercial terms. A checkpoint's
`"state_dict"` holds, under `net.`:

- `attention.convs.{i}`, `attention.bns.{i}`: the decoder's per-scale 1x1
  convolutions and batch normalisations (PyTorch's defaults);
- `attention.fuser`: the bias-free 1x1 fuser, `(num_classes, 960, 1, 1)`.

That is all the files they publish hold: their saver drops the networks, and
their loader takes them from torchvision's ImageNet weights
(`IMAGENET1K_V1`): the classifier explained (ResNet-50, VGG-16 or ViT-B/16)
and the auxiliary ResNet-18, read after its four stages `layer1..layer4`.
So `load_official_checkpoint` takes those two networks' weights as
torchvision's own files (bare state dicts: `resnet50-0676ba61.pth`,
`resnet18-f37072fd.pth`, ...). A checkpoint saved with the whole model's
state dict also holds them, as `backbone.*` and `attention.attention.*`,
and is read alone. Keys of networks compiled with `torch.compile` (with
`_orig_mod.`) are read as the module's own.

The networks are rebuilt as keras-hub architectures (see
`keras_ptame.converters.torchvision`), each with the ImageNet normalisation
the authors used as its preprocessing (so raw pixels in [0, 255] go in), and
the decoder with the authors' numerics (batch normalisation epsilon 1e-5,
repeated bilinear doubling). Reading the files needs PyTorch (any Keras
backend runs the result); nothing is downloaded.
"""

import os

import numpy as np

from keras_ptame.converters import torchvision
from keras_ptame.layers.auxiliary_extractor import AuxiliaryExtractor
from keras_ptame.layers.backbone import Backbone
from keras_ptame.layers.pretrained_networks import pyramid_layer_names
from keras_ptame.utils.install import install_hint
from keras_ptame.utils.validation import check_finite_weights

CLASSIFIER = "net.backbone."
AUXILIARY = "net.attention.attention."
DECODER = "net.attention."
_DECODER_PARTS = ("convs.", "bns.", "fuser.")
# `torch.compile` keeps the module it wraps as `_orig_mod`; the authors'
# training module keeps its compiled network as `compiled_net`, a second
# name for `net` (the same tensors, saved twice).
COMPILED = "_orig_mod."
COMPILED_NET = "compiled_net." + COMPILED

# The authors' decoder: PyTorch's BatchNorm2d defaults (momentum 0.1 is
# Keras' 0.9) and features upsampled by repeated bilinear doubling.
AUTHORS_NUMERICS = {
    "batch_norm_epsilon": 1e-5,
    "batch_norm_momentum": 0.9,
    "upsampling": "doubling",
}

# The torchvision weights (`IMAGENET1K_V1`) the authors trained with, as
# torchvision names its files: the classifiers, then the auxiliary network.
CLASSIFIER_FILES = {
    "ResNet-50": "resnet50-0676ba61.pth",
    "VGG-16": "vgg16-397923af.pth",
    "ViT-B/16": "vit_b_16-c867db91.pth",
}
AUXILIARY_FILE = "resnet18-f37072fd.pth"
TORCH_HUB_FOLDER = "~/.cache/torch/hub/checkpoints/"

# How each network's weights are passed, in Python (the CLI has its own).
PYTHON_OPTIONS = {
    "classifier": "`classifier_weights`",
    "auxiliary": "`auxiliary_weights`",
}


class MissingNetworkWeights(ValueError):
    """A checkpoint holds the decoder alone and a network's weights are missing.

    Args:
        checkpoint: str. The checkpoint, for the message.
        missing: tuple of `"classifier"` and/or `"auxiliary"`.
    """

    def __init__(self, checkpoint, missing):
        self.checkpoint = checkpoint
        self.missing = tuple(missing)
        super().__init__(missing_weights_message(checkpoint, self.missing))


def missing_weights_message(checkpoint, missing, options=None):
    """What a decoder-only checkpoint needs, and how to pass it.

    Args:
        checkpoint: str. The checkpoint, as the message names it.
        missing: tuple of `"classifier"` and/or `"auxiliary"`.
        options: optional dict from those to how each is passed. Defaults
            to `PYTHON_OPTIONS`.
    """
    options = options or PYTHON_OPTIONS
    classifiers = [f"{k} {v}" for k, v in CLASSIFIER_FILES.items()]
    parts = {
        "classifier": f"the classifier with {options['classifier']} "
        f"({', '.join(classifiers[:-1])} or {classifiers[-1]})",
        "auxiliary": f"ResNet-18 with {options['auxiliary']} ({AUXILIARY_FILE})",
    }
    wanted = " and ".join(parts[name] for name in missing)
    return (
        f"{checkpoint} holds the decoder alone, as the P-TAME authors publish "
        "it: pass the torchvision IMAGENET1K_V1 networks it was trained with, "
        f"{wanted}, from {TORCH_HUB_FOLDER} or saved by "
        'torch.save(torchvision.models.resnet18(weights="IMAGENET1K_V1")'
        ".state_dict(), PATH)."
    )


def load_official_checkpoint(
    cls,
    checkpoint,
    classifier_weights=None,
    auxiliary_weights=None,
    image_size=224,
    **kwargs,
):
    """Builds an explainer of class `cls` from the authors' checkpoint.

    Args:
        cls: the explainer class (`PTAME` or a subclass).
        checkpoint: a path to the authors' Lightning checkpoint (`.ckpt`), a
            file holding its state dict alone, or the state dict itself.
        classifier_weights: optional torchvision state dict of the
            classifier (a file saved with `torch.save`, as torchvision's
            `resnet50-0676ba61.pth`, or the dict). Needed when `checkpoint`
            holds the decoder alone, refused when it holds a classifier.
            Defaults to `None`.
        auxiliary_weights: optional torchvision state dict of the ResNet-18
            (`resnet18-f37072fd.pth`), as `classifier_weights`. Defaults to
            `None`.
        image_size: int. The square size of the images the explainer takes
            (the authors': 224). Defaults to `224`.
        **kwargs: passed to `cls` (`name`, ...); `decoder_options` are laid
            over the authors' numerics.

    Returns:
        A built explainer of class `cls` with the checkpoint's weights.
    """
    weights = read_state_dict(checkpoint)
    _check_layout(weights)
    decoder = weights.under(DECODER)
    classifier, auxiliary = _networks(
        weights, checkpoint, classifier_weights, auxiliary_weights
    )
    _check_auxiliary(auxiliary, decoder)
    num_classes = decoder.shape("fuser.weight")[0]
    network = torchvision.torchvision_classifier(classifier, image_size)
    if network.output_shape[-1] != num_classes:
        raise ValueError(
            f"The checkpoint's key {DECODER + 'fuser.weight'!r} gives "
            f"{num_classes} class maps, but the classifier in {classifier.source} "
            f"has {network.output_shape[-1]} classes."
        )
    backbone = Backbone(
        network,
        preprocessor=torchvision.imagenet_converter("classifier_normalization"),
        name="backbone",
    )
    extractor = auxiliary_extractor(auxiliary, image_size)
    kwargs["decoder_options"] = {
        **AUTHORS_NUMERICS,
        **(kwargs.get("decoder_options") or {}),
    }
    explainer = cls(backbone, extractor, num_classes=num_classes, **kwargs)
    explainer.build((None, image_size, image_size, 3))
    port_decoder(explainer.decoder, decoder)
    for part in (weights, classifier, auxiliary):
        part.check_all_used()
    return explainer


def auxiliary_extractor(weights, image_size=224):
    """The authors' ResNet-18, tapped after `layer1..layer4`, as an extractor."""
    network = torchvision.resnet_backbone(weights, image_size, name="auxiliary")
    # The auxiliary network's own classification layer feeds no feature map.
    for name in ("fc.weight", "fc.bias"):
        if name in weights:
            weights.take(name)
    return AuxiliaryExtractor(
        network,
        layer_names=pyramid_layer_names(network),
        preprocessor=torchvision.imagenet_converter("auxiliary_normalization"),
        name="extractor",
    )


def port_decoder(decoder, weights):
    """Copies the authors' decoder weights (`convs`, `bns`, `fuser`)."""
    for index, (conv, norm) in enumerate(zip(decoder.convs, decoder.norms)):
        torchvision.port_conv(conv, weights, f"convs.{index}")
        torchvision.port_batch_norm(norm, weights, f"bns.{index}")
    torchvision.port_conv(decoder.fuser, weights, "fuser")
    weights.check_assigned(decoder)


def _check_layout(weights):
    # Refused before any network is built, naming the first stray key.
    for key in weights.names():
        part = key[len(DECODER) :] if key.startswith(DECODER) else None
        known = key.startswith(CLASSIFIER) or (
            part is not None
            and (part.startswith("attention.") or part.startswith(_DECODER_PARTS))
        )
        if not known:
            raise ValueError(
                f"The checkpoint's key {key!r} does not fit the P-TAME authors' "
                f"layout: every key starts with {CLASSIFIER!r} (the classifier), "
                f"{AUXILIARY!r} (the auxiliary ResNet-18) or "
                f"{DECODER!r}{{convs, bns, fuser}} (the decoder). (A torchvision "
                "weights file is passed as the classifier's or the auxiliary "
                "network's weights.)"
            )
    if DECODER + "fuser.weight" not in weights:
        raise ValueError(
            f"The checkpoint lacks the key {DECODER + 'fuser.weight'!r}: it is "
            "not a P-TAME explainer in the authors' layout."
        )


# === The networks' weights ===


def _networks(weights, checkpoint, classifier_weights, auxiliary_weights):
    """The classifier's and the auxiliary network's weights, each from one place."""
    found = {}
    for name, prefix, given in (
        ("classifier", CLASSIFIER, classifier_weights),
        ("auxiliary", AUXILIARY, auxiliary_weights),
    ):
        held = any(key.startswith(prefix) for key in weights.names())
        if held and given is not None:
            raise ValueError(
                f"The checkpoint holds the {name} network (its keys under "
                f"{prefix!r}), and {name} weights were passed too "
                f"({_describe(given)}): give them once. The checkpoint's own "
                "are those its decoder was trained with."
            )
        if held:
            found[name] = weights.under(prefix)
        elif given is not None:
            found[name] = read_state_dict(given, what=f"{name} weights")
    missing = [name for name in ("classifier", "auxiliary") if name not in found]
    if missing:
        raise MissingNetworkWeights(_describe(checkpoint, "The checkpoint"), missing)
    return found["classifier"], found["auxiliary"]


def _describe(source, otherwise="given as a dict"):
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    return otherwise


def _check_auxiliary(weights, decoder):
    """Refuses an auxiliary network whose features the decoder cannot take."""
    if "layer1.0.conv1.weight" not in weights:
        names = weights.names()
        raise ValueError(
            f"The auxiliary network's weights in {weights.source} are not a "
            "torchvision ResNet (the authors': ResNet-18, "
            f"{AUXILIARY_FILE}): the key "
            f"{weights.prefix + (names[0] if names else '')!r} does not fit."
        )
    last = "conv3" if "layer1.0.conv3.weight" in weights else "conv2"
    stages = [f"layer{stage}.0.{last}.weight" for stage in range(1, 5)]
    widths = tuple(weights.shape(name)[0] for name in stages if name in weights)
    count = 0
    while f"convs.{count}.weight" in decoder:
        count += 1
    expected = tuple(decoder.shape(f"convs.{i}.weight")[1] for i in range(count))
    if widths != expected:
        raise ValueError(
            f"The auxiliary network in {weights.source} gives features of "
            f"{widths} channels, but the checkpoint's decoder convolutions "
            f"{DECODER}convs.{{0..{count - 1}}}.weight take {expected}: the "
            f"authors' auxiliary network is torchvision's ResNet-18 "
            f"({AUXILIARY_FILE})."
        )


# === Reading PyTorch files ===


def read_state_dict(checkpoint, what="checkpoint"):
    """Reads a PyTorch checkpoint into a `StateDict` of float32 numpy arrays.

    `torch.compile`'s `_orig_mod.` is taken out of the keys.

    Args:
        checkpoint: a path to a file saved with `torch.save` (a Lightning
            checkpoint with a `"state_dict"`, or a bare state dict; `~` is
            expanded), or a dict of names to tensors or arrays.
        what: str. What the weights are, for the messages. Defaults to
            `"checkpoint"`.

    Returns:
        A `StateDict`.
    """
    source = f"the {what}"
    if isinstance(checkpoint, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(checkpoint))
        source += f" {path!r}"
        checkpoint = _torch_load(path, what)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ValueError(
            f"The {what} must be a state dict (names to "
            "tensors) or hold one under 'state_dict'. Received: "
            f"{type(checkpoint).__name__}"
        )
    arrays = {}
    for key, value in checkpoint.items():
        name, value = _uncompiled(str(key)), _to_numpy(value)
        if name in arrays and not np.array_equal(arrays[name], value):
            raise ValueError(
                f"The key {key!r} of {source} is the key {name!r} of a network "
                "compiled with torch.compile, which holds other values."
            )
        arrays[name] = value
    check_finite_weights(arrays, source)
    return torchvision.StateDict(arrays, source=source)


def _uncompiled(key):
    if key.startswith(COMPILED_NET):
        key = "net." + key[len(COMPILED_NET) :]
    return key.replace(COMPILED, "")


def _torch_load(path, what):
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "Reading a PyTorch checkpoint needs PyTorch, whatever the Keras "
            f"backend: {install_hint('torch')}; the CPU build is enough."
        ) from error
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No {what} file at {path!r}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as error:
        if "weights only" not in str(error).lower().replace("_", " "):
            # A truncated file (EOFError, the zip reader's RuntimeError) or
            # another kind of file (KeyError, UnpicklingError of its bytes).
            kind = "P-TAME checkpoint" if what == "checkpoint" else f"{what} file"
            detail = " ".join(str(error).split())[:100]
            raise ValueError(
                f"{path!r} is not a complete {kind} saved with torch.save: it is "
                f"truncated or another kind of file ({type(error).__name__}: "
                f"{detail})."
            ) from error
        raise ValueError(
            f"{path!r} holds Python objects besides tensors, which PyTorch does "
            "not load safely. If you trust the file, save its tensors alone and "
            "pass that file: `torch.save(torch.load(path, weights_only=False)"
            "['state_dict'], 'state_dict.pt')`."
        ) from error


def _to_numpy(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        value = value.float() if value.is_floating_point() else value
        return value.numpy()
    value = np.asarray(value)
    return value.astype("float32") if value.dtype.kind == "f" else value
