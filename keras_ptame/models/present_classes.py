"""Training on every class a multi-label classifier finds in an image.

A softmax classifier predicts one class per image, and P-TAME explains it.
A multi-label classifier (independent sigmoid outputs: a dog *and* a cat)
finds several, and each present class's map must keep that class on its own:
every image is masked once per present class (`Backbone.present_classes`:
at most `max_labels`, a fixed number, so that the compiled step keeps static
shapes, padded with a weight of 0), and the loss
(`PerturbationLoss.terms(..., multilabel=True)`) keeps each class's sigmoid
score over the weighted (image, class) pairs.
"""

from keras import ops

from keras_ptame.models.explanation import evidence


class PresentClasses:
    """`PTAME`'s training pass over present classes, and its `kept` and `empty`.

    A mixin of `PTAME`, which gives `backbone`, `extractor`, `decoder`,
    `apply_mask`, `perturbation_loss` and `evidence_threshold`.
    """

    def perturb_present(self, images, logits, training=False):
        """`perturb` for a multi-label `Backbone`: one row per (image, class) pair.

        Args:
            images: `(B, H, W, 3)` float32 raw pixels.
            logits: `(B, C)`, the classifier's logits on `images`.
            training: bool. Passed to the decoder (its batch normalisation).

        Returns:
            A dict: `logits` `(B, C)`; `classes` and `weights` `(B * L,)`, pair
            `b * L + l` being image `b`'s `l`-th present class (weight 0:
            padding); `maps` `(B, h, w, B * L)` sigmoid maps of every pair's
            class on every image; `own_maps` `(B * L, h, w, 1)` each pair's
            map on its image; `masked_logits` `(B * L, C)` on the images
            masked by them (and `deleted_logits` with the deletion term).
        """
        classes, weights = self.backbone.present_classes(logits)
        labels = int(classes.shape[-1])
        pairs = ops.reshape(classes, (-1,))
        features = self.extractor(images)
        maps = ops.sigmoid(
            ops.cast(
                self.decoder(features, classes=pairs, training=training), "float32"
            )
        )
        # Image b's own maps are columns b * L .. b * L + L - 1.
        batch = ops.shape(maps)[0]
        columns = ops.arange(batch)[:, None] * labels + ops.arange(labels)[None]
        own = ops.take_along_axis(
            maps, ops.reshape(columns, (-1, 1, 1, labels)), axis=-1
        )
        height, width = maps.shape[1], maps.shape[2]
        own = ops.reshape(ops.transpose(own, (0, 3, 1, 2)), (-1, height, width, 1))
        repeated = ops.repeat(images, labels, axis=0)
        outputs = {
            "logits": logits,
            "classes": pairs,
            "weights": ops.reshape(weights, (-1,)),
            "maps": maps,
            "own_maps": own,
            "masked_logits": self.backbone(self.apply_mask(repeated, own)),
        }
        if self.perturbation_loss.deletion_coeff:
            deleted = self.apply_mask(repeated, 1.0 - own)
            outputs["deleted_logits"] = self.backbone(deleted)
        return outputs

    def kept_and_empty(self, y_pred):
        """The `kept` and `empty` metrics of a training pass's outputs.

        `kept`: the share of masked images whose explained class is kept (the
        prediction unchanged; for a multi-label classifier, the class still
        present). `empty`: the share of their maps that found no evidence.
        Multi-label shares are over the present (image, class) pairs.
        """
        classes = ops.cast(y_pred["classes"], "int32")
        logits = ops.cast(y_pred["masked_logits"], "float32")
        empty = ops.cast(
            ops.less(evidence(y_pred["own_maps"]), self.evidence_threshold), "float32"
        )
        if not self.backbone.multilabel:
            kept = ops.cast(ops.argmax(logits, axis=-1), "int32")
            kept = ops.mean(ops.cast(ops.equal(kept, classes), "float32"))
            return kept, ops.mean(empty)
        weights = ops.cast(y_pred["weights"], "float32")
        count = ops.maximum(ops.sum(weights), 1.0)
        scores = ops.take_along_axis(logits, classes[:, None], axis=-1)[:, 0]
        present = ops.sigmoid(scores) > self.backbone.label_threshold
        kept = ops.sum(weights * ops.cast(present, "float32")) / count
        return kept, ops.sum(weights * empty[:, 0]) / count
