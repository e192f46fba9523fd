import keras
import numpy as np
from keras import ops

from keras_ptame.layers.auxiliary_extractor import AuxiliaryExtractor
from keras_ptame.layers.backbone import Backbone
from keras_ptame.layers.mask_decoder import MaskDecoder, check_feature_shapes
from keras_ptame.losses.perturbation_loss import PerturbationLoss
from keras_ptame.validation import check_classes, check_image_shape, check_images

BASELINES = ("black", "mean", "blur")
_SHARED_CLASSIFIER = "__backbone_classifier__"


@keras.saving.register_keras_serializable(package="keras_ptame")
class PTAME(keras.Model):
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
        baseline: str. What replaces the masked-out pixels in training:
            `"black"` (zero, the paper's choice), `"mean"` (each image's
            mean colour) or `"blur"` (a Gaussian-blurred copy). Defaults to
            `"black"`.
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
        self, backbone, extractor, num_classes=None, baseline="black", **kwargs
    ):
        super().__init__(**kwargs)
        if not isinstance(backbone, Backbone):
            backbone = Backbone(backbone, name="backbone")
        if not isinstance(extractor, AuxiliaryExtractor):
            extractor = AuxiliaryExtractor(extractor, name="extractor")
        if baseline not in BASELINES:
            raise ValueError(
                f"`baseline` must be one of {BASELINES}. Received: baseline={baseline!r}"
            )
        if num_classes is not None and (
            not isinstance(num_classes, (int, np.integer)) or num_classes <= 0
        ):
            raise ValueError(
                "`num_classes` must be a positive integer. "
                f"Received: num_classes={num_classes!r}"
            )
        _check_num_classes(num_classes, backbone.num_classes)
        self.backbone = backbone
        self.extractor = extractor
        self.num_classes = int(num_classes or backbone.num_classes or 0) or None
        self.baseline = baseline
        self.decoder = None
        if self.num_classes is not None:
            self.decoder = MaskDecoder(
                self.num_classes, name="decoder", dtype=self.dtype_policy
            )
        self.perturbation_loss = PerturbationLoss()
        # Metric objects set as attributes join `self.metrics` and the logs.
        self.ce_tracker = keras.metrics.Mean(name="ce")
        self.area_tracker = keras.metrics.Mean(name="area")
        self.smoothness_tracker = keras.metrics.Mean(name="smoothness")
        self.kept_tracker = keras.metrics.Mean(name="kept")

    # === Build ===

    def build(self, input_shape):
        input_shape = tuple(_unpack(input_shape)[0])
        check_image_shape(input_shape)
        images = keras.KerasTensor(input_shape, dtype="float32")
        self.backbone.build(input_shape)
        logits = self.backbone.compute_output_spec(images)
        if len(logits.shape) != 2:
            raise ValueError(
                "The classifier must return scores of shape (batch, num_classes). "
                f"Received: output shape {logits.shape}"
            )
        _check_num_classes(self.num_classes, logits.shape[-1])
        if self.decoder is None:
            self.num_classes = int(logits.shape[-1])
            self.decoder = MaskDecoder(
                self.num_classes, name="decoder", dtype=self.dtype_policy
            )
        self.extractor.build(input_shape)
        features = self.extractor.compute_output_spec(images)
        check_feature_shapes([tuple(f.shape) for f in features])
        self.decoder.build([tuple(f.shape) for f in features])
        self.built = True

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
        images, classes = _unpack(inputs)
        if training:
            return self.perturb(images, training=True)
        return self.explain_batch(images, classes)

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

    def explain_batch(self, images, classes=None):
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
        # Normalised after upsampling, so that every map spans [0, 1] exactly.
        maps = self.decoder.normalize(_resize_like(ops.cast(raw, "float32"), images))
        maps = maps[..., 0]
        return {"classes": classes, "scores": scores, "maps": maps}

    def apply_mask(self, images, mask):
        """Keeps `images` where `mask` `(B, h, w, 1)` is 1, the baseline where 0."""
        mask = _resize_like(mask, images)
        if self.baseline == "black":
            return images * mask
        if self.baseline == "mean":
            fill = ops.mean(images, axis=(1, 2), keepdims=True)
        else:
            fill = _gaussian_blur(images)
        return images * mask + fill * (1.0 - mask)

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
            y_pred = self.perturb(_unpack(x)[0], training=False)
        terms = self.perturbation_loss.terms(
            y_pred["masked_logits"], y_pred["classes"], y_pred["maps"]
        )
        kept = ops.mean(
            ops.cast(
                ops.equal(
                    ops.cast(ops.argmax(y_pred["masked_logits"], axis=-1), "int32"),
                    y_pred["classes"],
                ),
                "float32",
            )
        )
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
        self._check_training_data(x, kwargs.get("batch_size"))
        if not self.compiled:
            self.compile()
        return super().fit(x, y, **kwargs)

    # === Explanations ===

    def explain(self, images, classes=None, batch_size=32, verbose=0):
        """One saliency map per image, for its predicted class or `classes`.

        Args:
            images: array `(N, H, W, 3)` of raw pixels, uint8 or float in
                [0, 255].
            classes: optional int array `(N,)`: the class to explain for each
                image. Defaults to `None` (the classifier's prediction).
            batch_size: int. Images per forward pass. Defaults to `32`.
            verbose: Keras verbosity of the progress bar. Defaults to `0`.

        Returns:
            numpy float32 `(N, H, W)` maps in [0, 1].
        """
        return self.explain_outputs(images, classes, batch_size, verbose)["maps"]

    def explain_outputs(self, images, classes=None, batch_size=32, verbose=0):
        """Like `explain`, but returns a dict of numpy arrays: `classes`,
        `scores` (softmax probability of the explained class) and `maps`."""
        images = check_images(images)
        self._ensure_built(images.shape)
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
        from keras_ptame.export import export_saved_model

        return export_saved_model(
            self,
            filepath,
            image_size=image_size,
            overwrite=overwrite,
            verify=verify,
            verbose=1 if verbose is None else int(verbose),
            **kwargs,
        )

    # === Helpers ===

    def _ensure_built(self, shape):
        """Builds on first use and checks the image size the networks accept.

        Checked here, on the host, because a size error raised inside a
        compiled `predict` or `fit` is opaque, and on JAX leaves the model's
        variables detached.
        """
        size = tuple(shape)[1:3]
        for part in (self.backbone.classifier, self.extractor.feature_model):
            expected = _fixed_input_size(part)
            if expected is not None and expected != size:
                raise ValueError(
                    f"`images` must be {expected[0]}x{expected[1]} pixels, the size "
                    f"`{part.name}` was built for. Received: images of size "
                    f"{size[0]}x{size[1]}. Resize them first."
                )
        if not self.built:
            self.build((None, *tuple(shape)[1:]))

    def _check_training_data(self, x, batch_size):
        if x is None:
            raise ValueError("`fit` needs images. Received: x=None")
        x = _unpack(x)[0]
        if hasattr(x, "element_spec"):  # a tf.data.Dataset
            self._check_dataset(x)
            return
        if isinstance(x, (np.ndarray, list)) or hasattr(x, "__array__"):
            images = check_images(x)
            self._ensure_built(images.shape)

    def _check_dataset(self, dataset):
        import tensorflow as tf

        if int(dataset.cardinality()) == 0:
            raise ValueError("The training dataset is empty. Received: 0 batches")
        first = next(iter(dataset.take(1)), None)
        if first is None:
            raise ValueError("The training dataset is empty. Received: no batch")
        # images, (images, labels), or either with a dict of "images" inside.
        element = first[0] if isinstance(first, (tuple, list)) else first
        images = _unpack(element)[0]
        if not isinstance(images, tf.Tensor):
            raise ValueError(
                "The dataset must yield images, (images, labels) or a dict with an "
                f"'images' key. Received: an element {type(first).__name__}"
            )
        if images.shape.rank == 3:
            raise ValueError(
                "The dataset must yield batches of images (batch, height, width, 3). "
                f"Received: single images of shape {tuple(images.shape)}; call "
                "`.batch(...)` on the dataset first."
            )
        batch = check_images(images.numpy(), name="dataset images")
        self._ensure_built(batch.shape)

    # === Config ===

    def get_config(self):
        extractor = keras.saving.serialize_keras_object(self.extractor)
        if self.extractor.model is self.backbone.classifier:
            # The extractor taps the classifier itself: save it once, and
            # share it again on loading so that its weights load once.
            extractor["config"]["model"] = _SHARED_CLASSIFIER
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "extractor": extractor,
            "num_classes": self.num_classes,
            "baseline": self.baseline,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "dtype"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        extractor = config.get("extractor")
        if isinstance(extractor, dict):
            if extractor["config"].get("model") == _SHARED_CLASSIFIER:
                inner = dict(extractor["config"])
                inner["model"] = config["backbone"].classifier
                if inner.get("preprocessor") is not None:
                    inner["preprocessor"] = keras.saving.deserialize_keras_object(
                        inner["preprocessor"]
                    )
                config["extractor"] = AuxiliaryExtractor(**inner)
            else:
                config["extractor"] = keras.saving.deserialize_keras_object(extractor)
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


def _unpack(inputs):
    if isinstance(inputs, dict):
        images = inputs.get("images", inputs.get("image"))
        return images, inputs.get("classes")
    return inputs, None


def _fixed_input_size(part):
    """The (height, width) a Keras model only accepts, or None if any size."""
    shape = getattr(part, "input_shape", None) if hasattr(part, "inputs") else None
    if not isinstance(shape, tuple) or len(shape) != 4 or None in shape[1:3]:
        return None
    return tuple(shape[1:3])


def _check_num_classes(expected, actual):
    if expected is not None and actual is not None and int(expected) != int(actual):
        raise ValueError(
            "`num_classes` disagrees with the classifier's output. "
            f"Received: num_classes={expected}, classifier outputs {actual} scores"
        )


def _resize_like(maps, images):
    """Bilinearly resizes `maps` `(B, h, w, K)` to the images' height and width."""
    size = tuple(images.shape[1:3])
    if None in size:
        size = tuple(ops.shape(images)[1:3])
    if tuple(maps.shape[1:3]) == size:
        return maps
    return ops.image.resize(maps, size, interpolation="bilinear")


def _gaussian_blur(images, sigma=5.0):
    radius = int(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype("float32")
    channels = images.shape[-1]
    rows = ops.convert_to_tensor(
        np.tile(taps[:, None, None, None], (1, 1, channels, 1))
    )
    cols = ops.convert_to_tensor(
        np.tile(taps[None, :, None, None], (1, 1, channels, 1))
    )

    def blur(x):
        return ops.depthwise_conv(
            ops.depthwise_conv(x, rows, padding="same"), cols, padding="same"
        )

    # Dividing by the blurred ones undoes the darkening by zero padding.
    return blur(images) / blur(ops.ones_like(images))
