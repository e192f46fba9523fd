import math

import keras
from keras import ops

from keras_ptame.utils.validation import check_option, check_positive_int

UPSAMPLING = ("doubling", "resize")
INITIALIZATION = ("torch", "keras")

# The numerics of decoders saved before these options existed: Keras'
# BatchNormalization defaults, one-step resizing and Keras' initialisers. A
# saved config without the options is read with these, so that it gives the
# same maps as before (the initialisation only matters before weights load;
# it is kept so that the config says how the decoder was made).
LEGACY_OPTIONS = {
    "batch_norm_epsilon": 1e-3,
    "batch_norm_momentum": 0.99,
    "upsampling": "resize",
    "initialization": "keras",
}


@keras.saving.register_keras_serializable(package="keras_ptame")
class MaskDecoder(keras.layers.Layer):
    """The trainable part of P-TAME: feature maps in, one raw map per class out.

    For each feature map `f_i` the decoder computes
    `g_i = ReLU(BN(Conv1x1_i(f_i)) + f_i)`, upsamples every `g_i` bilinearly to
    the spatial size of the finest map, concatenates them on the channel axis
    and applies a bias-free 1x1 "fuser" convolution to `num_classes`
    channels. The output is raw (pre-sigmoid) class maps at the finest
    resolution.

    The defaults are the authors' numerics (their PyTorch code); each one
    that may be changed is one argument.

    The batch normalisation defaults are the authors' (PyTorch's
    `BatchNorm2d`: epsilon `1e-5`, momentum `0.1`, i.e. Keras momentum `0.9`),
    so that imported weights give the same maps and the running statistics
    keep up over a one-epoch training run.

    Upsampling: the authors double each map repeatedly with bilinear
    interpolation (half-pixel centres, PyTorch's `align_corners=False`,
    `log2(finest / size)` times): `upsampling="doubling"`, the default.
    Where the scales do not allow doubling: a ratio that is not a power of
    two (e.g. 8 to 3) is doubled as far as it goes (3 to 6) and then resized
    in one step the rest of the way (6 to 8). Doubling needs the sizes known
    when the model is traced (fixed-size inputs; under TensorFlow a `tf.data`
    pipeline may leave them open: `tf.ensure_shape` fixes them); unknown
    sizes raise a `ValueError` that says so. `upsampling="resize"` (our
    choice, and what decoders saved before the option existed use) resizes
    in one step: the same as doubling for a ratio of 2, up to ~0.3 apart in
    raw maps for larger ratios.

    Initialisation: the authors' convolutions are PyTorch's `nn.Conv2d` with
    its default initialisation, kernels and biases uniform in
    `±1/sqrt(fan_in)` (`fan_in` = input channels for a 1x1 convolution):
    `initialization="torch"`, the default. `initialization="keras"` (our
    earlier default) uses Keras' Glorot-uniform kernels and zero biases.
    Batch normalisation starts at gamma 1 and beta 0 either way (PyTorch's
    and Keras' defaults agree).

    Because the fuser is linear and comes after the last nonlinearity, the maps
    of a subset of classes are the full maps sliced. Pass `classes` to compute
    only those: a 1-D integer tensor `(K,)` gives the same `K` classes for every
    image, a 2-D tensor `(B, K)` gives `K` classes per image.

    Args:
        num_classes: int. Number of classes of the explained classifier.
        epsilon: float. The least denominator of the per-map min-max
            normalisation used by `normalize`, `(x - min) / max(max - min,
            epsilon)` as in the authors' code. Defaults to `1e-8`.
        batch_norm_epsilon: float. Epsilon of the batch normalisation layers.
            Defaults to `1e-5` (the authors').
        batch_norm_momentum: float. Momentum of the batch normalisation
            layers' running statistics, in Keras' convention. Defaults to
            `0.9` (the authors' PyTorch momentum `0.1`).
        upsampling: str. `"doubling"` (repeated bilinear x2, the authors')
            or `"resize"` (one bilinear resize to the finest size). Defaults
            to `"doubling"`.
        initialization: str. `"torch"` (PyTorch's `Conv2d` defaults, the
            authors') or `"keras"` (Glorot-uniform kernels, zero biases).
            Defaults to `"torch"`.
        seed: optional int. Seed of the initial weights; each kernel and
            bias draws from its own seed derived from it. Defaults to `None`
            (drawn from Keras' global seed, `keras.utils.set_random_seed`).
        **kwargs: Standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        features: list of 4-D tensors `(B, h_i, w_i, c_i)`, channels-last.
        classes: optional integer tensor `(K,)` or `(B, K)`. Defaults to all
            classes.
        training: bool. Whether batch normalisation uses batch statistics.

    Examples:
    ```python
    import numpy as np
    import keras_ptame as kp

    decoder = kp.MaskDecoder(num_classes=10)
    features = [np.random.rand(2, 8, 8, 4), np.random.rand(2, 4, 4, 8)]
    maps = decoder(features)                              # (2, 8, 8, 10)
    some = decoder(features, classes=np.array([3, 7]))    # (2, 8, 8, 2)

    # One-step resizing and Keras' initialisers instead of the authors'.
    ours = kp.MaskDecoder(num_classes=10, upsampling="resize", initialization="keras")
    maps = ours(features)                                 # (2, 8, 8, 10)
    ```
    """

    def __init__(
        self,
        num_classes,
        epsilon=1e-8,
        batch_norm_epsilon=1e-5,
        batch_norm_momentum=0.9,
        upsampling="doubling",
        initialization="torch",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_classes = check_positive_int("num_classes", num_classes)
        check_option("upsampling", upsampling, UPSAMPLING)
        check_option("initialization", initialization, INITIALIZATION)
        self.num_classes = num_classes
        self.epsilon = epsilon
        self.batch_norm_epsilon = batch_norm_epsilon
        self.batch_norm_momentum = batch_norm_momentum
        self.upsampling = upsampling
        self.initialization = initialization
        self.seed = seed
        self.convs = []
        self.norms = []
        self.fuser = None

    def build(self, features_shape):
        features_shape = [tuple(shape) for shape in features_shape]
        check_feature_shapes(features_shape)
        total_channels = 0
        for index, shape in enumerate(features_shape):
            channels = shape[-1]
            conv = keras.layers.Conv2D(
                channels,
                1,
                use_bias=True,
                name=f"conv_{index}",
                dtype=self.dtype_policy,
                **self._initializers(channels, 2 * index),
            )
            conv.build(shape)
            norm = keras.layers.BatchNormalization(
                epsilon=self.batch_norm_epsilon,
                momentum=self.batch_norm_momentum,
                name=f"norm_{index}",
                dtype=self.dtype_policy,
            )
            norm.build(shape)
            self.convs.append(conv)
            self.norms.append(norm)
            total_channels += channels
        self.fuser = keras.layers.Conv2D(
            self.num_classes,
            1,
            use_bias=False,
            name="fuser",
            dtype=self.dtype_policy,
            kernel_initializer=self._initializers(
                total_channels, 2 * len(features_shape)
            )["kernel_initializer"],
        )
        self.fuser.build((None, None, None, total_channels))

    def _initializers(self, fan_in, offset):
        """Kernel and bias initialisers of a 1x1 convolution over `fan_in`
        channels; `offset` numbers its two seeds."""
        seeds = (None, None)
        if self.seed is not None:
            seeds = (self.seed + offset, self.seed + offset + 1)
        if self.initialization == "keras":
            return {
                "kernel_initializer": keras.initializers.GlorotUniform(seeds[0]),
                "bias_initializer": "zeros",
            }
        # PyTorch's `kaiming_uniform_(a=sqrt(5))`: a bound of sqrt(1 / fan_in),
        # and its bias bound 1 / sqrt(fan_in): the same for both.
        bound = 1.0 / math.sqrt(fan_in)
        return {
            "kernel_initializer": keras.initializers.VarianceScaling(
                scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seeds[0]
            ),
            "bias_initializer": keras.initializers.RandomUniform(
                -bound, bound, seed=seeds[1]
            ),
        }

    def fused_features(self, features, training=None):
        """Returns the concatenated residual features that the fuser reads."""
        scales, target = self.residual_features(features, training=training)
        return ops.concatenate(
            [g if resized else self.upsample(g, target) for g, resized in scales],
            axis=-1,
        )

    def residual_features(self, features, training=None):
        """The residual features `g_i` of every scale, at their own sizes.

        Returns:
            A list of `(g_i, at_target)`, `at_target` telling whether `g_i` is
            already at the finest size, and that size `target`.
        """
        static = [tuple(f.shape[1:3]) for f in features]
        if all(None not in size for size in static):
            finest = _finest_index([(None, *size) for size in static])
            target = static[finest]
        else:
            # Sizes known only at run time (e.g. an exported graph): the
            # extractor's finest-first order names the target.
            finest, target = 0, tuple(ops.shape(features[0])[1:3])
        scales = []
        for index, (feature, conv, norm) in enumerate(
            zip(features, self.convs, self.norms)
        ):
            feature = ops.cast(feature, self.compute_dtype)
            g = ops.relu(norm(conv(feature), training=training) + feature)
            scales.append((g, index == finest or static[index] == target))
        return scales, target

    def upsample(self, g, target):
        """Bilinearly upsamples `g` `(B, h, w, C)` to `target` (height, width)."""
        if self.upsampling == "resize":
            return ops.image.resize(g, target, interpolation="bilinear")
        size = tuple(g.shape[1:3])
        if None in size or not all(isinstance(t, int) for t in target):
            if isinstance(g, keras.KerasTensor):
                # A symbolic call needs only the shape, which is the target's.
                return ops.image.resize(g, target, interpolation="bilinear")
            raise ValueError(
                "`upsampling='doubling'` needs feature maps whose sizes are known "
                "when the model is traced. Received: a map of size "
                f"{size} to upsample to {target}. Give the explainer fixed-size "
                "inputs (for a `tf.data` pipeline that leaves the image size "
                "open: `dataset.map(lambda x: tf.ensure_shape(x, (None, H, W, "
                "3)))`)."
            )
        height, width = size
        while 2 * height <= target[0] and 2 * width <= target[1]:
            height, width = 2 * height, 2 * width
            g = ops.image.resize(g, (height, width), interpolation="bilinear")
        if (height, width) != tuple(target):
            g = ops.image.resize(g, target, interpolation="bilinear")
        return g

    def call(self, features, classes=None, training=None):
        if classes is None:
            return self.fuser(self.fused_features(features, training=training))
        kernel = ops.cast(self.fuser.kernel[0, 0], self.compute_dtype)
        classes = ops.cast(classes, "int32")
        # (C, K), or (C, B, K): each image reads its own columns of the fuser.
        columns = ops.take(kernel, classes, axis=1)
        equation = "bhwc,ck->bhwk" if len(classes.shape) == 1 else "bhwc,cbk->bhwk"
        # Upsampling is linear per channel and the fuser mixes channels
        # linearly after it, so each scale is fused first and only its K
        # maps are upsampled, not its C channels (C/K times less to resize).
        maps, start = None, 0
        scales, target = self.residual_features(features, training=training)
        for g, resized in scales:
            stop = start + int(g.shape[-1])
            part = ops.einsum(equation, g, columns[start:stop])
            part = part if resized else self.upsample(part, target)
            maps, start = part if maps is None else maps + part, stop
        return maps

    def normalize(self, maps):
        """Min-max normalises each map `(B, h, w, K)` to [0, 1] (inference)."""
        maps = ops.cast(maps, "float32")
        low = ops.min(maps, axis=(1, 2), keepdims=True)
        high = ops.max(maps, axis=(1, 2), keepdims=True)
        # The authors' form: the range, at least epsilon (not range + epsilon).
        return (maps - low) / ops.maximum(high - low, self.epsilon)

    def compute_output_shape(self, features_shape, classes_shape=None):
        finest = features_shape[_finest_index(features_shape)]
        channels = self.num_classes if classes_shape is None else classes_shape[-1]
        return (finest[0], finest[1], finest[2], channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "epsilon": self.epsilon,
                "batch_norm_epsilon": self.batch_norm_epsilon,
                "batch_norm_momentum": self.batch_norm_momentum,
                "upsampling": self.upsampling,
                "initialization": self.initialization,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # A config saved before the numerics options existed keeps the
        # numerics it was trained with.
        return super().from_config({**LEGACY_OPTIONS, **config})


def numerics_of(decoder):
    """The options that set a decoder's numerics, as a dict."""
    return {key: getattr(decoder, key) for key in LEGACY_OPTIONS}


def _finest_index(shapes):
    """Index of the map with the most pixels; the first one if sizes are unknown."""
    areas = [(shape[1] or 0) * (shape[2] or 0) for shape in shapes]
    return max(range(len(shapes)), key=lambda i: (areas[i], -i))


def check_feature_shapes(shapes):
    """Raises a `ValueError` naming the problem if the maps cannot be fused."""
    if not shapes:
        raise ValueError(
            "The auxiliary network must return at least one feature map. "
            "Received: no feature maps"
        )
    for index, shape in enumerate(shapes):
        if len(shape) != 4:
            raise ValueError(
                "Every auxiliary feature map must be 4-D (batch, height, width, "
                f"channels). Received: feature map {index} with shape {shape}. "
                "Token outputs (batch, tokens, channels) must be reshaped to a "
                "grid first."
            )
        if shape[-1] is None:
            raise ValueError(
                "The channel count of every feature map must be known. "
                f"Received: feature map {index} with shape {shape}"
            )
    if all(shape[1] is not None and shape[2] is not None for shape in shapes):
        finest = shapes[_finest_index(shapes)]
        for shape in shapes:
            if shape[1] > finest[1] or shape[2] > finest[2]:
                raise ValueError(
                    "The feature maps' spatial sizes cannot be aligned: no map is "
                    "at least as fine as every other in both height and width. "
                    f"Received: shapes {[tuple(s) for s in shapes]}"
                )
