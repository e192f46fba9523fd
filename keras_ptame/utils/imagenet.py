"""ImageNet: the statistics torchvision's classifiers are normalised with, and class names."""

# Per-channel (RGB) mean and standard deviation, on a [0, 1] pixel scale.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_class_names():
    """The 1,000 ImageNet class names, index = class (e.g. `"goldfish"` at 1).

    keras-hub's own decoding (`keras_hub.utils.imagenet_id_to_name`), whose
    names ship inside keras-hub: nothing is downloaded. For the titles of
    `keras_ptame.visualize.grid(..., class_names=...)` with a keras-hub
    ImageNet classifier.
    """
    import keras_hub

    return [keras_hub.utils.imagenet_id_to_name(index) for index in range(1000)]
