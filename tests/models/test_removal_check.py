"""The removal check: a class whose maps cover the background is flagged.

A constructed case with a known answer: grey images holding one bright
square, a classifier that names class 1 when it sees bright pixels (class 0
otherwise), and an auxiliary network whose one feature map is the
brightness. The decoder's residual convolution is zeroed, so each class's
map is its fuser column times the brightness: a positive column draws the
object, a negative one the background around it, the map that keeps the
object out.
"""

import os
import warnings

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.models import removal_check
from tests.helpers import to_numpy

SIZE = 32
OBJECT = 8


def object_images(count=16, seed=0):
    """Grey images, a bright `OBJECT`-pixel square each, and their masks."""
    rng = np.random.default_rng(seed)
    images = np.full((count, SIZE, SIZE, 3), 128, "uint8")
    masks = np.zeros((count, SIZE, SIZE), bool)
    for index, (row, column) in enumerate(rng.integers(0, SIZE - OBJECT, (count, 2))):
        images[index, row : row + OBJECT, column : column + OBJECT] = 255
        masks[index, row : row + OBJECT, column : column + OBJECT] = True
    return images, masks


def brightness_model(name):
    """`(B, 32, 32, 3)` -> `(B, 32, 32, 1)`: how far each pixel is above 200."""
    inputs = keras.Input((SIZE, SIZE, 3))
    bright = keras.layers.Conv2D(1, 1, activation="relu", name="bright")(inputs)
    model = keras.Model(inputs, bright, name=name)
    model.get_layer("bright").set_weights(
        [np.full((1, 1, 3, 1), 1 / 3, "float32"), np.array([-200.0], "float32")]
    )
    return model


def object_classifier():
    """Class 1 when bright pixels cover more than ~1/55 of the image."""
    features = brightness_model("detector")
    pooled = keras.layers.GlobalAveragePooling2D()(features.output)
    logits = keras.layers.Dense(2, name="logits")(pooled)
    classifier = keras.Model(features.input, logits, name="classifier")
    classifier.get_layer("logits").set_weights(
        [np.array([[0.0, 10.0]], "float32"), np.array([10.0, 0.0], "float32")]
    )
    return classifier


def object_explainer(sign, classifier=None):
    """An explainer whose class-1 maps are `sign` times the brightness:
    the object (`+1`) or the background around it (`-1`)."""
    explainer = kp.PTAME(
        kp.Backbone(classifier or object_classifier()),
        kp.AuxiliaryExtractor(brightness_model("auxiliary"), layer_names=["bright"]),
    )
    explainer.ensure_built((None, SIZE, SIZE, 3))
    decoder = explainer.decoder
    for weight in decoder.convs[0].weights:
        weight.assign(np.zeros(weight.shape, "float32"))
    kernel = np.zeros(decoder.fuser.kernel.shape, "float32")
    kernel[..., 1] = sign * 0.1
    decoder.fuser.kernel.assign(kernel)
    explainer.mark_trained()
    return explainer


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_constructed_maps_point_where_they_were_built_to(sign):
    images, masks = object_images()
    found = object_explainer(sign).explain_outputs(images)
    assert found["classes"].tolist() == [1] * len(images)
    assert not found["flat"].any()
    inside = (found["maps"] * masks).sum((1, 2)) / masks.sum((1, 2))
    outside = (found["maps"] * ~masks).sum((1, 2)) / (~masks).sum((1, 2))
    assert np.all(inside > outside) if sign > 0 else np.all(inside < outside)


def test_background_maps_are_misranked_and_object_maps_are_not():
    images, _ = object_images()
    good = removal_check.check_explainer(object_explainer(1.0), images)
    bad = removal_check.check_explainer(object_explainer(-1.0), images)
    # The object removed, the class is gone; the background removed, kept.
    assert np.all(good["without_top"] < 0.01) and np.all(good["without_bottom"] > 0.99)
    assert np.all(bad["without_top"] > 0.99) and np.all(bad["without_bottom"] < 0.01)
    assert not good["misranked"].any() and bad["misranked"].all()
    assert removal_check.summarize(good)[1]["flagged"] is False
    flagged = removal_check.summarize(bad)[1]
    assert flagged["flagged"] is True and flagged["checked"] == len(images)
    assert removal_check.inverted_classes(removal_check.summarize(bad)) == [1]


def test_maps_of_a_class_that_needs_nothing_are_misranked():
    # Too few bright pixels: class 0 on every image and every removal, so
    # whatever the maps rank first, the class keeps it all (as the class the
    # fill image alone predicts does).
    images = np.full((8, SIZE, SIZE, 3), 128, "uint8")
    images[:, 10:12, 10:12] = 255  # too small to be an object, enough to rank
    explainer = object_explainer(-1.0)
    kernel = to_numpy(explainer.decoder.fuser.kernel)
    kernel[..., 0] = 0.1
    explainer.decoder.fuser.kernel.assign(kernel)
    checked = removal_check.check_explainer(explainer, images)
    assert checked["classes"].tolist() == [0] * 8
    assert not checked["flat"].any()
    np.testing.assert_allclose(checked["change"], 0.0, atol=1e-3)
    assert checked["misranked"].all()
    assert removal_check.summarize(checked)[0]["flagged"] is True
    # Not inverted: reversing its maps would not make them carry the class.
    assert removal_check.inverted_classes(removal_check.summarize(checked)) == []


def test_filling_from_kept_pixels_leaves_no_shape():
    images, masks = object_images(4)
    filled = removal_check.fill_from_kept(images, ~masks)
    np.testing.assert_array_equal(filled[~masks], images[~masks].astype("float32"))
    # The object's pixels take the grey around them: no bright hole, no edge.
    np.testing.assert_allclose(filled[masks], 128.0, atol=1e-3)


def test_removal_masks_split_each_map_in_half_by_rank():
    maps = np.random.default_rng(0).random((3, 6, 5)).astype("float32")
    without_top, without_bottom = removal_check.kept_masks(maps)
    assert (without_top.sum((1, 2)) == 15).all() and (
        without_bottom.sum((1, 2)) == 15
    ).all()
    assert not np.any(without_top & without_bottom)
    for index in range(3):
        assert (
            maps[index][~without_top[index]].min()
            > maps[index][without_top[index]].max()
        )


def test_fit_flags_a_misranked_class_in_its_logs_and_in_explain_outputs():
    images, _ = object_images(32)
    explainer = object_explainer(-1.0)
    # A learning rate of zero keeps the constructed decoder as it is.
    explainer.compile(optimizer=keras.optimizers.SGD(0.0))
    with pytest.warns(UserWarning, match="class 1 .* do not carry"):
        history = explainer.fit(
            images, epochs=2, batch_size=16, verbose=0, reverse_inverted=False
        )
    assert history.history["misranked"] == [1.0, 1.0]
    assert "reversed" not in history.history
    assert explainer.misranked_classes == (1,)
    found = explainer.explain_outputs(images[:4])
    assert found["misranked"].tolist() == [True] * 4
    assert not found["flat"].any()


def test_fit_reverses_an_inverted_class_once_and_its_maps_then_point():
    images, masks = object_images(32)
    explainer = object_explainer(-1.0)
    explainer.compile(optimizer=keras.optimizers.SGD(0.0))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*do not carry")
        history = explainer.fit(images, epochs=3, batch_size=16, verbose=0)
    # Found inverted after the first epoch, reversed, then checked clean.
    assert history.history["misranked"] == [1.0, 0.0, 0.0]
    assert history.history["reversed"] == [1.0, 1.0, 1.0]
    assert explainer.misranked_classes == ()
    maps = explainer.explain_outputs(images)["maps"]
    inside = (maps * masks).sum((1, 2)) / masks.sum((1, 2))
    outside = (maps * ~masks).sum((1, 2)) / (~masks).sum((1, 2))
    assert np.all(inside > outside)


def test_the_last_epoch_reverses_nothing():
    # No epoch would follow to check the reversed maps: they stay flagged.
    images, _ = object_images(32)
    explainer = object_explainer(-1.0)
    explainer.compile(optimizer=keras.optimizers.SGD(0.0))
    with pytest.warns(UserWarning, match="class 1 .* do not carry"):
        history = explainer.fit(images, epochs=1, batch_size=16, verbose=0)
    assert history.history["reversed"] == [0.0]
    assert explainer.misranked_classes == (1,)


def test_a_class_the_fill_predicts_is_never_reversed():
    # This classifier also names class 1 on a dark image, the black fill
    # included: any map keeps class 1, so reversing its maps cannot help.
    images, _ = object_images(32)
    inputs = keras.Input((SIZE, SIZE, 3))
    dark = keras.layers.Conv2D(1, 1, activation="relu", name="dark")(inputs)
    both = keras.layers.Concatenate()([brightness_model("detector")(inputs), dark])
    pooled = keras.layers.GlobalAveragePooling2D()(both)
    logits = keras.layers.Dense(2, name="logits")(pooled)
    classifier = keras.Model(inputs, logits)
    classifier.get_layer("dark").set_weights(
        [np.full((1, 1, 3, 1), -1 / 3, "float32"), np.array([50.0], "float32")]
    )
    classifier.get_layer("logits").set_weights(
        [np.array([[0.0, 10.0], [0.0, 10.0]], "float32"), np.array([10.0, 0.0])]
    )
    explainer = object_explainer(-1.0, classifier)
    explainer.compile(optimizer=keras.optimizers.SGD(0.0))
    with pytest.warns(UserWarning, match="class 1 .* do not carry"):
        history = explainer.fit(images, epochs=3, batch_size=16, verbose=0)
    assert history.history["misranked"] == [1.0, 1.0, 1.0]
    assert history.history["reversed"] == [0.0, 0.0, 0.0]


def test_fit_flags_nothing_on_object_maps():
    images, _ = object_images(32)
    explainer = object_explainer(1.0)
    explainer.compile(optimizer=keras.optimizers.SGD(0.0))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*do not carry")
        history = explainer.fit(images, epochs=1, batch_size=16, verbose=0)
    assert history.history["misranked"] == [0.0]
    assert not explainer.explain_outputs(images[:4])["misranked"].any()


def test_the_check_reads_validation_data_and_datasets():
    import tensorflow as tf

    images, _ = object_images(32)
    explainer = object_explainer(-1.0)
    explainer.compile(optimizer=keras.optimizers.SGD(0.0))
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(8)
    with pytest.warns(UserWarning, match="do not carry"):
        explainer.fit(dataset, epochs=1, verbose=0, removal_check=16)
    assert explainer.misranked_classes == (1,)
    explainer.misranked_classes = ()
    # Validation images only: too few for a verdict on the class.
    explainer.fit(
        images, epochs=1, batch_size=16, verbose=0, validation_data=images[:3]
    )
    assert explainer.misranked_classes == ()


def test_removal_check_zero_checks_nothing():
    images, _ = object_images(16)
    explainer = object_explainer(-1.0)
    explainer.compile(optimizer=keras.optimizers.SGD(0.0))
    history = explainer.fit(images, epochs=1, batch_size=16, verbose=0, removal_check=0)
    assert "misranked" not in history.history
    assert explainer.misranked_classes == ()


def test_the_flagged_classes_are_saved_with_the_explainer(tmp_path):
    images, _ = object_images(4)
    explainer = object_explainer(-1.0)
    explainer.misranked_classes = [1]
    path = os.path.join(tmp_path, "explainer.keras")
    explainer.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.misranked_classes == (1,)
    assert loaded.explain_outputs(images)["misranked"].all()


def test_bad_misranked_classes_get_a_clear_error():
    explainer = object_explainer(1.0)
    with pytest.raises(ValueError, match="misranked_classes"):
        explainer.misranked_classes = [2]
