"""Input pipelines for training and evaluating explainers, on every backend.

`tf.data` pipelines with the paper's transforms (flips and any further
augmentation by Keras' own preprocessing layers):

- training: resize the shorter side to 256, random crop 224, horizontal flip;
- evaluation: resize the shorter side to 256, centre crop 224.

They yield raw pixels (`uint8`, `(B, 224, 224, 3)`; each network applies its
own preprocessing inside the explainer), shuffled (training), batched and
prefetched, with labels where the dataset has them (the explainer ignores
them: it explains the classifier's own prediction). `explainer.fit` takes
them as they are under `KERAS_BACKEND=tensorflow`, `jax` or `torch`. Under
JAX and PyTorch, TensorFlow only feeds data: the GPU is hidden from it (see
`import_tensorflow`), so that it does not reserve the accelerator's memory.

```python
import keras_ptame as kp

train = kp.data.imagenette("train", batch_size=32)
validation = kp.data.imagenette("validation", batch_size=32)
explainer.fit(train, epochs=1)
```

`imagenet2012` must be downloaded by hand (its licence requires it); see
`imagenet`. TensorFlow and tensorflow-datasets are needed here, not in the
explainer: they are imported by the functions that use them.
"""

import os

import keras

from keras_ptame.utils.images import IMAGE_EXTENSIONS, images_in_folder, read_image
from keras_ptame.utils.install import install_hint
from keras_ptame.utils.tf_runtime import import_tensorflow
from keras_ptame.utils.validation import check_positive_int

IMAGE_SIZE = 224
RESIZE = 256
# `IMAGE_EXTENSIONS` and `import_tensorflow` stay importable from here (the
# notebooks call `kp.data.import_tensorflow()`); both are defined in `utils`.
__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_SIZE",
    "RESIZE",
    "SHUFFLE_BUFFER_BYTES",
    "image_folder",
    "imagenet",
    "imagenette",
    "import_tensorflow",
    "shuffle_buffer_size",
    "tfds_dataset",
]
# The shuffle buffer holds decoded uint8 crops. Colab's standard runtime has
# 12.7 GB of host memory, of which Python, TensorFlow, the backend, the
# models and tf.data's prefetch and file readers take several GB; half a GiB
# (3,566 crops of 224x224) leaves room for all of them. The buffer also fills
# before the first step (each image decoded and resized), so a larger one
# only lengthens the warm-up, and tfds already shuffles the order of its
# files (`shuffle_files`), so a few thousand images mix well.
SHUFFLE_BUFFER_BYTES = 512 * 2**20


def shuffle_buffer_size(image_size, budget=SHUFFLE_BUFFER_BYTES):
    """How many uint8 `image_size` x `image_size` crops fit in `budget` bytes."""
    return max(1, int(budget) // (3 * int(image_size) ** 2))


def imagenet(split="train", batch_size=32, **kwargs):
    """ImageNet (ILSVRC 2012) from tensorflow-datasets, as in the paper.

    tensorflow-datasets cannot download ImageNet: place
    `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar` (from
    https://image-net.org) in `<data_dir>/downloads/manual/` first; the
    first call then extracts and prepares them (hours, ~150 GB).

    Args:
        split: str. A tfds split: `"train"`, `"validation"`,
            `"validation[:2000]"`, ... Training transforms are used for
            splits starting with `"train"`. Defaults to `"train"`.
        batch_size: int. Defaults to `32`.
        **kwargs: see `tfds_dataset`.

    Returns:
        A batched `tf.data.Dataset` of `(images, labels)`.
    """
    return tfds_dataset("imagenet2012", split=split, batch_size=batch_size, **kwargs)


def imagenette(split="train", batch_size=32, config="320px-v2", **kwargs):
    """Imagenette (10 easy ImageNet classes) from tensorflow-datasets.

    A small stand-in for ImageNet that downloads by itself. Its labels are
    0..9, not ImageNet indices; the explainer ignores labels. The archives
    tfds downloads, by config (their byte counts in tfds 4.9's
    `tensorflow_datasets/datasets/imagenette/checksums.tsv`): `"320px-v2"`
    342 MB (`imagenette2-320.tgz`, shorter side 320 pixels, enough for the
    paper's resize to 256), `"160px-v2"` 99 MB, `"full-size-v2"` 1.56 GB;
    tfds then writes the prepared images next to them, once.

    Args:
        split: str. `"train"` or `"validation"` (or a slice of one).
            Defaults to `"train"`.
        batch_size: int. Defaults to `32`.
        config: str. The tfds config: `"320px-v2"`, `"160px-v2"` or
            `"full-size-v2"`. Defaults to `"320px-v2"`.
        **kwargs: see `tfds_dataset`.

    Returns:
        A batched `tf.data.Dataset` of `(images, labels)`.
    """
    return tfds_dataset(
        f"imagenette/{config}", split=split, batch_size=batch_size, **kwargs
    )


def tfds_dataset(
    name,
    split="train",
    batch_size=32,
    training=None,
    image_size=IMAGE_SIZE,
    resize=RESIZE,
    shuffle=None,
    shuffle_buffer=None,
    augmentation=None,
    data_dir=None,
    download=True,
    seed=None,
    steps=None,
):
    """Any tensorflow-datasets image classification dataset, with the paper's transforms.

    Args:
        name: str. The tfds name, with an optional config
            (`"imagenette/320px-v2"`).
        split: str. The tfds split. Defaults to `"train"`.
        batch_size: int. Defaults to `32`.
        training: optional bool. Training transforms (random crop and flip,
            shuffled, last partial batch dropped) or evaluation ones (centre
            crop, in order, every image). Defaults to `None` (training for
            splits starting with `"train"`).
        image_size: int. The side of the square crop. Defaults to `224`.
        resize: int. The shorter side is resized to this before cropping.
            Defaults to `256`.
        shuffle: optional bool. Defaults to `None` (`training`).
        shuffle_buffer: optional int. Images in the shuffle buffer (uint8
            crops). Defaults to `None`: as many as fit in
            `SHUFFLE_BUFFER_BYTES` (512 MiB, 3,566 crops of 224x224).
        augmentation: optional Keras layer or list of layers applied to
            training batches after the flip, e.g.
            `keras.layers.RandAugment(value_range=(0, 255))`. Defaults to
            `None`.
        data_dir: optional str. Where tfds keeps its data. Defaults to
            `None` (`~/tensorflow_datasets`).
        download: bool. Whether to download and prepare the dataset if it is
            missing. Defaults to `True`.
        seed: optional int. Seeds the shuffling and the random transforms.
            Defaults to `None`.
        steps: optional int. Only the first `steps` batches (a short run);
            the shuffle buffer then holds at most the `steps * batch_size`
            images they draw from, so that it does not decode images the
            run never sees before its first step. Defaults to `None` (every
            batch).

    Returns:
        A batched, prefetched `tf.data.Dataset` of `(images, labels)`:
        `uint8` `(B, image_size, image_size, 3)` and `int64` `(B,)`.
    """
    tf = import_tensorflow()
    tfds = _import_tfds()
    training = split.startswith("train") if training is None else training
    shuffle = training if shuffle is None else shuffle
    _check_sizes(batch_size, image_size, resize)
    if steps is not None:
        steps = check_positive_int("steps", steps)
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        _download_and_prepare(builder, name)
    try:
        dataset = builder.as_dataset(
            split=split,
            shuffle_files=shuffle,
            as_supervised=True,
            read_config=tfds.ReadConfig(shuffle_seed=seed),
        )
    except AssertionError as error:
        # tfds reports a dataset that was never prepared this way.
        raise _download_error(name, builder, error) from error
    transform = _image_transform(training, image_size, resize, seed)
    dataset = dataset.map(
        lambda image, label: (transform(image), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if shuffle:
        if shuffle_buffer is None:
            shuffle_buffer = shuffle_buffer_size(image_size)
        if steps is not None:
            shuffle_buffer = min(int(shuffle_buffer), steps * batch_size)
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    dataset = _batch_and_augment(dataset, batch_size, training, augmentation, seed)
    return dataset if steps is None else dataset.take(steps)


def image_folder(
    directory,
    batch_size=32,
    training=False,
    image_size=IMAGE_SIZE,
    resize=RESIZE,
    shuffle=None,
    augmentation=None,
    seed=None,
):
    """The images in a folder (searched recursively), with the paper's transforms.

    Each file is decoded by `keras_ptame.utils.images.read_image`, the reader of
    the command line: the pipeline trains on the pixels `ptame explain` would
    show the explainer, whatever the file's mode (grayscale, alpha, 16-bit).

    Args:
        directory: str. A folder of `.jpg`, `.jpeg`, `.png`, `.bmp` or
            `.gif` files, in any subfolders.
        batch_size: int. Defaults to `32`.
        training: bool. Training transforms (random crop and flip, shuffled,
            last partial batch dropped) or evaluation ones (centre crop, in
            file-name order, every image). Defaults to `False`.
        image_size, resize, shuffle, augmentation, seed: as in
            `tfds_dataset` (the file names are shuffled, all of them, before
            any image is decoded: no shuffle buffer).

    Returns:
        A batched, prefetched `tf.data.Dataset` of `uint8` images
        `(B, image_size, image_size, 3)` (no labels).
    """
    shuffle = training if shuffle is None else shuffle
    _check_sizes(batch_size, image_size, resize)
    paths = images_in_folder(directory)
    tf = import_tensorflow()
    transform = _image_transform(training, image_size, resize, seed)

    def load(path):
        # Pillow, on the host: its decode releases the GIL, so the parallel
        # map still decodes several files at once.
        image = tf.numpy_function(_read_file, [path], tf.uint8, stateful=False)
        image.set_shape((None, None, 3))
        return transform(image)

    dataset = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        # Shuffle paths, not decoded images: cheap, and the whole folder.
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return _batch_and_augment(dataset, batch_size, training, augmentation, seed)


# === Transforms ===


def _image_transform(training, image_size, resize, seed):
    """Resize the shorter side to `resize`, then crop `image_size` (one image).

    Images differ in size until cropped, and Keras' crop layers need a static
    size, so the crop uses `tf.image` here; the flip and any augmentation run
    on the batches, as Keras layers. The crop comes back as uint8, so that
    the shuffle buffer after it holds a quarter of the bytes of float32.
    """
    tf = import_tensorflow()

    def transform(image):
        image = tf.cast(image, tf.float32)
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.cast(resize, tf.float32) / tf.reduce_min(shape)
        size = tf.cast(tf.round(shape * scale), tf.int32)
        image = tf.image.resize(image, size, method="bilinear", antialias=True)
        if training:
            image = tf.image.random_crop(image, (image_size, image_size, 3), seed=seed)
        else:
            top = (size[0] - image_size) // 2
            left = (size[1] - image_size) // 2
            image = image[top : top + image_size, left : left + image_size]
        image.set_shape((image_size, image_size, 3))
        return _round_to_uint8_tensor(image)

    return transform


def _read_file(path):
    """The RGB uint8 pixels of the image file `path` (bytes), as `read_image`
    reads them."""
    return read_image(os.fsdecode(path))[0]


def _round_to_uint8_tensor(images):
    tf = import_tensorflow()
    return tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)


def _batch_and_augment(dataset, batch_size, training, augmentation, seed):
    """Batches (after any shuffle), flips and augments, then prefetches."""
    tf = import_tensorflow()
    # Training drops the last partial batch: fixed shapes (one compiled
    # step) and even splits across devices in data-parallel training.
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if training:
        layers = [keras.layers.RandomFlip("horizontal", seed=seed)]
        if augmentation is not None:
            layers.extend(
                augmentation
                if isinstance(augmentation, (list, tuple))
                else [augmentation]
            )

        def augment(images):
            images = tf.cast(images, tf.float32)
            for layer in layers:
                images = layer(images, training=True)
            return _round_to_uint8_tensor(images)

        def apply(*element):
            if len(element) == 1:
                return augment(element[0])
            return (augment(element[0]), *element[1:])

        dataset = dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


# === Helpers ===


def _check_sizes(batch_size, image_size, resize):
    for name, value in (
        ("batch_size", batch_size),
        ("image_size", image_size),
        ("resize", resize),
    ):
        check_positive_int(name, value)
    if resize < image_size:
        raise ValueError(
            "`resize` must be at least `image_size`: the crop is taken from the "
            f"resized image. Received: resize={resize}, image_size={image_size}"
        )


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "The dataset pipelines need tensorflow-datasets: "
            f"{install_hint('data')}. ({error})"
        ) from error
    return tfds


def _download_and_prepare(builder, name):
    try:
        builder.download_and_prepare()
    except ImportError as error:
        # Not a download failure: a package that tfds loads lazily.
        raise ImportError(
            f"tensorflow-datasets needs {error.name!r} to prepare {name!r}: "
            f"`pip install {error.name}`. ({error})"
        ) from error
    except Exception as error:
        raise _download_error(name, builder, error) from error


def _download_error(name, builder, error):
    if name.startswith("imagenet2012"):
        # tfds' default manual folder (under `data_dir` when one is given).
        manual = "<data_dir or ~/tensorflow_datasets>/downloads/manual/"
        return OSError(
            f"Could not prepare the tfds dataset {name!r}: {error}. ImageNet cannot "
            "be downloaded automatically: download ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar from https://image-net.org into {manual!r} "
            "and run again, or use `kp.data.imagenette(...)` or "
            "`kp.data.image_folder(...)` instead."
        )
    return OSError(
        f"Could not download or prepare the tfds dataset {name!r}: {error}. "
        "Downloading needs network access: run with network access (e.g. in "
        "Colab), or point `data_dir` at a folder where the dataset was prepared "
        "before, or use `kp.data.image_folder(...)` on local images."
    )
