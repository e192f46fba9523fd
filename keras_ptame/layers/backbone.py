import warnings

import keras
import numpy as np
from keras import ops

from keras_ptame.layers import pretrained_networks
from keras_ptame.layers.frozen_network import FrozenNetwork
from keras_ptame.utils.validation import check_float, check_positive_int

# What a classifier may return: logits or probabilities of one class among
# all (softmax), or logits of independent classes (sigmoid, multi-label).
OUTPUT_TYPES = ("logits", "probabilities", "multilabel_logits")
# A multi-label classifier's class is present where its sigmoid exceeds this.
LABEL_THRESHOLD = 0.5
# Present classes explained per image in training: a fixed number, so that the
# compiled step has static shapes (fewer present classes are padded).
MAX_LABELS = 4


@keras.saving.register_keras_serializable(package="keras_ptame")
class Backbone(FrozenNetwork):
    """The classifier being explained: raw pixels in, logits out. Always frozen.

    P-TAME never opens the classifier up: it only calls it, on the raw images
    and on masked copies of them, and needs it to be differentiable with
    respect to its input while the explainer trains. The classifier is always
    called with `training=False` and its weights never change.

    Args:
        classifier: a Keras model or layer (or any callable on tensors of the
            active backend) mapping preprocessed images `(B, H, W, 3)` to
            `(B, num_classes)` scores.
        preprocessor: optional Keras layer or callable applied to the raw
            pixels (float, [0, 255]) before `classifier`, e.g. a keras-hub
            `ImageConverter` or `keras.layers.Rescaling(1 / 255)`. Masking
            happens before it, in pixel space. Defaults to `None` (the
            classifier takes raw pixels).
        output_type: str. `"logits"` if the classifier returns logits,
            `"probabilities"` if it returns softmax probabilities (e.g. it
            ends in a softmax), which are converted with a log, so that the
            explainer's scores are the classifier's own probabilities and its
            loss sees logits. The first build warns when the outputs look like
            the other kind. `"multilabel_logits"` if it returns logits of
            independent classes (a sigmoid each, several classes per image):
            scores are sigmoids, and the explainer trains on every present
            class (see `present_classes`). Defaults to `"logits"`.
        label_threshold: float in [0, 1]. With `"multilabel_logits"`, a class
            is present where its sigmoid exceeds it. Defaults to `0.5`.
        max_labels: int. With `"multilabel_logits"`, at most this many
            present classes per image (the highest-scoring) are explained in
            training. Defaults to `4`.
        **kwargs: Standard layer arguments.

    Call arguments:
        images: `(B, H, W, 3)` raw pixels, float in [0, 255] or uint8.

    Examples:
    ```python
    import keras, numpy as np
    import keras_ptame as kp

    classifier = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(5),
    ])
    backbone = kp.Backbone(classifier, preprocessor=keras.layers.Rescaling(1 / 255))
    logits = backbone(np.zeros((2, 32, 32, 3), "uint8"))   # (2, 5)
    ```
    """

    nested_objects = ("classifier", "preprocessor")

    def __init__(
        self,
        classifier,
        preprocessor=None,
        output_type="logits",
        label_threshold=LABEL_THRESHOLD,
        max_labels=MAX_LABELS,
        **kwargs,
    ):
        super().__init__(preprocessor=preprocessor, **kwargs)
        if not callable(classifier):
            raise ValueError(
                "`classifier` must be a Keras model, layer or callable. "
                f"Received: classifier={classifier!r}"
            )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(
                f"`output_type` must be one of {OUTPUT_TYPES}. Received: output_type={output_type!r}"
            )
        self.classifier = classifier
        self.output_type = output_type
        self.label_threshold = check_float(
            "label_threshold", label_threshold, minimum=0, maximum=1
        )
        self.max_labels = check_positive_int("max_labels", max_labels)
        self._outputs_checked = False
        self.freeze(classifier)

    @property
    def num_classes(self):
        """The classifier's number of outputs, if it can be read without a call."""
        shape = getattr(self.classifier, "output_shape", None)
        if isinstance(shape, tuple) and len(shape) == 2:
            return shape[-1]
        return None

    @property
    def network(self):
        return self.classifier

    def call(self, images):
        scores = self.run_network(images)
        if isinstance(scores, dict):
            raise ValueError(
                "The classifier must return one tensor of scores (B, num_classes). "
                f"Received: a dict with keys {sorted(scores)}"
            )
        scores = ops.cast(scores, "float32")
        if self.output_type == "probabilities":
            scores = ops.log(ops.maximum(scores, 1e-12))
        return scores

    @property
    def multilabel(self):
        """Whether the classes are independent (sigmoid scores)."""
        return self.output_type == "multilabel_logits"

    def probabilities(self, logits):
        """The classifier's class scores from `call`'s logits `(B, C)`.

        Softmax probabilities, or independent sigmoids for a multi-label
        classifier: the score of an explained class, wherever it is read.
        """
        logits = ops.cast(logits, "float32")
        if self.multilabel:
            return ops.sigmoid(logits)
        return ops.softmax(logits, axis=-1)

    def present_classes(self, logits):
        """The classes a multi-label classifier finds in each image.

        The `max_labels` highest-scoring classes, weighted 1 where their
        sigmoid exceeds `label_threshold` and 0 otherwise (padding), except
        the top class, always weighted 1: an image where no class is present
        explains its most likely one.

        Args:
            logits: `(B, C)` logits, as `call` returns them.

        Returns:
            A tuple `(classes, weights)`: int32 `(B, L)` and float32 `(B, L)`,
            `L = min(max_labels, C)`.
        """
        logits = ops.cast(logits, "float32")
        labels = min(self.max_labels, int(logits.shape[-1]))
        values, classes = ops.top_k(logits, labels)
        present = ops.cast(ops.sigmoid(values) > self.label_threshold, "float32")
        top = ops.one_hot(ops.zeros(ops.shape(values)[:1], "int32"), labels)
        return ops.cast(classes, "int32"), ops.maximum(present, top)

    def check_outputs(self, size, channels=3):
        """Warns (once) when the classifier's outputs contradict `output_type`.

        Run on the host on two noise images, at the explainer's first build:
        rows of values in [0, 1] that sum to 1 are probabilities. Read as
        logits, a softmax of probabilities flattens the scores (a probability
        of 0.94 reported as 0.46) and the loss trains on the wrong targets.
        Multi-label outputs are not checked: independent sigmoids may sum to
        anything, 1 included.

        Args:
            size: `(height, width)` of the images the classifier takes.
            channels: int. Their channel count. Defaults to `3`.
        """
        if self._outputs_checked or self.multilabel:
            return
        self._outputs_checked = True
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 255, (2, *size, channels)).astype("float32")
        try:
            scores = self.run_network(images)
            scores = np.asarray(ops.convert_to_numpy(ops.cast(scores, "float32")))
        except Exception:
            # Only a warning depends on it: a network that cannot run
            # eagerly here fails with its own error at its first real call.
            return
        probabilities = looks_like_probabilities(scores)
        if self.output_type == "logits" and probabilities:
            warnings.warn(
                "The classifier's outputs look like probabilities (each row in "
                "[0, 1], summing to 1: does it end in a softmax?), but they are "
                "read as logits. Declare them: Backbone(classifier, "
                "output_type='probabilities') (`ptame train "
                "--classifier-outputs probabilities`), or remove the softmax.",
                stacklevel=2,
            )
        elif self.output_type == "probabilities" and not probabilities:
            warnings.warn(
                "The classifier was declared to return probabilities, but its "
                "outputs are not rows in [0, 1] summing to 1: if they are "
                "logits, declare output_type='logits'.",
                stacklevel=2,
            )

    def get_config(self):
        config = super().get_config()
        config["output_type"] = self.output_type
        config["label_threshold"] = self.label_threshold
        config["max_labels"] = self.max_labels
        return config

    # === Presets (keras_ptame.layers.pretrained_networks) ===

    @classmethod
    def from_preset(cls, preset, image_size=None, load_weights=True, **kwargs):
        """Builds the classifier from a keras-hub preset or `keras.applications`.

        The classifier comes with its own preprocessing, so raw pixels go in:
        a keras-hub preset's `ImageConverter`, or a `keras.applications`
        model's `preprocess_input`.

        Args:
            preset: str. A keras-hub `ImageClassifier` preset
                (`"resnet_50_imagenet"`, `"vgg_16_imagenet"`,
                `"vit_base_patch16_224_imagenet"`, a `kaggle://` or `hf://`
                handle, or a local directory saved with `save_to_preset`), or
                `"keras.applications.<Name>"` (e.g.
                `"keras.applications.ResNet50"`).
            image_size: optional int or `(height, width)`. For a preset, the
                size its image converter resizes to (defaults to the
                preset's); for `keras.applications`, the input size (defaults
                to 224).
            load_weights: bool. Whether to load the pretrained weights (they
                are downloaded on first use). Defaults to `True`.
            **kwargs: passed to `Backbone` (`name`, `dtype`, `preprocessor`
                to replace the preset's own, ...).

        Examples:
        ```python
        import keras_ptame as kp

        backbone = kp.Backbone.from_preset("resnet_50_imagenet")
        backbone = kp.Backbone.from_preset("keras.applications.ResNet50")
        backbone = kp.Backbone.from_preset("./my_local_preset")
        ```
        """
        if pretrained_networks.is_application(preset):
            classifier, preprocessor = pretrained_networks.load_application(
                preset,
                weights="imagenet" if load_weights else None,
                image_size=image_size or 224,
            )
            output_type = "logits"
        else:
            classifier, preprocessor, output_type = pretrained_networks.load_classifier(
                preset, image_size=image_size, load_weights=load_weights
            )
        kwargs.setdefault("preprocessor", preprocessor)
        kwargs.setdefault("output_type", output_type)
        return cls(classifier, **kwargs)


def looks_like_probabilities(scores, tolerance=1e-3):
    """Whether every row of `scores` `(B, C)` is in [0, 1] and sums to 1."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0 or not np.all(np.isfinite(scores)):
        return False
    in_range = np.all(scores >= -tolerance) and np.all(scores <= 1 + tolerance)
    return bool(in_range and np.allclose(scores.sum(-1), 1.0, atol=tolerance))
