import keras
import numpy as np
from keras import ops

from keras_ptame import export as saved_model_export
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
from keras_ptame.losses.perturbation_loss import PerturbationLoss
from keras_ptame.models.fills import FILLS, apply_fill, resize_like
from keras_ptame.models.pretrained import Pretrained
from keras_ptame.validation import (
    check_classes,
    check_image_shape,
    check_images,
    check_num_classes,
    check_training_data,
    unpack_inputs,
)

# Where `explain` returns maps: at the images' size, or the decoder's.
RESOLUTIONS = ("input", "decoder")
# The name the fill options had before 0.2; kept for code that imports it.
BASELINES = FILLS


@keras.saving.register_keras_serializable(package="keras_ptame")
class PTAME(Pretrained, keras.Model):
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
        fill: str. What replaces the masked-out pixels in training:
            `"black"` (zero, the paper's choice), `"mean"` (each image's
            mean colour) or `"blur"` (a Gaussian-blurred copy). Defaults to
            `"black"`. (Called `baseline` before; `baseline=` is still
            accepted.)
        **kwargs: Standard model arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: raw images `(B, H, W, 3)`, or a dict with `"images"` and
            optional `"classes"` `(B,)`.
        training: bool. In training the call returns the loss inputs
            (`logits`, `classes`, `maps`, `masked_logits`); otherwise the
            explanation: `classes`, `scores` (softmax probability of the
            explained class) and `maps` `(B, H, W)` in [0, 1].

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
        **kwargs,
    ):
        fill = kwargs.pop("baseline", fill)
        super().__init__(**kwargs)
        if not isinstance(backbone, Backbone):
            backbone = Backbone(backbone, name="backbone")
        if not isinstance(extractor, AuxiliaryExtractor):
            extractor = AuxiliaryExtractor(extractor, name="extractor")
        if fill not in FILLS:
            raise ValueError(f"`fill` must be one of {FILLS}. Received: fill={fill!r}")
        check_num_classes(num_classes, backbone.num_classes)
        self.backbone = backbone
        self.extractor = extractor
        self.num_classes = int(num_classes or backbone.num_classes or 0) or None
        self.fill = fill
        self.decoder_options = dict(decoder_options or {})
        self.decoder = None
        self._built_size = None
        self._resolution = "input"
        if self.num_classes is not None:
            self.decoder = self._make_decoder()
        self.perturbation_loss = PerturbationLoss()
        # Metric objects set as attributes join `self.metrics` and the logs.
        self.ce_tracker = keras.metrics.Mean(name="ce")
        self.area_tracker = keras.metrics.Mean(name="area")
        self.smoothness_tracker = keras.metrics.Mean(name="smoothness")
        self.kept_tracker = keras.metrics.Mean(name="kept")

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
        if self.decoder is None:
            self.num_classes = int(logits.shape[-1])
            self.decoder = self._make_decoder()
        self._built_size = None if None in input_shape[1:3] else input_shape[1:3]
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
        return self.explain_batch(images, classes, self._resolution)

    def perturb(self, images, training=False):
        """The training forward pass: returns the inputs of the loss.

        Returns a dict: `logits` `(B, C)` on the raw images, `classes` `(B,)`
        their argmax, `maps` `(B, h, w, B)` sigmoid maps of every class
        predicted in the batch, `masked_logits` `(B, C)` on the images masked
        by their own class's map.
        """
        images = ops.cast(images, "float32")
        logits = self.backbone(images)
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
        masked_logits = self.backbone(masked)
        return {
            "logits": logits,
            "classes": classes,
            "maps": maps,
            "masked_logits": masked_logits,
        }

    def explain_batch(self, images, classes=None, resolution="input"):
        """The inference forward pass on a batch of tensors (see `explain`)."""
        images = ops.cast(images, "float32")
        logits = self.backbone(images)
        if classes is None:
            classes = ops.argmax(logits, axis=-1)
        classes = ops.cast(classes, "int32")
        probabilities = ops.softmax(logits, axis=-1)
        scores = ops.take_along_axis(probabilities, classes[:, None], axis=-1)[:, 0]
        features = self.extractor(images)
        raw = self.decoder(features, classes=classes[:, None], training=False)
        raw = ops.cast(raw, "float32")
        if resolution == "input":
            # Normalised after upsampling, so that every map spans [0, 1] exactly.
            raw = resize_like(raw, images)
        maps = self.decoder.normalize(raw)[..., 0]
        return {"classes": classes, "scores": scores, "maps": maps}

    def apply_mask(self, images, mask):
        """Keeps `images` where `mask` `(B, h, w, 1)` is 1, the fill where 0."""
        return apply_fill(images, mask, self.fill)

    # === Training ===

    def compile(self, optimizer=None, loss=None, **kwargs):
        """Configures training. `loss` defaults to `PerturbationLoss()`.

        Args:
            optimizer: a Keras optimizer. Defaults to the paper's
                `AdamW(1e-4, amsgrad=True)`.
            loss: a `PerturbationLoss`. Defaults to `PerturbationLoss()`.
            **kwargs: passed to `keras.Model.compile` (`jit_compile`,
                `steps_per_execution`, ...).
        """
        if optimizer is None:
            optimizer = keras.optimizers.AdamW(learning_rate=1e-4, amsgrad=True)
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        if loss is None:
            loss = PerturbationLoss()
        if not isinstance(loss, PerturbationLoss):
            raise ValueError(
                "`loss` must be a `keras_ptame.PerturbationLoss`. "
                f"Received: loss={loss!r}"
            )
        self.perturbation_loss = loss
        super().compile(optimizer=optimizer, **kwargs)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        # Labels (`y`) are ignored: the explained class is the prediction.
        if not isinstance(y_pred, dict) or "masked_logits" not in y_pred:
            # Validation passes come here with the inference outputs.
            y_pred = self.perturb(unpack_inputs(x)[0], training=False)
        terms = self.perturbation_loss.terms(
            y_pred["masked_logits"], y_pred["classes"], y_pred["maps"]
        )
        # The share of masked images whose prediction is kept.
        kept = ops.cast(ops.argmax(y_pred["masked_logits"], axis=-1), "int32")
        kept = ops.mean(ops.cast(ops.equal(kept, y_pred["classes"]), "float32"))
        self.ce_tracker.update_state(terms["ce"])
        self.area_tracker.update_state(terms["area"])
        self.smoothness_tracker.update_state(terms["smoothness"])
        self.kept_tracker.update_state(kept)
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
        batch is checked before training starts.
        """
        check_training_data(x, self.ensure_built)
        if not self.compiled:
            self.compile()
        return super().fit(x, y, **kwargs)

    # === Explanations ===

    def explain(
        self, images, classes=None, batch_size=32, verbose=0, resolution="input"
    ):
        """One saliency map per image, for its predicted class or `classes`.

        Args:
            images: array `(N, H, W, 3)` of raw pixels, uint8 or float in
                [0, 255].
            classes: optional int array `(N,)`: the class to explain for each
                image. Defaults to `None` (the classifier's prediction).
            batch_size: int. Images per forward pass. Defaults to `32`.
            verbose: Keras verbosity of the progress bar. Defaults to `0`.
            resolution: str. `"input"`: maps at the images' size;
                `"decoder"`: at the decoder's (a quarter of the side with
                ResNet-18 features), min-max normalised there, a sixteenth of
                the data to copy off an accelerator. Defaults to `"input"`.

        Returns:
            numpy float32 `(N, H, W)` maps in [0, 1] (`(N, h, w)` at the
            decoder's resolution).
        """
        outputs = self.explain_outputs(images, classes, batch_size, verbose, resolution)
        return outputs["maps"]

    def explain_outputs(
        self, images, classes=None, batch_size=32, verbose=0, resolution="input"
    ):
        """Like `explain`, but returns a dict of numpy arrays: `classes`,
        `scores` (softmax probability of the explained class) and `maps`."""
        if resolution not in RESOLUTIONS:
            raise ValueError(
                f"`resolution` must be one of {RESOLUTIONS}. "
                f"Received: resolution={resolution!r}"
            )
        if resolution != self._resolution:
            # `predict` compiles the resolution in: have it compiled anew.
            self._resolution, self.predict_function = resolution, None
        images = check_images(images)
        self.ensure_built(images.shape)
        inputs = images
        if classes is not None:
            classes = check_classes(classes, len(images), self.num_classes)
            inputs = {"images": images, "classes": classes}
        outputs = self.predict(inputs, batch_size=batch_size, verbose=verbose)
        return {key: np.asarray(value) for key, value in outputs.items()}

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
        """Writes a TensorFlow SavedModel for TF Serving, from any backend.

        Signatures `serving_default` (images), `explain_classes` (images and
        classes) and `explain_encoded` (JPEG/PNG bytes); the outputs are
        checked against `explain` before the model is moved into place. See
        `keras_ptame.export.export_saved_model`. Other formats go to
        `keras.Model.export`.
        """
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        return saved_model_export.export_saved_model(
            self,
            filepath,
            image_size=image_size,
            overwrite=overwrite,
            verify=verify,
            verbose=1 if verbose is None else int(verbose),
            **kwargs,
        )

    @property
    def baseline(self):
        """The fill's name before 0.2; read `fill` instead."""
        return self.fill

    # === Image size ===

    @property
    def input_size(self):
        """`(height, width)` of the images this explainer takes, or `None`.

        The size its classifier or auxiliary network was built for, if one of
        them accepts only one size; otherwise the size the explainer itself
        was built (and trained) on; `None` if neither is known yet.
        """
        for part in (self.backbone, self.extractor):
            if part.fixed_input_size is not None:
                return part.fixed_input_size
        return self._built_size

    def ensure_built(self, shape):
        """Checks the image size the networks accept, and builds on first use.

        Args:
            shape: the shape of a batch of images, `(B, H, W, 3)`.

        Raises:
            ValueError: a network accepts only another size.

        Checked here, on the host, because a size error raised inside a
        compiled `predict` or `fit` is opaque, and on JAX leaves the model's
        variables detached. Under TensorFlow, a new size also starts new
        compiled functions: Keras would retrace the old ones with the size
        left open, and `keras.ops.image.resize` (the maps' upsampling) needs
        it known.
        """
        size = tuple(shape)[1:3]
        if keras.config.backend() == "tensorflow" and None not in size:
            if getattr(self, "_traced_size", size) != size:
                self.train_function = self.predict_function = None
                self.test_function = None
            self._traced_size = size
        # A network whose preprocessor resizes to its size takes any size.
        for part in (self.backbone, self.extractor):
            expected = part.fixed_input_size
            if expected is not None and expected != size:
                name = getattr(part.network, "name", part.name)
                raise ValueError(
                    f"`images` must be {expected[0]}x{expected[1]} pixels, the size "
                    f"`{name}` was built for. Received: images of size "
                    f"{size[0]}x{size[1]}. Resize them first."
                )
        if not self.built:
            self.build((None, *tuple(shape)[1:]))

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
        return config

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(
            optimizer=config.get("optimizer"),
            loss=config.get("loss"),
            jit_compile=config.get("jit_compile", "auto"),
        )
        if self.built:
            self.optimizer.build(self.trainable_variables)
