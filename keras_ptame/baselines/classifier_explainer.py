import numpy as np

from keras_ptame.models.classifier_scores import (
    as_backbone,
    check_batch_size,
    explained_classes,
)
from keras_ptame.utils.maps import normalize_maps
from keras_ptame.utils.validation import check_images


class ClassifierExplainer:
    """Base of the baselines that query the classifier (RISE, gradients).

    Subclasses call `__init__` (or set `self.backbone`, a `Backbone`, and
    `self.batch_size` themselves) and implement `saliency(images, classes)`;
    `explain` checks the images, picks the explained classes and normalises
    the maps.

    Args:
        classifier: a `Backbone`, or a Keras model or callable on raw pixels
            returning logits.
        preprocessor: optional Keras layer or callable applied to the raw
            pixels before `classifier`. Defaults to `None`.
        batch_size: int. Images per classifier pass. Defaults to `32`.
    """

    def __init__(self, classifier, preprocessor=None, batch_size=32):
        self.batch_size = check_batch_size(batch_size)
        self.backbone = as_backbone(classifier, preprocessor)

    def explain(self, images, classes=None):
        """One map per image, for its predicted class or `classes`.

        Args:
            images: array `(N, H, W, 3)` of raw pixels in [0, 255].
            classes: optional int array `(N,)`. Defaults to `None` (the
                classifier's prediction).

        Returns:
            numpy float32 `(N, H, W)` maps in [0, 1].
        """
        images = check_images(images).astype(np.float32)
        classes = explained_classes(self.backbone, images, classes, self.batch_size)
        return normalize_maps(self.saliency(images, classes))

    def saliency(self, images, classes):
        """Unnormalised maps `(N, H, W)` of float32 `images` for int `classes`."""
        raise NotImplementedError

    def batches(self, images, classes):
        """`(images, classes)` in slices of `batch_size`."""
        for start in range(0, len(images), self.batch_size):
            stop = start + self.batch_size
            yield images[start:stop], classes[start:stop]
