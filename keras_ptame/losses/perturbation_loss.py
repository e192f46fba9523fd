import keras
from keras import ops

from keras_ptame.utils.validation import check_float, check_positive_float


@keras.saving.register_keras_serializable(package="keras_ptame")
class PerturbationLoss:
    """The P-TAME training objective.

    `L = ce_coeff * CE(masked_logits, t) + area_coeff * A + smoothness_coeff * S
    + deletion_coeff * D`

    - `CE` is the cross-entropy of the classifier's logits on the masked image
      against `t`, the class it predicted on the unmasked image.
    - `A = mean((M + 0.0005) ** area_power)`, where `M` holds, for every image
      of the batch, its sigmoid maps of the classes predicted for all `B`
      images of the batch (`B x B` maps, repeats included), at the decoder's
      resolution: the other classes' maps are pushed down too.
    - `S = [sum |M[:, i+1, j] - M[:, i, j]|^p + sum |M[:, i, j+1] - M[:, i, j]|^p
      + border * sum(edge pixels^p)] / (p * B)` over the same `M`, with
      `p = smoothness_power`; the edge sum runs over the four edges (top and
      bottom rows, left and right columns), so the four corners count twice,
      as in the authors' code.
    - `D = mean(-log(1 - softmax(deleted_logits)[t]))`, off by default: the
      classifier's logits on the image with its map's content removed
      (`image * (1 - M) + fill * M`) must lose `t`, the "deletion game" of
      extremal perturbations (Fong et al., ICCV 2019). Without it, a class
      that the classifier predicts on the fill image itself is kept by an
      empty map; with it, the map must hold what the class needs.

    For a multi-label classifier (independent sigmoid outputs, `multilabel=True`
    in `terms`) each row of `masked_logits` is one (image, present class)
    pair, weighted 1 (or 0 for padding), and `CE` is the binary
    cross-entropy of keeping that class, `-log sigmoid(masked_logit_t)`: the
    classifier's own probability that `t` is present, where the softmax's
    `-log softmax_t` would make `t` compete with the image's other present
    classes. `A` and `S` run over the maps of the batch's pairs (the columns
    of `maps`, weighted alike), and `D` is `-log(1 - sigmoid(deleted_logit_t))`.
    All four are means over the weighted pairs.

    Args:
        ce_coeff: float. Weight of the cross-entropy term. Defaults to `1.5`.
        area_coeff: float. Weight of the area term. Defaults to `2.0`.
        smoothness_coeff: float. Weight of the smoothness term. Defaults to
            `0.01`.
        smoothness_power: float. `p` above. Defaults to `2.0`.
        border: float. Weight of the edge pixels in `S`. Defaults to `0.3`.
        area_power: float. Exponent of the area term. Defaults to `0.3`.
        deletion_coeff: float. Weight of the deletion term `D`; the model
            must then pass `deleted_logits` to `terms`. Defaults to `0.0`
            (off: the paper's objective).

    Examples:
    ```python
    import numpy as np
    import keras_ptame as kp

    loss = kp.PerturbationLoss(area_coeff=1.0)
    maps = np.random.rand(4, 8, 8, 4).astype("float32")     # (B, h, w, B)
    terms = loss.terms(np.random.randn(4, 10), np.array([1, 2, 1, 0]), maps)
    terms["loss"], terms["ce"], terms["area"], terms["smoothness"]
    ```
    """

    def __init__(
        self,
        ce_coeff=1.5,
        area_coeff=2.0,
        smoothness_coeff=0.01,
        smoothness_power=2.0,
        border=0.3,
        area_power=0.3,
        deletion_coeff=0.0,
    ):
        # Finite, or every loss and map would be NaN.
        self.ce_coeff = check_float("ce_coeff", ce_coeff, minimum=0)
        self.area_coeff = check_float("area_coeff", area_coeff, minimum=0)
        self.smoothness_coeff = check_float(
            "smoothness_coeff", smoothness_coeff, minimum=0
        )
        self.smoothness_power = check_positive_float(
            "smoothness_power", smoothness_power
        )
        self.border = check_float("border", border, minimum=0)
        self.area_power = check_positive_float("area_power", area_power)
        self.deletion_coeff = check_float("deletion_coeff", deletion_coeff, minimum=0)

    def terms(
        self,
        masked_logits,
        classes,
        maps,
        deleted_logits=None,
        weights=None,
        multilabel=False,
    ):
        """Returns a dict of scalar tensors: `loss`, `ce`, `area`, `smoothness`
        (and `deletion`, when `deletion_coeff > 0`).

        Args:
            masked_logits: `(B, num_classes)` classifier logits on the masked
                images.
            classes: `(B,)` int, the classes predicted on the unmasked images.
            maps: `(B, h, w, K)` sigmoid maps, `K` classes per image (in
                training `K = B`: the classes predicted in the batch).
            deleted_logits: optional `(B, num_classes)` classifier logits on
                the images with their own map's content removed. Required
                when `deletion_coeff > 0`, ignored otherwise.
            weights: with `multilabel`, float `(P,)`: 1 for each present
                (image, class) pair, 0 for padding. Defaults to `None`.
            multilabel: bool. Whether the classifier's outputs are
                independent sigmoids: `masked_logits` `(P, num_classes)` and
                `classes` `(P,)` are then pairs, and `maps` `(B, h, w, P)`
                their classes' maps. Defaults to `False`.
        """
        masked_logits = ops.cast(masked_logits, "float32")
        maps = ops.cast(maps, "float32")
        if multilabel:
            return self._multilabel_terms(
                masked_logits, classes, maps, deleted_logits, weights
            )
        ce = ops.mean(
            keras.losses.sparse_categorical_crossentropy(
                classes, masked_logits, from_logits=True
            )
        )
        area = ops.mean(ops.power(maps + 0.0005, self.area_power))
        smoothness = self.smoothness(maps)
        return self._combined(
            ce,
            area,
            smoothness,
            deleted_logits,
            lambda deleted: self.deletion(deleted, classes),
        )

    def __call__(
        self,
        masked_logits,
        classes,
        maps,
        deleted_logits=None,
        weights=None,
        multilabel=False,
    ):
        return self.terms(
            masked_logits, classes, maps, deleted_logits, weights, multilabel
        )["loss"]

    def _multilabel_terms(self, masked_logits, classes, maps, deleted_logits, weights):
        """`terms` for independent sigmoid outputs, over weighted pairs."""
        if weights is None:
            weights = ops.ones(ops.shape(classes), "float32")
        weights = ops.cast(weights, "float32")
        count = ops.maximum(ops.sum(weights), 1.0)
        kept = picked(masked_logits, classes)
        # -log sigmoid(z) = softplus(-z), exact for large |z|.
        ce = ops.sum(weights * ops.softplus(-kept)) / count
        # Weights are 0 or 1: a zeroed column adds nothing to `S`
        # (0 ** p = 0), and `A` averages over the weighted columns.
        columns = weights[None, None, None, :]
        powered = ops.power(maps + 0.0005, self.area_power)
        pixels = ops.cast(ops.prod(ops.shape(maps)[:3]), "float32")
        area = ops.sum(powered * columns) / (count * pixels)
        smoothness = self.smoothness(maps * columns)

        def deletion(deleted):
            # -log(1 - sigmoid(z)) = softplus(z).
            deleted = picked(ops.cast(deleted, "float32"), classes)
            return ops.sum(weights * ops.softplus(deleted)) / count

        return self._combined(ce, area, smoothness, deleted_logits, deletion)

    def _combined(self, ce, area, smoothness, deleted_logits, deletion):
        """The terms and their weighted sum; `deletion(deleted_logits)` gives
        the deletion term, computed only when `deletion_coeff` is on."""
        loss = (
            self.ce_coeff * ce
            + self.area_coeff * area
            + self.smoothness_coeff * smoothness
        )
        terms = {"loss": loss, "ce": ce, "area": area, "smoothness": smoothness}
        if self.deletion_coeff:
            if deleted_logits is None:
                raise ValueError(
                    "`deletion_coeff` > 0 needs `deleted_logits`, the logits on "
                    "the images with their map's content removed."
                )
            terms["deletion"] = deletion(deleted_logits)
            terms["loss"] = loss + self.deletion_coeff * terms["deletion"]
        return terms

    def deletion(self, deleted_logits, classes):
        """The deletion term `D`: `mean(-log(1 - p_t))` on the deleted images."""
        logits = ops.cast(deleted_logits, "float32")
        own = ops.one_hot(ops.cast(classes, "int32"), ops.shape(logits)[-1]) > 0
        # log(1 - p_t) = logsumexp over the other classes - logsumexp over all,
        # exact where p_t rounds to 1.
        others = ops.logsumexp(ops.where(own, -1e9, logits), axis=-1)
        return ops.mean(ops.logsumexp(logits, axis=-1) - others)

    def smoothness(self, maps):
        """The smoothness term `S` of `maps` `(B, h, w, K)`."""
        p = self.smoothness_power
        maps = ops.cast(maps, "float32")
        batch = ops.cast(ops.shape(maps)[0], "float32")
        vertical = ops.sum(ops.power(ops.abs(maps[:, 1:] - maps[:, :-1]), p))
        horizontal = ops.sum(ops.power(ops.abs(maps[:, :, 1:] - maps[:, :, :-1]), p))
        total = vertical + horizontal
        if self.border:
            # The four edges, each whole: the corners count twice (the
            # authors' sum of the four edge rows and columns).
            powered = ops.power(maps, p)
            edges = (
                ops.sum(powered[:, 0])
                + ops.sum(powered[:, -1])
                + ops.sum(powered[:, :, 0])
                + ops.sum(powered[:, :, -1])
            )
            total = total + self.border * edges
        return total / (p * batch)

    def get_config(self):
        return {
            "ce_coeff": self.ce_coeff,
            "area_coeff": self.area_coeff,
            "smoothness_coeff": self.smoothness_coeff,
            "smoothness_power": self.smoothness_power,
            "border": self.border,
            "area_power": self.area_power,
            "deletion_coeff": self.deletion_coeff,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"PerturbationLoss({args})"


def picked(logits, classes):
    """`logits[i, classes[i]]` of `(P, C)` logits and `(P,)` classes."""
    classes = ops.cast(classes, "int32")[:, None]
    return ops.take_along_axis(logits, classes, axis=-1)[:, 0]
