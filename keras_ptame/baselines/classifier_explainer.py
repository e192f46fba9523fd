import numpy as np

from keras_ptame.metrics.scoring import explained_classes, normalize_maps
from keras_ptame.validation import check_images


class ClassifierExplainer:
    """Base of the baselines that query the classifier (RISE, gradients).

    Subclasses set `self.backbone` (a `Backbone`) and `self.batch_size`, and
    implement `saliency(images, classes)`; `explain` checks the images, picks
    the explained classes and normalises the maps.
    """

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
