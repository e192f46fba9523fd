"""Tiny random keras-hub classifiers saved as local preset directories.

Stand-ins for `resnet_50_imagenet`, `vit_base_patch16_224_imagenet` and
`resnet_18_imagenet`: same classes and same loading path (`from_preset` on a
directory), a few thousand weights, 32x32 images.
"""

import keras

PRESET_IMAGE_SIZE = 32
PRESET_CLASSES = 5


def save_tiny_resnet(
    directory, num_classes=PRESET_CLASSES, size=PRESET_IMAGE_SIZE, seed=0
):
    """A four-stage ResNet classifier (P2..P5 at 1/4..1/32) saved to `directory`."""
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
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=(size, size),
        scale=[1 / (255 * s) for s in (0.229, 0.224, 0.225)],
        offset=[
            -m / s
            for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)
        ],
    )
    classifier = keras_hub.models.ResNetImageClassifier(
        backbone=backbone,
        num_classes=num_classes,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(converter),
    )
    classifier.save_to_preset(str(directory))
    return str(directory)


def save_tiny_vit(
    directory, num_classes=PRESET_CLASSES, size=PRESET_IMAGE_SIZE, seed=0
):
    """A one-layer ViT classifier (patch 8, token outputs) saved to `directory`."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(size, size, 3),
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
    )
    converter = keras_hub.layers.ViTImageConverter(
        image_size=(size, size), scale=1 / 127.5, offset=-1.0
    )
    classifier = keras_hub.models.ViTImageClassifier(
        backbone=backbone,
        num_classes=num_classes,
        preprocessor=keras_hub.models.ViTImageClassifierPreprocessor(converter),
    )
    classifier.save_to_preset(str(directory))
    return str(directory)
