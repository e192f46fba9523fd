"""Checks on user input (`keras_ptame/utils/validation.py`): what each refuses, and
that its message names the problem and the value received."""

import warnings

import keras
import numpy as np
import pytest

from keras_ptame.utils.validation import (
    check_classes,
    check_finite_weights,
    check_float,
    check_image_shape,
    check_images,
    check_num_classes,
    check_option,
    check_positive_float,
    check_training_data,
    unpack_inputs,
)


def test_check_option_returns_an_allowed_value_and_names_a_wrong_one():
    assert check_option("fill", "blur", ("black", "blur")) == "blur"
    with pytest.raises(ValueError, match=r"`fill` must be one of .*fill='grey'"):
        check_option("fill", "grey", ("black", "blur"))


@pytest.mark.parametrize(
    "shape, message",
    [
        ((16, 16, 3), "rank 3"),
        ((2, 16, 16, 0), "at least 1 channel.*0 channels"),
        ((2, 0, 16, 3), "positive height"),
        ((2, 16, 0, 3), "positive width"),
    ],
)
def test_image_shapes_are_checked(shape, message):
    with pytest.raises(ValueError, match=message):
        check_image_shape(shape)


# Issue 24: any channel count passes alone; against an explainer's count the
# message names the channels expected and the channels received.
@pytest.mark.parametrize("channels", [1, 3, 4, 13])
def test_any_channel_count_passes_and_a_wrong_one_is_named(channels):
    check_image_shape((2, 16, 16, channels))
    check_image_shape((2, 16, 16, channels), channels=channels)
    other = 3 if channels != 3 else 1
    expected = "channel" if other == 1 else "channels"
    with pytest.raises(
        ValueError,
        match=rf"must have {other} {expected}, as the explainer was built with\. "
        rf"Received: shape \(2, 16, 16, {channels}\) \({channels} channel",
    ):
        check_images(np.zeros((2, 16, 16, channels), "uint8"), channels=other)


def test_open_sizes_are_allowed():
    check_image_shape((None, None, None, 3))
    check_image_shape((None, 8, 8, None))


def test_raw_pixels_pass_and_come_back_as_numpy():
    images = [[[[0, 128, 255]]]]
    array = check_images(images)
    assert isinstance(array, np.ndarray) and array.shape == (1, 1, 1, 3)


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((1, 4, 4, 3), bool), "must hold numbers.*bool"),
        (np.full((1, 4, 4, 3), "a"), "must hold numbers"),
        (np.zeros((0, 4, 4, 3), "uint8"), "is empty"),
        (np.full((1, 4, 4, 3), 1000, "uint16"), "16-bit.*divide by 257"),
        (np.full((1, 4, 4, 3), -1.0, "float32"), "before normalisation"),
        (np.full((1, 4, 4, 3), 300.0, "float32"), "Rescale them"),
    ],
)
def test_bad_images_are_refused_with_the_fix(images, message):
    with pytest.raises(ValueError, match=message):
        check_images(images)


def test_nan_or_inf_pixels_are_counted():
    images = np.zeros((1, 4, 4, 3), "float32")
    images[0, 0, 0] = [np.nan, np.inf, 0.0]
    with pytest.raises(ValueError, match="2 NaN or Inf pixel values"):
        check_images(images)
    # Unless the pixel scan is left to the caller.
    check_images(images, pixels=False)


def test_pixels_scaled_to_0_1_get_a_warning():
    with pytest.warns(UserWarning, match=r"\[0, 1\].*multiply them by 255"):
        check_images(np.linspace(0, 1, 48, dtype="float32").reshape(1, 4, 4, 3))
    # Integer pixels of a dark image are raw pixels: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_images(np.ones((1, 4, 4, 3), "uint8"))


@pytest.mark.parametrize(
    "num_classes, classifier_classes, message",
    [
        (0, None, "positive integer"),
        (2.0, None, "positive integer"),
        (True, None, "positive integer"),
        (1, None, "at least 2 classes"),
        (None, 1, "at least 2 classes"),
        (5, 10, "disagrees.*num_classes=5.*10 scores"),
    ],
)
def test_num_classes_is_checked(num_classes, classifier_classes, message):
    with pytest.raises(ValueError, match=message):
        check_num_classes(num_classes, classifier_classes)


def test_agreeing_or_open_num_classes_pass():
    check_num_classes(10, 10)
    check_num_classes(np.int64(3), None)
    check_num_classes(None, None)


def test_classes_are_one_int32_index_per_image():
    np.testing.assert_array_equal(check_classes(2, 3, 5), [2, 2, 2])
    classes = check_classes(np.array([0.0, 4.0]), 2, 5)
    assert classes.dtype == np.int32 and classes.tolist() == [0, 4]


@pytest.mark.parametrize(
    "classes, message",
    [
        ([0.5, 1.0], "integer class indices"),
        ([0, 1, 2], r"shape \(2,\).*shape \(3,\)"),
        ([0, 5], r"\[0, 5\).*from 0 to 5"),
        ([-1, 0], "from -1 to 0"),
    ],
)
def test_bad_classes_are_refused(classes, message):
    with pytest.raises(ValueError, match=message):
        check_classes(classes, 2, 5)


# Issue 24: several classes per image, (N, k), where the caller allows them.
def test_several_classes_per_image_are_accepted_only_when_allowed():
    classes = check_classes([[0, 4], [3, 3]], 2, 5, several=True)
    assert classes.dtype == np.int32 and classes.tolist() == [[0, 4], [3, 3]]
    assert check_classes([1, 2], 2, 5, several=True).tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"shape \(2,\)\. Received: shape \(2, 2\)"):
        check_classes([[0, 4], [3, 3]], 2, 5)


# Issue 24: a bad (N, k) array is refused with its shape or values named.
@pytest.mark.parametrize(
    "classes, message",
    [
        (np.zeros((2, 0), int), r"\(2, k\), k >= 1.*shape \(2, 0\)"),
        (np.zeros((3, 2), int), r"shape \(3, 2\)"),
        (np.zeros((2, 2, 1), int), r"shape \(2, 2, 1\)"),
        ([[0, 5], [1, 1]], "from 0 to 5"),
    ],
)
def test_bad_rows_of_classes_are_refused(classes, message):
    with pytest.raises(ValueError, match=message):
        check_classes(classes, 2, 5, several=True)


def test_inputs_are_images_or_a_dict_of_images_and_classes():
    images = np.zeros((1, 2, 2, 3))
    assert unpack_inputs(images) == (images, None)
    assert unpack_inputs({"images": images, "classes": [1]}) == (images, [1])
    assert unpack_inputs({"image": images}) == (images, None)


def test_training_arrays_are_checked_and_build_the_model():
    built = []
    check_training_data(np.zeros((2, 4, 4, 3), "uint8"), built.append)
    assert built == [(2, 4, 4, 3)]
    with pytest.raises(ValueError, match="x=None"):
        check_training_data(None, built.append)
    with pytest.raises(ValueError, match="at least 1 channel"):
        check_training_data(np.zeros((2, 4, 4, 0), "uint8"), built.append)
    # Issue 24: grayscale images are training data too.
    check_training_data(np.zeros((2, 4, 4, 1), "uint8"), built.append)
    assert built[-1] == (2, 4, 4, 1)


def test_training_datasets_are_checked_from_their_spec():
    tf = pytest.importorskip("tensorflow")
    images = np.zeros((4, 8, 8, 3), "uint8")
    built = []
    check_training_data(
        tf.data.Dataset.from_tensor_slices(images).batch(2), built.append
    )
    assert built == [(None, 8, 8, 3)]
    with pytest.raises(ValueError, match=r"single images.*\.batch"):
        check_training_data(tf.data.Dataset.from_tensor_slices(images), built.append)
    with pytest.raises(ValueError, match="empty"):
        empty = tf.data.Dataset.from_tensor_slices(images[:0]).batch(2)
        check_training_data(empty, built.append)
    # An open size is read from the first batch.
    open_size = tf.data.Dataset.from_generator(
        lambda: iter([images[:2]]),
        output_signature=tf.TensorSpec((None, None, None, 3), tf.uint8),
    )
    check_training_data(open_size, built.append)
    assert built[-1] == (2, 8, 8, 3)


# Issue 22, case 8
@pytest.mark.parametrize(
    "value, bounds, message",
    [
        (float("nan"), {"above": 0}, r"a finite number > 0.*rate=nan"),
        (float("inf"), {"above": 0}, r"a finite number > 0.*rate=inf"),
        (0.0, {"above": 0}, "rate=0.0"),
        ("2", {}, "rate='2'"),
        (True, {}, "rate=True"),
        (1.5, {"minimum": 0, "maximum": 1}, r">= 0 and <= 1.*rate=1.5"),
    ],
)
def test_check_float_refuses_non_finite_and_out_of_range_numbers(
    value, bounds, message
):
    with pytest.raises(ValueError, match=message):
        check_float("rate", value, **bounds)
    assert check_float("rate", 0.5, **bounds) == 0.5
    assert check_positive_float("rate", 2) == 2.0


# Issue 22, case 8
def test_check_finite_weights_names_the_weight_and_where_it_came_from():
    weights = {"fc.weight": np.ones(3), "steps": np.array(7)}
    check_finite_weights(weights, "the file 'a.ckpt'")
    weights["fc.bias"] = np.array([0.0, np.inf])
    with pytest.raises(ValueError, match=r"'fc.bias' of the file 'a.ckpt'.*1 of 2"):
        check_finite_weights(weights, "the file 'a.ckpt'")
    negative = {"bn.running_var": np.array([1.0, -0.5])}
    with pytest.raises(ValueError, match=r"variance 'bn.running_var'.*negative"):
        check_finite_weights(negative, "the file 'a.ckpt'")
    layer = keras.layers.BatchNormalization()
    layer.build((None, 2))
    check_finite_weights(layer, "the layer")
    layer.moving_variance.assign([1.0, -1.0])
    with pytest.raises(ValueError, match="moving_variance"):
        check_finite_weights(layer, "the layer")
    layer.moving_variance.assign([1.0, 1.0])
    layer.gamma.assign([np.nan, 1.0])
    with pytest.raises(ValueError, match=r"gamma' of the layer holds NaN"):
        check_finite_weights(layer, "the layer")
