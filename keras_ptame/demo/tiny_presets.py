"""Tiny random keras-hub classifiers saved as local preset folders.

Offline stand-ins for `resnet_50_imagenet`, `resnet_18_imagenet` and
`vit_base_patch16_224_imagenet`: the same classes and the same loading path
(`from_preset` on a folder), a few thousand random weights, small images. The
notebooks' offline mode and the tests load them where the hub is out of reach.
"""

import os

import keras

from keras_ptame.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD

TINY_IMAGE_SIZE = 32
TINY_NUM_CLASSES = 5


def save_tiny_resnet(
    directory, image_size=TINY_IMAGE_SIZE, num_classes=TINY_NUM_CLASSES, seed=0
):
    """Saves a tiny random `ResNetImageClassifier` to `directory`.

    Four stages of one basic block each (features at 1/4 to 1/32 of the
    input, `P2`..`P5`, as the hub's ResNets), ImageNet's normalisation.

    Args:
        directory: str or path. The preset folder to write.
        image_size: int. Height and width of the preprocessor's images.
            Defaults to `TINY_IMAGE_SIZE`.
        num_classes: int. Classes of the classifier. Defaults to
            `TINY_NUM_CLASSES`.
        seed: int. Seed of the random weights. Defaults to `0`.

    Returns:
        The folder, as a str, for `from_preset`.

    Examples:
    ```python
    import tempfile

    import keras_ptame as kp
    from keras_ptame.demo import save_tiny_resnet

    path = save_tiny_resnet(tempfile.mkdtemp())
    backbone = kp.Backbone.from_preset(path)
    extractor = kp.AuxiliaryExtractor.from_preset(path)
    ```
    """
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ResNetBackbone(
        # keras-hub requires 64 filters in the first stage of basic blocks.
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
    )
    classifier = imagenet_resnet_classifier(backbone, image_size, num_classes)
    classifier.save_to_preset(str(directory))
    return str(directory)


def imagenet_resnet_classifier(backbone, image_size, num_classes):
    """A keras-hub `ResNetImageClassifier` over `backbone`, with ImageNet's
    normalisation of `image_size` x `image_size` raw pixels."""
    import keras_hub

    converter = keras_hub.layers.ResNetImageConverter(
        image_size=(image_size, image_size),
        scale=[1 / (255 * s) for s in IMAGENET_STD],
        offset=[-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)],
    )
    return keras_hub.models.ResNetImageClassifier(
        backbone=backbone,
        num_classes=num_classes,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(converter),
    )


def save_tiny_vit(
    directory, image_size=TINY_IMAGE_SIZE, num_classes=TINY_NUM_CLASSES, seed=0
):
    """Saves a tiny random `ViTImageClassifier` to `directory`.

    One transformer layer on patches of 8 pixels (token outputs), pixels
    scaled to [-1, 1].

    Args:
        directory: str or path. The preset folder to write.
        image_size: int. Height and width of the images. Defaults to
            `TINY_IMAGE_SIZE`.
        num_classes: int. Classes of the classifier. Defaults to
            `TINY_NUM_CLASSES`.
        seed: int. Seed of the random weights. Defaults to `0`.

    Returns:
        The folder, as a str, for `from_preset`.
    """
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 3),
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
    )
    converter = keras_hub.layers.ViTImageConverter(
        image_size=(image_size, image_size), scale=1 / 127.5, offset=-1.0
    )
    classifier = keras_hub.models.ViTImageClassifier(
        backbone=backbone,
        num_classes=num_classes,
        preprocessor=keras_hub.models.ViTImageClassifierPreprocessor(converter),
    )
    classifier.save_to_preset(str(directory))
    return str(directory)


def save_tiny_presets(
    directory, image_size=TINY_IMAGE_SIZE, num_classes=TINY_NUM_CLASSES
):
    """Saves a classifier and an auxiliary network, tiny ResNets, to `directory`.

    The offline stand-ins for the pair the notebooks explain
    (`resnet_50_imagenet` through `resnet_18_imagenet`): two
    `save_tiny_resnet` presets with different random weights, in the
    sub-folders `classifier` and `auxiliary`.

    Args:
        directory: str or path. The folder to write them into.
        image_size: int. Height and width of the images. Defaults to
            `TINY_IMAGE_SIZE`.
        num_classes: int. Classes of both. Defaults to `TINY_NUM_CLASSES`.

    Returns:
        `(classifier, auxiliary)`: the two preset folders, as str.
    """
    return tuple(
        save_tiny_resnet(
            os.path.join(directory, name), image_size, num_classes, seed=seed
        )
        for seed, name in enumerate(("classifier", "auxiliary"))
    )
