"""Argument types and options that several subcommands share."""

import argparse

from keras_ptame import recipes
from keras_ptame.layers.backbone import OUTPUT_TYPES
from keras_ptame.models.fills import FILL_NAMES
from keras_ptame.utils.images import IMAGE_EXTENSIONS
from keras_ptame.utils.validation import check_positive_float


def positive_int(text):
    """An `argparse` type: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text):
    """An `argparse` type: a finite number > 0 (not `nan`, `inf` or `0`)."""
    try:
        return check_positive_float("value", float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive finite number, got {text!r}"
        ) from None


def comma_separated(text):
    """An `argparse` type: comma-separated names, as a list."""
    found = [name.strip() for name in text.split(",") if name.strip()]
    if not found:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated names, got {text!r}"
        )
    return found


def add_unsafe(parser):
    """`--unsafe`: load `.keras` files with `safe_mode=False`."""
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="load .keras files with safe_mode=False (only for files you trust: "
        "it allows Lambda layers to run code)",
    )


def add_overwrite(parser, what="--output"):
    """`--overwrite`: replace existing outputs instead of refusing."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} if it exists (default: refuse, writing nothing)",
    )


def add_model(parser):
    """`--model`: the explainer, as every subcommand that takes one loads it,
    and the options of an authors' checkpoint (`add_checkpoint_weights`)."""
    parser.add_argument(
        "--model",
        required=True,
        help="the trained explainer: a .keras file, a preset folder written by "
        "save_to_preset, a preset handle (kaggle://..., hf://...), or a "
        "checkpoint the P-TAME authors published (.ckpt), with "
        "--classifier-weights and --auxiliary-weights",
    )
    add_checkpoint_weights(parser)


def add_checkpoint_weights(parser):
    """`--classifier-weights`, `--auxiliary-weights`: the torchvision networks
    of a P-TAME authors' checkpoint, which holds the decoder alone."""
    parser.add_argument(
        "--classifier-weights",
        default=None,
        metavar="PATH",
        help="for a P-TAME authors' checkpoint (.ckpt): torchvision's "
        "IMAGENET1K_V1 weights file of the classifier it explains "
        "(resnet50-0676ba61.pth, vgg16-397923af.pth or vit_b_16-c867db91.pth)",
    )
    parser.add_argument(
        "--auxiliary-weights",
        default=None,
        metavar="PATH",
        help="for a P-TAME authors' checkpoint (.ckpt): torchvision's "
        "IMAGENET1K_V1 ResNet-18 weights file (resnet18-f37072fd.pth)",
    )


def add_fill(group):
    """`--fill`: what replaces masked-out pixels in training."""
    group.add_argument(
        "--fill",
        choices=FILL_NAMES,
        default="black",
        help="what replaces masked-out pixels in training: black (the paper's), "
        "mean, blur, noise, or mixture (each image draws one of these four at "
        "every step) (default: %(default)s)",
    )


def add_recipe(group, use, without):
    """`--recipe`: a recipe by name, or a recipe .json file.

    Args:
        group: the parser or argument group to add it to.
        use: what the command takes from the recipe, to open the help.
        without: what the command uses when no recipe is given.
    """
    group.add_argument(
        "--recipe",
        default=None,
        help=f"{use}: one of {', '.join(recipes.names())}, or a recipe .json "
        f"file written by `ptame tune` (default: {without})",
    )


def add_epochs(group, default=None, what="training epochs"):
    """`--epochs`: how long to train.

    Args:
        group: the parser or argument group to add it to.
        default: the epochs when none are given; `None` leaves them to the
            recipe (`ptame train`), else 1.
        what: the help's first words, saying what is trained.
    """
    if default is None:
        text = f"{what} (default: the recipe's, else 1)"
    else:
        text = f"{what} (default: %(default)s)"
    group.add_argument("--epochs", type=positive_int, default=default, help=text)


def add_batch_size(group):
    """`--batch-size` of training: images per training step."""
    group.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="images per training step (default: the recipe's, else 32)",
    )


def add_forward_batch_size(parser):
    """`--batch-size` of explaining: images per forward pass."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="images per forward pass (default: %(default)s)",
    )


def add_quiet(parser):
    """`--quiet`: no progress output."""
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def add_image_size(group, what):
    """`--image-size SIDE`: one side in pixels, of square images, in every command.

    Args:
        group: the parser or argument group to add it to.
        what: the help after "side in pixels", saying which images.
    """
    group.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        metavar="SIDE",
        help=f"side in pixels {what}",
    )


def add_network_options(group):
    """`--classifier`, `--auxiliary` and how to read them, for training."""
    group.add_argument(
        "--classifier",
        required=True,
        help="the classifier to explain: a .keras file (a model on raw pixels "
        "in [0, 255] returning logits), a keras-hub preset name such as "
        "resnet_50_imagenet, a local preset directory, or "
        "keras.applications.<Name>",
    )
    group.add_argument(
        "--auxiliary",
        required=True,
        help="the auxiliary feature network: a .keras file (its outputs, or "
        "the layers named by --aux-layers, are the feature maps), a keras-hub "
        "preset such as resnet_18_imagenet (tapped at its pyramid outputs), a "
        "local preset directory, or keras.applications.<Name>",
    )
    group.add_argument(
        "--classifier-outputs",
        choices=OUTPUT_TYPES,
        default=None,
        help="what the classifier returns: logits, or probabilities (it ends "
        "in a softmax; they are turned into log-probabilities, so scores are "
        "the classifier's own), or multilabel_logits (independent classes, a "
        "sigmoid each: every present class is explained in training). "
        "Default: read from a keras-hub preset, else logits; a warning says "
        "if the outputs look like the other kind",
    )
    group.add_argument(
        "--aux-layers",
        type=comma_separated,
        default=None,
        help="comma-separated layer names of the auxiliary network to tap "
        "(default: its outputs, or a preset's pyramid outputs)",
    )


def add_data_options(group):
    """`--data`, `--split`, `--image-size`, `--max-images` of training."""
    group.add_argument(
        "--data",
        required=True,
        help="training images: a folder (searched recursively for "
        f"{', '.join(IMAGE_EXTENSIONS)}) or a TensorFlow Datasets name such as "
        "imagenette. Grayscale and RGBA are converted to RGB; as in the paper, "
        "the shorter side is resized to 8/7 of --image-size, then a random "
        "square of --image-size is cropped and flipped",
    )
    group.add_argument(
        "--split",
        default="train",
        help="the TensorFlow Datasets split (default: %(default)s)",
    )
    add_image_size(
        group,
        "of the training images (default: the classifier's input size, else "
        "the recipe's, else 224)",
    )
    group.add_argument(
        "--max-images",
        type=positive_int,
        default=None,
        help="train on at most this many images per epoch, drawn anew from the "
        "shuffled data each epoch (default: all)",
    )
