import keras
from keras import ops

from keras_ptame.layers.auxiliary_extractor import (
    AuxiliaryExtractor,
    deserialize_extractor,
    serialize_extractor,
)
from keras_ptame.layers.backbone import Backbone
from keras_ptame.layers.mask_decoder import (
    LEGACY_OPTIONS,
    MaskDecoder,
    check_feature_shapes,
    numerics_of,
)
from keras_ptame.losses.default import default_loss
from keras_ptame.losses.perturbation_loss import PerturbationLoss
from keras_ptame.models.diverged import StopOnNaN
from keras_ptame.models.explanation import (
    EVIDENCE_THRESHOLD,
    Explaining,
    classes_to_explain,
    finish_maps,
    in_classes,
)
from keras_ptame.models.fills import apply_fill, check_fill, is_random
from keras_ptame.models.image_size import ImageSized
from keras_ptame.models.present_classes import PresentClasses
from keras_ptame.models.pretrained import Pretrained
from keras_ptame.models.removal_check import RemovalChecking
from keras_ptame.models.tf_data import UntunedArrays
from keras_ptame.optimizers.default import default_optimizer
from keras_ptame.utils.validation import (
    check_image_shape,
    check_num_classes,
    check_training_data,
    unpack_inputs,
)


@keras.saving.register_keras_serializable(package="keras_ptame")
class PTAME(
    Explaining,
    RemovalChecking,
    PresentClasses,
    ImageSized,
    Pretrained,
    UntunedArrays,
    keras.Model,
):
    """P-TAME: a trained explainer for an image classifier.

    Composes the frozen `Backbone` (the classifier explained), the frozen
    `AuxiliaryExtractor` and the trainable `MaskDecoder`. `fit` trains the
    decoder with the `PerturbationLoss`: the map of the classifier's own
    predicted class, multiplied into the image, must keep that prediction,
    while the maps stay small and smooth. Dataset labels are ignored.

    After training, `explain` gives one map per image in one forward pass of
    the classifier (for its prediction) and one of the auxiliary network.

    Args:
        backbone: `Backbone` (or a Keras classifier, wrapped in one).
        extractor: `AuxiliaryExtractor` (or a Keras model whose outputs are
            feature maps, wrapped in one).
        num_classes: int. Number of classes of the classifier. Defaults to
            `None` (read from the classifier's output).
        decoder_options: optional dict of `MaskDecoder` numerics
            (`batch_norm_epsilon`, `batch_norm_momentum`, `upsampling`).
            Defaults to `None` (the decoder's defaults, the authors').
        fill: str or tuple. What replaces the masked-out pixels in
            training: `"black"` (zero, the paper's choice), `"mean"` (each
            image's mean colour), `"blur"` (a Gaussian-blurred copy),
            `"noise"` (uniform noise drawn every step), `"mixture"` (each
            image draws one of these four at every step), or a tuple of
            fills to draw from. Defaults to `"black"`.
        evidence_threshold: float. A map whose sigmoid map spans less than
            this (peak minus floor) found no evidence: `explain` returns it
            flat (all zeros) and flags it. Defaults to `0.1`.
        misranked_classes: the classes whose maps `explain_outputs` flags
            `misranked` (see there). Defaults to `()`; `fit` sets it from its
            removal check.
        **kwargs: Standard model arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: raw images `(B, H, W, 3)`, or a dict with `"images"` and
            optional `"classes"` `(B,)` (or `(B, K)`: `K` per image).
        training: bool. In training the call returns the loss inputs
            (`logits`, `classes`, `maps`, `masked_logits`); otherwise the
            explanation: `classes`, `scores` (softmax probability of the
            explained class), `maps` `(B, H, W)` in [0, 1], `evidence`
            `(B,)`, `flat` `(B,)` and `misranked` `(B,)` (see
            `explain_outputs`).

    Examples:
    ```python
    import keras, numpy as np
    import keras_ptame as kp

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="s1")(x)
    x = keras.layers.Conv2D(16, 3, 2, padding="same", activation="relu", name="s2")(x)
    logits = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    classifier = keras.Model(inputs, logits)

    explainer = kp.PTAME(
        kp.Backbone(classifier),
        kp.AuxiliaryExtractor(classifier, layer_names=["s1", "s2"]),
    )
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-3, amsgrad=True))
    images = np.random.randint(0, 256, (16, 32, 32, 3)).astype("uint8")
    explainer.fit(images, epochs=1, batch_size=8, verbose=0)
    maps = explainer.explain(images[:2])   # (2, 32, 32) in [0, 1]
    ```
    """

    def __init__(
        self,
        backbone,
        extractor,
        num_classes=None,
        fill="black",
        decoder_options=None,
        evidence_threshold=EVIDENCE_THRESHOLD,
        misranked_classes=(),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(backbone, Backbone):
            backbone = Backbone(backbone, name="backbone")
        if not isinstance(extractor, AuxiliaryExtractor):
            extractor = AuxiliaryExtractor(extractor, name="extractor")
        fill = check_fill(fill)
        check_num_classes(num_classes, backbone.num_classes)
        self.backbone = backbone
        self.extractor = extractor
        self.num_classes = int(num_classes or backbone.num_classes or 0) or None
        self.fill = fill
        # A random fill draws from the explainer's own seed, so compiled
        # steps draw anew (deterministic fills add no variable).
        self.fill_seed = keras.random.SeedGenerator() if is_random(fill) else None
        self.decoder_options = dict(decoder_options or {})
        self.evidence_threshold = float(evidence_threshold)
        self.misranked_classes = misranked_classes
        self.decoder = None
        self._built_size = None
        # `predict` compiles these options of `explain` in.
        self._explain_options = ("input", "minmax", True, None, "float32")
        # Compiled `predict` steps of other options (`explain_options.use_options`).
        self._compiled_explains = {}
        # Image sizes whose black fill image `warn_about_fill` has probed.
        self._fill_probed = set()
        if self.num_classes is not None:
            self.decoder = self._make_decoder()
        self.perturbation_loss = default_loss()
        # Metric objects set as attributes join `self.metrics` and the logs.
        self.ce_tracker = keras.metrics.Mean(name="ce")
        self.area_tracker = keras.metrics.Mean(name="area")
        self.smoothness_tracker = keras.metrics.Mean(name="smoothness")
        self.kept_tracker = keras.metrics.Mean(name="kept")
        # The share of training maps that found no evidence (flat).
        self.empty_tracker = keras.metrics.Mean(name="empty")
        self.init_training_state()

    # === Build ===

    def build(self, input_shape):
        input_shape = tuple(unpack_inputs(input_shape)[0])
        check_image_shape(input_shape)
        images = keras.KerasTensor(input_shape, dtype="float32")
        self.backbone.build(input_shape)
        logits = self.backbone.compute_output_spec(images)
        if len(logits.shape) != 2:
            raise ValueError(
                "The classifier must return scores of shape (batch, num_classes). "
                f"Received: output shape {logits.shape}"
            )
        check_num_classes(self.num_classes, logits.shape[-1])
        if None not in input_shape[1:3]:
            self.backbone.check_outputs(input_shape[1:3], channels=input_shape[-1] or 3)
        if self.decoder is None:
            self.num_classes = int(logits.shape[-1])
            self.decoder = self._make_decoder()
        self._built_size = None if None in input_shape[1:3] else input_shape[1:3]
        # The channel count `ensure_built` holds every later batch to.
        self._built_channels = input_shape[-1]
        self.extractor.build(input_shape)
        features = self.extractor.compute_output_spec(images)
        check_feature_shapes([tuple(f.shape) for f in features])
        self.decoder.build([tuple(f.shape) for f in features])
        self.built = True

    def _make_decoder(self):
        return MaskDecoder(
            self.num_classes,
            name="decoder",
            dtype=self.dtype_policy,
            **self.decoder_options,
        )

    # === Variables ===

    @property
    def trainable_weights(self):
        # Only the decoder learns. Stated here rather than left to each
        # variable's flag: a classifier loaded from a keras-hub preset under
        # TensorFlow can come back with variables flagged trainable.
        if not self.trainable or self.decoder is None:
            return []
        return self.decoder.trainable_weights

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_weights(self):
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    @property
    def non_trainable_variables(self):
        trainable = {id(w) for w in self.trainable_weights}
        return [v for v in self.variables if id(v) not in trainable]

    # === Forward passes ===

    def call(self, inputs, training=False):
        images, classes = unpack_inputs(inputs)
        if training:
            return self.perturb(images, training=True)
        return self.explain_batch(images, classes, *self._explain_options)

    def perturb(self, images, training=False):
        """The training forward pass: returns the inputs of the loss.

        Returns a dict: `logits` `(B, C)` on the raw images, `classes` `(B,)`
        their argmax, `maps` `(B, h, w, B)` sigmoid maps of every class
        predicted in the batch, `own_maps` `(B, h, w, 1)` each image's map
        of its own class, `masked_logits` `(B, C)` on the images masked by
        it (and, with the loss's deletion term, `deleted_logits` on the
        images with their map's content removed). For a multi-label
        classifier, see `perturb_present`.
        """
        images = ops.cast(images, "float32")
        logits = self.backbone(images)
        if self.backbone.multilabel:
            return self.perturb_present(images, logits, training)
        classes = ops.cast(ops.argmax(logits, axis=-1), "int32")
        features = self.extractor(images)
        maps = ops.sigmoid(
            ops.cast(
                self.decoder(features, classes=classes, training=training), "float32"
            )
        )
        # Image b is masked by its own class's map, maps[b, :, :, b].
        own = ops.take_along_axis(
            maps, ops.reshape(ops.arange(ops.shape(maps)[0]), (-1, 1, 1, 1)), axis=-1
        )
        masked = self.apply_mask(images, own)
        outputs = {
            "logits": logits,
            "classes": classes,
            "maps": maps,
            "own_maps": own,
            "masked_logits": self.backbone(masked),
        }
        if self.perturbation_loss.deletion_coeff:
            # The deletion game of extremal perturbations (Fong et al. 2019).
            deleted = self.apply_mask(images, 1.0 - own)
            outputs["deleted_logits"] = self.backbone(deleted)
        return outputs

    def explain_batch(
        self,
        images,
        classes=None,
        resolution="input",
        normalize="minmax",
        zero_flat=True,
        top_k=None,
        dtype="float32",
    ):
        """The inference forward pass on a batch of tensors (see `explain`).

        `classes` `(B,)`, or neither `classes` nor `top_k`: one class per
        image, outputs `(B, ...)`; `classes` `(B, K)` or `top_k=K`: `K`
        classes per image, outputs `(B, K, ...)`, still one pass of each
        network (the decoder's fuser draws `K` maps from the same features).
        """
        images = ops.cast(images, "float32")
        logits = self.backbone(images)
        classes, single = classes_to_explain(logits, classes, top_k)
        probabilities = self.backbone.probabilities(logits)
        scores = ops.take_along_axis(probabilities, classes, axis=-1)
        features = self.extractor(images)
        raw = self.decoder(features, classes=classes, training=False)
        outputs = finish_maps(
            raw,
            images,
            self.evidence_threshold,
            self.decoder.normalize,
            resolution,
            normalize,
            zero_flat,
            dtype,
        )
        misranked = in_classes(classes, self.misranked_classes)
        outputs["misranked"] = ops.logical_and(
            misranked, ops.logical_not(outputs["flat"])
        )
        outputs = {"classes": classes, "scores": scores, **outputs}
        if single:
            outputs = {key: value[:, 0] for key, value in outputs.items()}
        return outputs

    def apply_mask(self, images, mask):
        """Keeps `images` where `mask` `(B, h, w, 1)` is 1, the fill where 0."""
        return apply_fill(images, mask, self.fill, seed=self.fill_seed)

    # === Training ===

    def compile(self, optimizer=None, loss=None, **kwargs):
        """Configures training. `loss` defaults to `default_loss()`.

        Args:
            optimizer: a Keras optimizer. Defaults to Keras' `AdamW(1e-3,
                amsgrad=True, epsilon=1e-8)` held constant (see
                `keras_ptame.optimizers.default`; the authors' whole optimiser
                is a recipe's, `kp.recipes.one_cycle_adamw`).
            loss: a `PerturbationLoss`. Defaults to `PerturbationLoss(
                smoothness_coeff=0.001)` (see `keras_ptame.losses.default`;
                `PerturbationLoss()` is the authors' class default).
            **kwargs: passed to `keras.Model.compile` (`jit_compile`,
                `steps_per_execution`, ...).
        """
        if optimizer is None:
            optimizer = default_optimizer()
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        if loss is None:
            loss = default_loss()
        if not isinstance(loss, PerturbationLoss):
            raise ValueError(
                "`loss` must be a `keras_ptame.PerturbationLoss`. "
                f"Received: loss={loss!r}"
            )
        self.perturbation_loss = loss
        super().compile(optimizer=optimizer, **kwargs)
        self._compiled_explains = {}

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        # Labels (`y`) are ignored: the explained class is the prediction.
        if not isinstance(y_pred, dict) or "masked_logits" not in y_pred:
            # Validation passes come here with the inference outputs.
            y_pred = self.perturb(unpack_inputs(x)[0], training=False)
        terms = self.perturbation_loss.terms(
            y_pred["masked_logits"],
            y_pred["classes"],
            y_pred["maps"],
            y_pred.get("deleted_logits"),
            y_pred.get("weights"),
            self.backbone.multilabel,
        )
        kept, empty = self.kept_and_empty(y_pred)
        self.ce_tracker.update_state(terms["ce"])
        self.area_tracker.update_state(terms["area"])
        self.smoothness_tracker.update_state(terms["smoothness"])
        self.kept_tracker.update_state(kept)
        self.empty_tracker.update_state(empty)
        loss = terms["loss"]
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), "float32")
        if keras.config.backend() == "tensorflow":
            import tensorflow as tf

            # As Keras' own losses do: tf.distribute sums the replicas'
            # gradients, so each replica's loss is its share of the total.
            loss = loss / tf.distribute.get_strategy().num_replicas_in_sync
        return loss

    def fit(self, x=None, y=None, **kwargs):
        """Trains the decoder; see `keras.Model.fit`. Labels are ignored.

        `x` may be an array of images, a `tf.data.Dataset` (or other Keras
        data source) of images alone or of `(images, labels)`. The first
        batch is checked before training starts. After each epoch the maps
        of `removal_check=256` images are checked (see `RemovalChecking`).
        A NaN or Inf loss stops training with a `TrainingDiverged` error
        (see `keras_ptame.models.diverged.StopOnNaN`).
        """
        check_training_data(x, self.ensure_built)
        self.warn_about_fill(x)
        if not self.compiled:
            self.compile()
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if not any(isinstance(callback, StopOnNaN) for callback in callbacks):
            callbacks.append(StopOnNaN())
        return super().fit(x, y, callbacks=callbacks, **kwargs)

    # === Export ===

    def export(
        self,
        filepath,
        format="tf_saved_model",
        image_size=None,
        overwrite=False,
        verify=True,
        verbose=None,
        **kwargs,
    ):
        """Writes the explainer for serving, from any backend, checked
        against `explain` before it is moved into place.

        `format="tf_saved_model"`: a SavedModel for TF Serving (see
        `keras_ptame.export.export_saved_model` for its signatures);
        `"litert"`: a `.tflite` file of LiteRT's builtin operations
        (`export_litert`); `"onnx"`: a `.onnx` file (`export_onnx`); the last
        two converted from the SavedModel's graph. Other formats go to
        `keras.Model.export`.
        """
        self.warn_if_untrained()
        if format not in ("tf_saved_model", "litert", "onnx"):
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        # Imported here, as `keras.Model.export` imports Keras' export
        # module: the export package sits above the models and needs
        # TensorFlow, which the core itself never does.
        from keras_ptame.export import EXPORTERS

        return EXPORTERS[format](
            self,
            filepath,
            image_size=image_size,
            overwrite=overwrite,
            verify=verify,
            verbose=1 if verbose is None else int(verbose),
            **kwargs,
        )

    # === Config ===

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "extractor": serialize_extractor(self.extractor, self.backbone.classifier),
            "num_classes": self.num_classes,
            "fill": self.fill,
            "evidence_threshold": self.evidence_threshold,
            "misranked_classes": list(self.misranked_classes),
            "decoder_options": numerics_of(self.decoder)
            if self.decoder is not None
            else self.decoder_options,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Explainers saved before the decoder's numerics were options keep
        # the numerics they were trained with.
        config.setdefault("decoder_options", LEGACY_OPTIONS)
        for key in ("backbone", "dtype"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        if isinstance(config.get("extractor"), dict):
            config["extractor"] = deserialize_extractor(
                config["extractor"], config["backbone"].classifier
            )
        return cls(**config)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config:
            config["loss"] = keras.saving.serialize_keras_object(self.perturbation_loss)
            config["backend"] = keras.config.backend()
        return config

    def compile_from_config(self, config):
        # `jit_compile` means XLA on one backend, torch.compile on another:
        # kept only by the backend that saved it, else that backend's default.
        config = dict(config)
        same = config.pop("backend", None) == keras.config.backend()
        config = keras.saving.deserialize_keras_object(config)
        self.compile(
            optimizer=config.get("optimizer"),
            loss=config.get("loss"),
            jit_compile=config.get("jit_compile", "auto") if same else "auto",
        )
        if self.built:
            self.optimizer.build(self.trainable_variables)
