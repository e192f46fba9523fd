import keras
import numpy as np
import pytest
from keras import ops

import keras_ptame as kp
from tests.helpers import to_numpy
from tests.helpers.test_case import run_layer_test

# Per feature map a 1x1 convolution (kernel, bias) and a batch normalisation
# (gamma, beta; moving mean and variance), then the fuser's kernel.
TRAINABLE_WEIGHTS = 3 * 4 + 1
NON_TRAINABLE_WEIGHTS = 3 * 2


def _features(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.normal(size=(batch, 8, 8, 4)).astype("float32"),
        rng.normal(size=(batch, 4, 4, 6)).astype("float32"),
        rng.normal(size=(batch, 3, 3, 5)).astype("float32"),  # 8/3: not a power of 2
    ]


def test_output_is_one_map_per_class_at_the_finest_resolution():
    decoder = kp.MaskDecoder(num_classes=7)
    maps = decoder(_features())
    assert tuple(maps.shape) == (3, 8, 8, 7)


def test_finest_map_is_found_whatever_the_order():
    features = _features()
    decoder = kp.MaskDecoder(num_classes=2)
    assert tuple(decoder(features[::-1]).shape) == (3, 8, 8, 2)


def test_layers_follow_the_method():
    decoder = kp.MaskDecoder(num_classes=5)
    decoder(_features())
    # One residual 1x1 conv (with bias, same channels) + BN per scale.
    assert [tuple(c.kernel.shape) for c in decoder.convs] == [
        (1, 1, 4, 4),
        (1, 1, 6, 6),
        (1, 1, 5, 5),
    ]
    assert all(c.use_bias for c in decoder.convs)
    assert len(decoder.norms) == 3
    # Bias-free fuser from the concatenated channels to the classes.
    assert tuple(decoder.fuser.kernel.shape) == (1, 1, 15, 5)
    assert not decoder.fuser.use_bias
    assert len(decoder.trainable_weights) == 3 * 4 + 1


def _doubled(g, size):
    """The authors' upsampling, written out: x2 while it fits, then resize."""
    height, width = g.shape[1:3]
    while 2 * height <= size[0] and 2 * width <= size[1]:
        height, width = 2 * height, 2 * width
        g = ops.image.resize(g, (height, width), interpolation="bilinear")
    return ops.image.resize(g, size, interpolation="bilinear")


@pytest.mark.parametrize("upsampling", ["doubling", "resize"])
def test_forward_matches_a_numpy_reference(upsampling):
    features = _features(batch=2)
    decoder = kp.MaskDecoder(num_classes=3, upsampling=upsampling)
    decoder(features)
    # Give BN non-trivial statistics so the reference checks them too.
    rng = np.random.default_rng(1)
    for norm in decoder.norms:
        channels = norm.gamma.shape[0]
        norm.moving_mean.assign(rng.normal(size=channels).astype("float32"))
        norm.moving_variance.assign(
            rng.uniform(0.5, 2, size=channels).astype("float32")
        )
        norm.gamma.assign(rng.normal(size=channels).astype("float32"))
    scales = []
    for f, conv, norm in zip(features, decoder.convs, decoder.norms):
        w, b = to_numpy(conv.kernel)[0, 0], to_numpy(conv.bias)
        y = f @ w + b
        y = (y - to_numpy(norm.moving_mean)) / np.sqrt(
            to_numpy(norm.moving_variance) + norm.epsilon
        ) * to_numpy(norm.gamma) + to_numpy(norm.beta)
        g = np.maximum(y + f, 0)
        if upsampling == "doubling":
            g = to_numpy(_doubled(g, (8, 8)))
        else:
            g = to_numpy(ops.image.resize(g, (8, 8), interpolation="bilinear"))
        scales.append(g)
    expected = np.concatenate(scales, -1) @ to_numpy(decoder.fuser.kernel)[0, 0]
    actual = to_numpy(decoder(features, training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_shared_class_subset_equals_full_maps_sliced():
    features = _features()
    decoder = kp.MaskDecoder(num_classes=10)
    full = to_numpy(decoder(features))
    classes = np.array([7, 2, 2, 9], "int32")
    subset = to_numpy(decoder(features, classes=classes))
    assert subset.shape == (3, 8, 8, 4)
    np.testing.assert_allclose(subset, full[..., classes], rtol=1e-5, atol=1e-5)


def test_per_image_class_subset_equals_full_maps_sliced():
    features = _features()
    decoder = kp.MaskDecoder(num_classes=10)
    full = to_numpy(decoder(features))
    classes = np.array([[1], [8], [4]], "int32")
    subset = to_numpy(decoder(features, classes=classes))
    assert subset.shape == (3, 8, 8, 1)
    for b in range(3):
        np.testing.assert_allclose(
            subset[b, ..., 0], full[b, ..., classes[b, 0]], rtol=1e-5, atol=1e-5
        )


def test_batch_norm_statistics_move_only_in_training():
    features = _features()
    decoder = kp.MaskDecoder(num_classes=2)
    decoder(features)
    before = to_numpy(decoder.norms[0].moving_mean).copy()
    decoder(features, training=False)
    np.testing.assert_array_equal(to_numpy(decoder.norms[0].moving_mean), before)
    decoder(features, training=True)
    assert not np.allclose(to_numpy(decoder.norms[0].moving_mean), before)


def test_normalize_gives_each_map_the_range_zero_to_one():
    decoder = kp.MaskDecoder(num_classes=2)
    maps = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype("float32") * 40
    normalized = to_numpy(decoder.normalize(maps))
    np.testing.assert_allclose(normalized.min(axis=(1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(normalized.max(axis=(1, 2)), 1, atol=1e-6)
    constant = to_numpy(decoder.normalize(np.ones((1, 4, 4, 1), "float32")))
    assert np.isfinite(constant).all()


def test_layer_checks_and_saving(tmp_path):
    decoder = kp.MaskDecoder(num_classes=4, epsilon=1e-6, name="dec")
    revived = run_layer_test(
        decoder,
        _features(),
        tmp_path,
        expected_output_shape=(3, 8, 8, 4),
        expected_num_trainable_weights=TRAINABLE_WEIGHTS,
        expected_num_non_trainable_weights=NON_TRAINABLE_WEIGHTS,
    )
    assert revived.num_classes == 4 and revived.epsilon == 1e-6


def test_mixed_precision_runs_in_the_policy_dtype():
    decoder = kp.MaskDecoder(num_classes=3, dtype="mixed_bfloat16")
    maps = decoder(_features())
    assert keras.backend.standardize_dtype(maps.dtype) == "bfloat16"
    assert decoder.fuser.kernel.dtype == "float32"


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, None])
def test_rejects_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        kp.MaskDecoder(num_classes=num_classes)


def test_rejects_feature_maps_that_cannot_be_aligned():
    decoder = kp.MaskDecoder(num_classes=2)
    tall = np.zeros((1, 8, 2, 3), "float32")
    wide = np.zeros((1, 2, 8, 3), "float32")
    with pytest.raises(ValueError, match="cannot be aligned"):
        decoder([tall, wide])


def test_rejects_token_outputs():
    decoder = kp.MaskDecoder(num_classes=2)
    with pytest.raises(ValueError, match="4-D"):
        decoder([np.zeros((1, 16, 8), "float32")])


def test_batch_norm_follows_the_authors_by_default():
    decoder = kp.MaskDecoder(num_classes=2)
    decoder(_features())
    assert all(norm.epsilon == 1e-5 for norm in decoder.norms)
    assert all(norm.momentum == 0.9 for norm in decoder.norms)


def test_upsampling_and_initialization_follow_the_authors_by_default():
    decoder = kp.MaskDecoder(num_classes=2)
    assert decoder.upsampling == "doubling"
    assert decoder.initialization == "torch"


def test_config_saved_before_the_numerics_options_keeps_the_old_numerics():
    config = kp.MaskDecoder(num_classes=3, name="old").get_config()
    for key in (
        "batch_norm_epsilon",
        "batch_norm_momentum",
        "upsampling",
        "initialization",
    ):
        del config[key]
    old = kp.MaskDecoder.from_config(config)
    old(_features())
    assert [norm.epsilon for norm in old.norms] == [1e-3] * 3
    assert [norm.momentum for norm in old.norms] == [0.99] * 3
    assert old.upsampling == "resize"
    assert old.initialization == "keras"
    assert old.get_config()["initialization"] == "keras"


@pytest.mark.parametrize("upsampling", ["doubling", "resize"])
@pytest.mark.parametrize("initialization", ["torch", "keras"])
def test_numerics_options_survive_a_config_round_trip(
    upsampling, initialization, tmp_path
):
    decoder = kp.MaskDecoder(
        num_classes=3,
        batch_norm_epsilon=1e-4,
        batch_norm_momentum=0.5,
        upsampling=upsampling,
        initialization=initialization,
        seed=11,
    )
    revived = run_layer_test(decoder, _features()[:2], tmp_path)
    assert (revived.upsampling, revived.initialization, revived.seed) == (
        upsampling,
        initialization,
        11,
    )


# === Initialisation ===


def _wide_features(channels=(64, 32)):
    rng = np.random.default_rng(0)
    return [
        rng.normal(size=(1, 4, 4, channels[0])).astype("float32"),
        rng.normal(size=(1, 2, 2, channels[1])).astype("float32"),
    ]


def test_torch_initialization_has_torch_s_conv2d_bounds():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    decoder = kp.MaskDecoder(num_classes=200, seed=0)
    decoder(_wide_features())
    # Kernels and biases of every convolution (fuser included): uniform in
    # +-1/sqrt(fan_in), as PyTorch's own `nn.Conv2d` draws them.
    for layer, fan_in in [(decoder.convs[0], 64), (decoder.convs[1], 32)]:
        reference = torch.nn.Conv2d(fan_in, fan_in, 1)
        for ours, theirs in [
            (layer.kernel, reference.weight),
            (layer.bias, reference.bias),
        ]:
            _assert_uniform(to_numpy(ours), 1 / np.sqrt(fan_in))
            _assert_uniform(theirs.detach().numpy(), 1 / np.sqrt(fan_in))
    _assert_uniform(to_numpy(decoder.fuser.kernel), 1 / np.sqrt(96))
    assert decoder.fuser.bias is None


def _assert_uniform(values, bound):
    values = values.ravel()
    assert np.abs(values).max() <= bound
    # Spread over the whole interval: not a narrower or normal draw. A bias
    # has only fan_in values: its spread is judged by its extremes alone.
    assert np.abs(values).max() > 0.8 * bound
    if values.size >= 500:
        np.testing.assert_allclose(values.std(), bound / np.sqrt(3), rtol=0.1)


def test_keras_initialization_is_glorot_with_zero_biases():
    decoder = kp.MaskDecoder(num_classes=200, initialization="keras", seed=0)
    decoder(_wide_features())
    assert all(np.all(to_numpy(conv.bias) == 0) for conv in decoder.convs)
    # Glorot uniform: +-sqrt(6 / (fan_in + fan_out)).
    _assert_uniform(to_numpy(decoder.convs[0].kernel), np.sqrt(6 / 128))
    _assert_uniform(to_numpy(decoder.fuser.kernel), np.sqrt(6 / (96 + 200)))


def test_a_seed_makes_the_initial_weights_reproducible():
    def initial(**kwargs):
        decoder = kp.MaskDecoder(num_classes=5, **kwargs)
        decoder(_wide_features())
        return [to_numpy(w) for w in decoder.trainable_weights]

    first, again, other = initial(seed=3), initial(seed=3), initial(seed=4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], other[0])
    # Each kernel and bias draws its own values.
    assert not np.allclose(first[0][0, 0, :32, :32], first[4][0, 0])
    keras.utils.set_random_seed(9)
    unseeded = initial()
    keras.utils.set_random_seed(9)
    for a, b in zip(unseeded, initial()):
        np.testing.assert_array_equal(a, b)


def test_initializers_serialize_in_safe_mode():
    decoder = kp.MaskDecoder(num_classes=3, seed=1)
    decoder(_features())
    for conv in [*decoder.convs, decoder.fuser]:
        revived = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(conv), safe_mode=True
        )
        assert revived.get_config() == conv.get_config()


def _torch_doubling(x, times):
    torch = pytest.importorskip("torch")
    y = torch.from_numpy(x).permute(0, 3, 1, 2)
    for _ in range(times):
        y = torch.nn.functional.interpolate(
            y, scale_factor=2, mode="bilinear", align_corners=False
        )
    return y.permute(0, 2, 3, 1).numpy()


def test_doubling_matches_repeated_torch_bilinear_doubling():
    rng = np.random.default_rng(3)
    coarse = rng.normal(size=(2, 2, 3, 4)).astype("float32")
    decoder = kp.MaskDecoder(num_classes=2, upsampling="doubling")
    doubled = to_numpy(decoder.upsample(coarse, (16, 24)))
    np.testing.assert_allclose(
        doubled, _torch_doubling(coarse, 3), rtol=1e-5, atol=1e-5
    )
    # One-step resizing is a different interpolation for a ratio of 8 ...
    resizing = kp.MaskDecoder(num_classes=2, upsampling="resize")
    resized = to_numpy(resizing.upsample(coarse, (16, 24)))
    assert np.abs(resized - doubled).max() > 1e-2
    # ... and the same one for a ratio of 2.
    np.testing.assert_allclose(
        to_numpy(resizing.upsample(coarse, (4, 6))),
        _torch_doubling(coarse, 1),
        rtol=1e-5,
        atol=1e-5,
    )


def test_doubling_finishes_a_ratio_that_is_not_a_power_of_two_by_resizing():
    coarse = np.random.default_rng(4).normal(size=(1, 3, 3, 2)).astype("float32")
    decoder = kp.MaskDecoder(num_classes=2, upsampling="doubling")
    expected = ops.image.resize(
        ops.image.resize(coarse, (6, 6), interpolation="bilinear"),
        (8, 8),
        interpolation="bilinear",
    )
    np.testing.assert_allclose(
        to_numpy(decoder.upsample(coarse, (8, 8))), to_numpy(expected), atol=1e-6
    )
    assert tuple(decoder(_features()).shape) == (3, 8, 8, 2)


def test_doubling_needs_sizes_known_when_traced():
    decoder = kp.MaskDecoder(num_classes=2)
    # A symbolic call needs only the shape.
    spec = decoder.upsample(keras.KerasTensor((1, None, None, 3)), (8, 8))
    assert tuple(spec.shape) == (1, 8, 8, 3)
    if keras.config.backend() != "tensorflow":
        return  # JAX and PyTorch always trace with known sizes
    import tensorflow as tf

    traced = tf.function(
        lambda g: decoder.upsample(g, (8, 8)),
        input_signature=[tf.TensorSpec((1, None, None, 3))],
    )
    with pytest.raises(ValueError, match="ensure_shape"):
        traced(np.zeros((1, 2, 2, 3), "float32"))


def test_rejects_unknown_initialization():
    with pytest.raises(ValueError, match="initialization"):
        kp.MaskDecoder(num_classes=2, initialization="he")


def test_rejects_unknown_upsampling():
    with pytest.raises(ValueError, match="upsampling"):
        kp.MaskDecoder(num_classes=2, upsampling="nearest")
