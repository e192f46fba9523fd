import numpy as np
from keras import ops

from keras_ptame.baselines.classifier_explainer import ClassifierExplainer
from keras_ptame.models.classifier_scores import probabilities
from keras_ptame.utils.validation import check_positive_int


class RISE(ClassifierExplainer):
    """RISE (Petsiuk et al. 2018): saliency from randomly masked copies.

    Each mask is a random binary grid of `grid_size` x `grid_size` cells
    (each cell kept with probability `keep_probability`), upsampled
    bilinearly and shifted by a random sub-cell offset. The map of class t is
    the average of the masks weighted by t's score (softmax, or sigmoid for
    a multi-label `Backbone`) on the image multiplied by them, min-max
    normalised to [0, 1]. Model-agnostic, like P-TAME, but it costs
    `num_masks` classifier passes per image.

    Masks are drawn from `seed`, the same for every image and every call,
    and made `batch_size` at a time: memory holds only `batch_size` masks and
    masked images at once, whatever `num_masks` is.

    Args:
        classifier: a `Backbone`, or a Keras model or callable on raw pixels
            returning logits.
        num_masks: int. Masked copies per image. Defaults to `4000`.
        grid_size: int. Cells per side of the random grid. Defaults to `7`.
        keep_probability: float. Chance that a cell is kept. Defaults to
            `0.5`.
        batch_size: int. Masked images per classifier call. Defaults to
            `100`.
        preprocessor: optional Keras layer or callable applied to the raw
            pixels before `classifier`. Defaults to `None`.
        seed: int. Seed of the masks. Defaults to `0`.

    Examples:
    ```python
    import keras, numpy as np
    from keras_ptame.baselines import RISE

    classifier = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    images = np.random.randint(0, 256, (2, 16, 16, 3)).astype("uint8")
    maps = RISE(classifier, num_masks=200, batch_size=50).explain(images)
    ```
    """

    def __init__(
        self,
        classifier,
        num_masks=4000,
        grid_size=7,
        keep_probability=0.5,
        batch_size=100,
        preprocessor=None,
        seed=0,
    ):
        num_masks = check_positive_int("num_masks", num_masks)
        grid_size = check_positive_int("grid_size", grid_size)
        if not 0 < keep_probability <= 1:
            raise ValueError(
                "`keep_probability` must lie in (0, 1]. "
                f"Received: keep_probability={keep_probability}"
            )
        super().__init__(classifier, preprocessor, batch_size)
        self.num_masks = int(num_masks)
        self.grid_size = int(grid_size)
        self.keep_probability = float(keep_probability)
        self.seed = seed

    def masks(self, start, stop, size):
        """Masks number `start` to `stop - 1`, float32 `(stop - start, H, W)`.

        Mask `k` depends only on `seed` and `k`, so maps do not depend on
        `batch_size`.
        """
        height, width = size
        cell_h = -(-height // self.grid_size)
        cell_w = -(-width // self.grid_size)
        grids, shifts = [], []
        for index in range(start, stop):
            rng = np.random.default_rng([self.seed, index])
            grids.append(
                rng.random((self.grid_size, self.grid_size)) < self.keep_probability
            )
            shifts.append((rng.integers(0, cell_h), rng.integers(0, cell_w)))
        # Upsampling one cell more than needed leaves room for the shift.
        big = ops.convert_to_numpy(
            ops.image.resize(
                ops.convert_to_tensor(np.stack(grids)[..., None].astype("float32")),
                ((self.grid_size + 1) * cell_h, (self.grid_size + 1) * cell_w),
                interpolation="bilinear",
            )
        )[..., 0]
        return np.stack(
            [
                big[k, dy : dy + height, dx : dx + width]
                for k, (dy, dx) in enumerate(shifts)
            ]
        ).astype(np.float32)

    def saliency(self, images, classes):
        count, height, width = images.shape[:3]
        total = np.zeros((count, height, width), dtype=np.float64)
        for start in range(0, self.num_masks, self.batch_size):
            masks = self.masks(
                start, min(start + self.batch_size, self.num_masks), (height, width)
            )
            for index in range(count):
                masked = images[index][None] * masks[..., None]
                probs = probabilities(self.backbone, masked, len(masks))
                total[index] += np.tensordot(probs[:, classes[index]], masks, axes=1)
        return total / (self.num_masks * self.keep_probability)
