import keras
import numpy as np
import pytest
from keras import ops

import keras_ptame as kp


def _features(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.normal(size=(batch, 8, 8, 4)).astype("float32"),
        rng.normal(size=(batch, 4, 4, 6)).astype("float32"),
        rng.normal(size=(batch, 3, 3, 5)).astype("float32"),  # 8/3: not a power of 2
    ]


def _numpy(x):
    return ops.convert_to_numpy(x)


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


def test_forward_matches_a_numpy_reference():
    features = _features(batch=2)
    decoder = kp.MaskDecoder(num_classes=3)
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
        w, b = _numpy(conv.kernel)[0, 0], _numpy(conv.bias)
        y = f @ w + b
        y = (y - _numpy(norm.moving_mean)) / np.sqrt(
            _numpy(norm.moving_variance) + norm.epsilon
        ) * _numpy(norm.gamma) + _numpy(norm.beta)
        g = np.maximum(y + f, 0)
        g = _numpy(ops.image.resize(g, (8, 8), interpolation="bilinear"))
        scales.append(g)
    expected = np.concatenate(scales, -1) @ _numpy(decoder.fuser.kernel)[0, 0]
    actual = _numpy(decoder(features, training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_shared_class_subset_equals_full_maps_sliced():
    features = _features()
    decoder = kp.MaskDecoder(num_classes=10)
    full = _numpy(decoder(features))
    classes = np.array([7, 2, 2, 9], "int32")
    subset = _numpy(decoder(features, classes=classes))
    assert subset.shape == (3, 8, 8, 4)
    np.testing.assert_allclose(subset, full[..., classes], rtol=1e-5, atol=1e-5)


def test_per_image_class_subset_equals_full_maps_sliced():
    features = _features()
    decoder = kp.MaskDecoder(num_classes=10)
    full = _numpy(decoder(features))
    classes = np.array([[1], [8], [4]], "int32")
    subset = _numpy(decoder(features, classes=classes))
    assert subset.shape == (3, 8, 8, 1)
    for b in range(3):
        np.testing.assert_allclose(
            subset[b, ..., 0], full[b, ..., classes[b, 0]], rtol=1e-5, atol=1e-5
        )


def test_batch_norm_statistics_move_only_in_training():
    features = _features()
    decoder = kp.MaskDecoder(num_classes=2)
    decoder(features)
    before = _numpy(decoder.norms[0].moving_mean).copy()
    decoder(features, training=False)
    np.testing.assert_array_equal(_numpy(decoder.norms[0].moving_mean), before)
    decoder(features, training=True)
    assert not np.allclose(_numpy(decoder.norms[0].moving_mean), before)


def test_normalize_gives_each_map_the_range_zero_to_one():
    decoder = kp.MaskDecoder(num_classes=2)
    maps = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype("float32") * 40
    normalized = _numpy(decoder.normalize(maps))
    np.testing.assert_allclose(normalized.min(axis=(1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(normalized.max(axis=(1, 2)), 1, atol=1e-6)
    constant = _numpy(decoder.normalize(np.ones((1, 4, 4, 1), "float32")))
    assert np.isfinite(constant).all()


def test_serialization_round_trip():
    decoder = kp.MaskDecoder(num_classes=4, epsilon=1e-6, name="dec")
    restored = kp.MaskDecoder.from_config(decoder.get_config())
    assert restored.get_config() == decoder.get_config()
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(decoder)
    )
    assert isinstance(revived, kp.MaskDecoder) and revived.num_classes == 4


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
