"""Imports the explainers that the P-TAME authors trained and published.

The authors (Ntrougkas, Mezaris, Patras; arXiv 2501.17813) publish trained
explainers for VGG-16, ResNet-50 and ViT-B/16 as PyTorch Lightning
checkpoints, under academic, non-commercial terms. A checkpoint's
`"state_dict"` holds, under `net.`:

- `backbone.*`: the torchvision classifier explained;
- `attention.attention.*`: the torchvision ResNet-18 auxiliary network, read
  after its four stages `layer1..layer4`;
- `attention.convs.{i}`, `attention.bns.{i}`: the decoder's per-scale 1x1
  convolutions and batch normalisations (PyTorch's defaults);
- `attention.fuser`: the bias-free 1x1 fuser, `(num_classes, 960, 1, 1)`.

`load_official_checkpoint` rebuilds all of it in Keras: the networks as
keras-hub architectures with the checkpoint's weights (see
`keras_ptame.checkpoints`), each with the ImageNet normalisation the authors
used as its preprocessing (so raw pixels in [0, 255] go in), and the decoder
with the authors' numerics (batch normalisation epsilon 1e-5, repeated
bilinear doubling). Reading the file needs PyTorch (any Keras backend runs
the result); nothing is downloaded.
"""

import os

import numpy as np

from keras_ptame import checkpoints
from keras_ptame.layers.auxiliary_extractor import AuxiliaryExtractor
from keras_ptame.layers.backbone import Backbone
from keras_ptame.presets import pyramid_layer_names

CLASSIFIER = "net.backbone."
AUXILIARY = "net.attention.attention."
DECODER = "net.attention."
_DECODER_PARTS = ("convs.", "bns.", "fuser.")

# The authors' decoder: PyTorch's BatchNorm2d defaults (momentum 0.1 is
# Keras' 0.9) and features upsampled by repeated bilinear doubling.
AUTHORS_NUMERICS = {
    "batch_norm_epsilon": 1e-5,
    "batch_norm_momentum": 0.9,
    "upsampling": "doubling",
}


def load_official_checkpoint(cls, checkpoint, image_size=224, **kwargs):
    """Builds an explainer of class `cls` from the authors' checkpoint.

    Args:
        cls: the explainer class (`PTAME` or a subclass).
        checkpoint: a path to the authors' Lightning checkpoint (`.ckpt`), a
            file holding its state dict alone, or the state dict itself.
        image_size: int. The square size of the images the explainer takes
            (the authors': 224). Defaults to `224`.
        **kwargs: passed to `cls` (`name`, ...).

    Returns:
        A built explainer of class `cls` with the checkpoint's weights.
    """
    weights = read_state_dict(checkpoint)
    _check_layout(weights)
    num_classes = weights.shape(DECODER + "fuser.weight")[0]
    classifier = checkpoints.torchvision_classifier(
        weights.under(CLASSIFIER), image_size
    )
    if classifier.output_shape[-1] != num_classes:
        raise ValueError(
            f"The checkpoint's key {DECODER + 'fuser.weight'!r} gives "
            f"{num_classes} class maps, but its classifier has "
            f"{classifier.output_shape[-1]} classes."
        )
    backbone = Backbone(
        classifier,
        preprocessor=checkpoints.imagenet_converter("classifier_normalization"),
        name="backbone",
    )
    extractor = auxiliary_extractor(weights.under(AUXILIARY), image_size)
    kwargs.setdefault("decoder_options", AUTHORS_NUMERICS)
    explainer = cls(backbone, extractor, num_classes=num_classes, **kwargs)
    explainer.build((None, image_size, image_size, 3))
    port_decoder(explainer.decoder, weights.under(DECODER))
    weights.check_all_used()
    return explainer


def auxiliary_extractor(weights, image_size=224):
    """The authors' ResNet-18, tapped after `layer1..layer4`, as an extractor."""
    network = checkpoints.resnet_backbone(weights, image_size, name="auxiliary")
    # The auxiliary network's own classification layer feeds no feature map.
    for name in ("fc.weight", "fc.bias"):
        if name in weights:
            weights.take(name)
    return AuxiliaryExtractor(
        network,
        layer_names=pyramid_layer_names(network),
        preprocessor=checkpoints.imagenet_converter("auxiliary_normalization"),
        name="extractor",
    )


def port_decoder(decoder, weights):
    """Copies the authors' decoder weights (`convs`, `bns`, `fuser`)."""
    for index, (conv, norm) in enumerate(zip(decoder.convs, decoder.norms)):
        checkpoints.port_conv(conv, weights, f"convs.{index}")
        checkpoints.port_batch_norm(norm, weights, f"bns.{index}")
    checkpoints.port_conv(decoder.fuser, weights, "fuser")
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
                f"{DECODER!r}{{convs, bns, fuser}} (the decoder)."
            )
    if DECODER + "fuser.weight" not in weights:
        raise ValueError(
            f"The checkpoint lacks the key {DECODER + 'fuser.weight'!r}: it is "
            "not a P-TAME explainer in the authors' layout."
        )


# === Reading PyTorch files ===


def read_state_dict(checkpoint):
    """Reads a PyTorch checkpoint into a `StateDict` of float32 numpy arrays.

    Args:
        checkpoint: a path to a file saved with `torch.save` (a Lightning
            checkpoint with a `"state_dict"`, or a bare state dict), or a
            dict of names to tensors or arrays.

    Returns:
        A `StateDict`.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = _torch_load(os.fspath(checkpoint))
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ValueError(
            "A checkpoint must be a state dict (names to tensors) or hold one "
            f"under 'state_dict'. Received: {type(checkpoint).__name__}"
        )
    arrays = {str(key): _to_numpy(value) for key, value in checkpoint.items()}
    return checkpoints.StateDict(arrays)


def _torch_load(path):
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "Reading a PyTorch checkpoint needs PyTorch (the CPU build is enough: "
            "`pip install torch`), whatever the Keras backend."
        ) from error
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        if "weights_only" not in str(error) and "Unpickl" not in type(error).__name__:
            raise
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
