import keras
import numpy as np
import pytest
from keras import ops

from keras_ptame.models.fills import (
    FILLS,
    MIXTURE,
    apply_fill,
    check_fill,
    fill_components,
    fill_values,
    is_random,
)


def _images(count=16, size=8, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (count, size, size, channels)).astype("float32")


def _numpy(x):
    return ops.convert_to_numpy(x)


def test_a_mask_of_ones_keeps_the_image_whatever_the_fill():
    images = _images()
    ones = np.ones((16, 4, 4, 1), "float32")
    seed = keras.random.SeedGenerator(0)
    for fill in (*FILLS, "noise", "mixture", ("black", "noise")):
        out = _numpy(apply_fill(images, ones, fill, seed=seed))
        np.testing.assert_allclose(out, images, rtol=1e-5, atol=1e-3)


def test_noise_is_uniform_pixels_new_at_every_call():
    images = _images()
    zeros = np.zeros((16, 4, 4, 1), "float32")
    seed = keras.random.SeedGenerator(1)
    first = _numpy(apply_fill(images, zeros, "noise", seed=seed))
    second = _numpy(apply_fill(images, zeros, "noise", seed=seed))
    assert first.min() >= 0 and first.max() <= 255
    assert 100 < first.mean() < 155 and first.std() > 60
    assert not np.allclose(first, second)


def test_a_mixture_fills_each_image_with_one_of_its_fills():
    images = _images(count=32)
    zeros = np.zeros((32, 4, 4, 1), "float32")
    out = _numpy(apply_fill(images, zeros, ("black", "mean"), seed=3))
    means = np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape)
    black = np.all(out == 0, axis=(1, 2, 3))
    mean = np.all(np.isclose(out, means, atol=1e-3), axis=(1, 2, 3))
    assert np.all(black | mean)
    assert black.any() and mean.any()  # 32 draws of one in two
    # An int seed draws the same every call; a generator draws anew.
    again = _numpy(apply_fill(images, zeros, ("black", "mean"), seed=3))
    np.testing.assert_array_equal(out, again)


def test_a_random_fill_draws_anew_in_every_compiled_call():
    class Filled(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.seed = keras.random.SeedGenerator(0)

        def call(self, images):
            return apply_fill(
                images, ops.zeros_like(images[..., :1]), "mixture", self.seed
            )

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, Filled()(inputs))
    images = _images()
    first = model.predict(images, verbose=0)
    second = model.predict(images, verbose=0)
    assert first.shape == images.shape and np.isfinite(first).all()
    assert not np.allclose(first, second)


def test_random_fills_without_a_seed_draw_from_keras_global_generator():
    # Eagerly, as a check of what the fill image predicts would call it.
    images = _images()
    first = _numpy(fill_values(images, "noise"))
    second = _numpy(fill_values(images, "noise"))
    assert first.shape == images.shape and not np.allclose(first, second)
    mixed = _numpy(apply_fill(images, np.zeros((16, 4, 4, 1), "float32"), "mixture"))
    assert mixed.shape == images.shape and np.isfinite(mixed).all()


def test_fill_names_and_mixtures_are_checked():
    assert check_fill("black") == "black"
    assert check_fill(["black", "noise"]) == ("black", "noise")
    assert fill_components("mixture") == MIXTURE
    assert fill_components("blur") == ("blur",)
    assert not is_random("black") and is_random("noise") and is_random("mixture")
    assert is_random(("black", "mean"))
    for bad in ("white", ("black",), ("black", "black"), ("black", "white"), 3):
        with pytest.raises(ValueError, match="fill"):
            check_fill(bad)


# Issue 24: every fill acts per pixel on every channel, whatever their count:
# black is zero, mean each image's mean of each channel, blur each channel
# blurred alone, noise uniform in [0, 255]; a mixture gives each image one.
@pytest.mark.parametrize("channels", [1, 4, 7])
def test_every_fill_works_on_any_channel_count(channels):
    images = _images(size=16, channels=channels)
    zeros = np.zeros((16, 4, 4, 1), "float32")
    seed = keras.random.SeedGenerator(3)
    black = _numpy(apply_fill(images, zeros, "black"))
    np.testing.assert_array_equal(black, np.zeros_like(images))
    mean = _numpy(apply_fill(images, zeros, "mean"))
    expected = np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape)
    np.testing.assert_allclose(mean, expected, rtol=1e-5)
    blur = _numpy(apply_fill(images, zeros, "blur"))
    assert blur.shape == images.shape
    for channel in range(channels):
        alone = _numpy(fill_values(images[..., channel : channel + 1], "blur"))
        np.testing.assert_allclose(blur[..., channel], alone[..., 0], atol=1e-3)
    noise = _numpy(apply_fill(images, zeros, "noise", seed=seed))
    assert noise.shape == images.shape and noise.min() >= 0 and noise.max() <= 255
    mixture = _numpy(apply_fill(images, zeros, ("black", "mean", "blur"), seed=seed))
    for index in range(len(images)):
        assert any(
            np.allclose(mixture[index], fill[index], atol=1e-3)
            for fill in (black, mean, blur)
        )
    # A half mask keeps every channel of the kept half and fills the rest.
    half = np.concatenate([np.ones((16, 4, 2, 1)), np.zeros((16, 4, 2, 1))], axis=2)
    kept = _numpy(apply_fill(images, half.astype("float32"), "mean"))
    np.testing.assert_allclose(kept[:, :, :4], images[:, :, :4], rtol=1e-5)
    np.testing.assert_allclose(kept[:, :, -4:], mean[:, :, -4:], rtol=1e-5)
