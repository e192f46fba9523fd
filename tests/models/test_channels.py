"""Explainers of grayscale (1) and multispectral (4) images: trained, explained,
saved and loaded as RGB ones are, on every backend; other channel counts
refused with both counts named."""

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.models.fills import FILLS, RANDOM_FILLS, apply_fill
from tests.helpers import random_images, tiny_explainer, weights_of

CHANNELS = [1, 4]


def _trained(channels, fill="black", seed=0):
    keras.utils.set_random_seed(seed)
    explainer = tiny_explainer(channels=channels, fill=fill)
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    images = random_images(8, channels=channels, seed=seed)
    explainer.fit(images, epochs=1, batch_size=4, verbose=0)
    return explainer, images


# Issue 24: fit and explain on 1- and 4-channel images: one map per image in
# [0, 1]; the classifier and auxiliary network unchanged, the decoder trained.
@pytest.mark.parametrize("channels", CHANNELS)
def test_fit_and_explain_on_any_channel_count(channels):
    keras.utils.set_random_seed(0)
    explainer = tiny_explainer(channels=channels)
    images = random_images(8, channels=channels)
    explainer.build((None, 16, 16, channels))
    assert explainer.input_channels == channels
    frozen = weights_of(explainer.backbone) + weights_of(explainer.extractor)
    decoder = weights_of(explainer.decoder)
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    explainer.fit(images, epochs=2, batch_size=4, verbose=0)
    outputs = explainer.explain_outputs(images)
    assert outputs["maps"].shape == (8, 16, 16)
    assert outputs["maps"].min() >= 0.0 and outputs["maps"].max() <= 1.0
    assert np.all(np.isfinite(outputs["scores"]))
    after = weights_of(explainer.backbone) + weights_of(explainer.extractor)
    for before, now in zip(frozen, after, strict=True):
        np.testing.assert_array_equal(before, now)
    assert any(
        not np.array_equal(before, now)
        for before, now in zip(decoder, weights_of(explainer.decoder), strict=True)
    )


# Issue 24: a saved 1- or 4-channel explainer loads with its channel count and
# gives the same maps.
@pytest.mark.parametrize("channels", CHANNELS)
def test_save_and_load_give_the_same_maps(channels, tmp_path):
    explainer, images = _trained(channels)
    maps = explainer.explain(images)
    path = str(tmp_path / f"gray{channels}.keras")
    explainer.save(path)
    loaded = kp.load_explainer(path)
    assert loaded.input_channels == channels
    np.testing.assert_allclose(loaded.explain(images), maps, atol=1e-5)


# Issue 24: once built, other channel counts are refused with both named.
@pytest.mark.parametrize("channels", CHANNELS)
def test_other_channel_counts_are_refused_naming_both(channels):
    explainer, _ = _trained(channels)
    wrong = random_images(2, channels=3)
    word = "channel" if channels == 1 else "channels"
    match = (
        rf"`images` must have {channels} {word}, as the explainer was built "
        r"with\. Received: shape \(2, 16, 16, 3\) \(3 channels\)"
    )
    with pytest.raises(ValueError, match=match):
        explainer.explain(wrong)
    with pytest.raises(ValueError, match=match):
        explainer.fit(wrong, epochs=1, verbose=0)


# Issue 24: before it is built, the explainer refuses images its classifier
# cannot read, naming the classifier's channels and the images'.
def test_a_classifier_of_other_channels_is_named_at_build():
    explainer = tiny_explainer(channels=4)
    assert explainer.input_channels == 4  # what the classifier declares
    with pytest.raises(
        ValueError, match=r"reads 4-channel images, but receives 1 channel"
    ):
        explainer.explain(random_images(2, channels=1))


# Issue 24: every fill fills 1- and 4-channel images, each channel alone:
# kept where the mask is 1, the fill's values where it is 0.
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("fill", [*FILLS, *RANDOM_FILLS])
def test_every_fill_fills_any_channel_count(channels, fill):
    images = random_images(2, channels=channels).astype("float32")
    images[..., -1] = 255.0  # the last channel differs from the others
    mask = np.zeros((2, 16, 16, 1), "float32")
    mask[:, :8] = 1.0
    filled = keras.ops.convert_to_numpy(
        apply_fill(images, mask, fill, seed=keras.random.SeedGenerator(0))
    )
    assert filled.shape == images.shape
    np.testing.assert_array_equal(filled[:, :8], images[:, :8])
    removed = filled[:, 8:]
    # Within float32 rounding of [0, 255] (the blur divides two sums).
    assert np.all(np.isfinite(removed)) and removed.min() >= -1e-3
    assert removed.max() <= 255 + 1e-3
    if fill == "black":
        np.testing.assert_array_equal(removed, 0.0)
    if fill == "mean":
        np.testing.assert_allclose(
            removed,
            np.broadcast_to(images.mean((1, 2), keepdims=True), removed.shape),
            rtol=1e-5,
        )
    if fill in ("mean", "blur"):
        np.testing.assert_allclose(removed[..., -1], 255.0, rtol=1e-5)


# Issue 24: the mixture computes every single fill in the training step (one
# is chosen per image), so one training with it trains through them all on
# 1- and 4-channel explainers.
@pytest.mark.parametrize("channels", CHANNELS)
def test_the_mixture_of_every_fill_trains_on_any_channel_count(channels):
    explainer, images = _trained(channels, fill="mixture")
    maps = explainer.explain(images)
    assert maps.shape == (8, 16, 16)
    assert np.all(np.isfinite(maps)) and maps.min() >= 0 and maps.max() <= 1
    assert np.isfinite(explainer.history.history["loss"][-1])


# Issue 24: a tf.data pipeline of grayscale synthetic shapes trains too.
@pytest.mark.parametrize("channels", CHANNELS)
def test_a_dataset_of_synthetic_shapes_trains(channels):
    pytest.importorskip("tensorflow")
    dataset = kp.datasets.shapes_dataset(
        8,
        batch_size=4,
        image_size=16,
        num_classes=4,
        size_range=(0.5, 0.6),
        channels=channels,
    )
    keras.utils.set_random_seed(0)
    explainer = tiny_explainer(channels=channels)
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2))
    explainer.fit(dataset, epochs=1, verbose=0)
    images = next(iter(dataset))[0].numpy()
    assert images.shape == (4, 16, 16, channels)
    assert explainer.explain(images).shape == (4, 16, 16)
