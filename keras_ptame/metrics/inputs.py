"""The inputs every classifier-based metric starts from."""

import numpy as np

from keras_ptame.models.classifier_scores import as_backbone, probabilities
from keras_ptame.utils.maps import check_maps
from keras_ptame.utils.validation import check_classes, check_images


def prepare(classifier, images, maps=None, classes=None, batch_size=32):
    """Checks a metric's inputs and scores the unperturbed images.

    Args:
        classifier: a `Backbone` or a Keras model on raw pixels returning
            logits.
        images: array `(N, H, W, 3)` of raw pixels in [0, 255].
        maps: optional array `(N, H, W)`, one map per image.
        classes: optional int array `(N,)`. Defaults to `None` (the
            classifier's prediction).
        batch_size: int. Images per classifier call. Defaults to `32`.

    Returns:
        A tuple `(backbone, images float32, maps float32 or None, classes
        int32, original scores (N,))`, the scores being the softmax
        probability of the explained class on the images.
    """
    backbone = as_backbone(classifier)
    images = check_images(images).astype(np.float32)
    if maps is not None:
        maps = check_maps(maps, images)
    probs = probabilities(backbone, images, batch_size)
    if classes is None:
        classes = probs.argmax(axis=-1)
    classes = check_classes(classes, len(images), probs.shape[-1])
    return backbone, images, maps, classes, probs[np.arange(len(probs)), classes]
