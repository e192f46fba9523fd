"""What `ptame train` and `ptame tune` share: the explainer built from the
command's networks, and the training pipeline of `kp.data`."""

import os

from keras_ptame import data
from keras_ptame.cli.errors import UsageError
from keras_ptame.cli.loading import load_auxiliary, load_backbone
from keras_ptame.models.ptame import PTAME
from keras_ptame.utils.images import images_in_folder, read_image

# The paper resizes the shorter side to 256 before cropping 224: the same
# ratio at any --image-size.
RESIZE_RATIO = data.RESIZE / data.IMAGE_SIZE


def prepare_training(args, recipe, batch_size):
    """The explainer, the training side, the pipeline and its batches per epoch.

    Args:
        args: the parsed options of `add_network_options` and
            `add_data_options`, and `--fill`.
        recipe: the `Recipe` of `--recipe`, or `None`.
        batch_size: int. Images per training step.

    Returns:
        `(explainer, size, batches, steps)`.
    """
    explainer = _build_explainer(args, recipe)
    size = _training_size(explainer, args.image_size, recipe)
    try:
        explainer.ensure_built((None, size, size, 3))
    except ValueError as error:
        raise UsageError(f"{error} (--image-size sets the training size)") from error
    batches = _training_data(args, size, batch_size)
    steps = _count_batches(batches, args.data, batch_size)
    return explainer, size, batches, steps


def _build_explainer(args, recipe):
    # A preset resizes to --image-size, else the recipe's size, else its own.
    preset_size = args.image_size or (recipe.image_size if recipe else None)
    backbone = load_backbone(
        args.classifier,
        image_size=args.image_size,
        output_type=args.classifier_outputs,
    )
    extractor = load_auxiliary(args.auxiliary, args.aux_layers, preset_size)
    return PTAME(backbone, extractor, fill=args.fill)


def _training_size(explainer, image_size, recipe):
    """The side of the training images: asked, else what the networks take."""
    if image_size is not None:
        return image_size
    size = explainer.input_size
    if size is None:
        return recipe.image_size if recipe else data.IMAGE_SIZE
    if size[0] != size[1]:
        raise UsageError(
            "Training takes square images, but the networks take "
            f"{size[0]}x{size[1]} pixels."
        )
    return int(size[0])


def logged_images(args, size, count=8):
    """The first `count` images of the data, as evaluation reads them (centre
    crop, in order): the images `--log-maps` explains after each epoch."""
    batches = _training_data(args, size, count, training=False)
    for images in batches.take(1):
        return images.numpy() if hasattr(images, "numpy") else images
    raise UsageError(f"No images to log in {args.data!r}.")


def _training_data(args, size, batch_size, training=True):
    """The training pipeline of `kp.data`, from a folder or a tfds name."""
    source = args.data
    options = dict(
        batch_size=batch_size,
        training=training,
        image_size=size,
        resize=max(size, round(size * RESIZE_RATIO)),
    )
    if os.path.isdir(source) and training:
        # Every file is decoded once first, so that a bad image stops the
        # run now, in one line, rather than an epoch into training.
        for path in images_in_folder(source):
            read_image(path)
    if os.path.isdir(source):
        batches = data.image_folder(source, **options)
    elif os.path.sep in source or os.path.splitext(source)[1]:
        raise FileNotFoundError(f"No such image folder: {source!r}")
    else:
        try:
            batches = data.tfds_dataset(source, split=args.split, **options)
        except ImportError as error:
            raise UsageError(
                f"{source!r} is not a folder; reading it as a TensorFlow Datasets "
                f"name needs tensorflow-datasets: {error}"
            ) from error
    if args.max_images and training:
        batches = batches.take(args.max_images // batch_size)
    return batches


def _count_batches(batches, source, batch_size):
    try:
        steps = len(batches)
    except TypeError:
        # A tf.data pipeline whose length TensorFlow cannot tell.
        raise UsageError(
            f"Cannot tell how many batches {source!r} holds; pass --max-images."
        ) from None
    if steps <= 0:
        raise UsageError(
            f"No training batches in {source!r}: training drops a last partial "
            f"batch, so it needs at least --batch-size ({batch_size}) images."
        )
    return steps
