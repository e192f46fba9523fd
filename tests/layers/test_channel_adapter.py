"""`ChannelAdapter` (keras_ptame/layers/channel_adapter.py): grayscale repeated,
chosen channels passed on, saved with the explainer, clear refusals."""

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.layers.channel_adapter import ChannelAdapter
from tests.helpers import (
    random_images,
    tiny_classifier,
    tiny_feature_model,
    to_numpy,
)
from tests.helpers.test_case import run_layer_test, run_serialization_test


# Issue 24: `repeat=3` puts the one grayscale channel on each of three.
def test_repeat_copies_the_grayscale_channel_on_every_output_channel(tmp_path):
    gray = random_images(2, channels=1).astype("float32")
    out = to_numpy(ChannelAdapter(repeat=3)(gray))
    assert out.shape == (2, 16, 16, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray[..., 0])
    run_layer_test(
        ChannelAdapter(repeat=3),
        gray,
        tmp_path,
        expected_output_shape=(2, 16, 16, 3),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


# Issue 24: `channels=(...)` passes exactly those input channels, in order.
@pytest.mark.parametrize("channels", [(0, 1, 2), (3, 2, 1), (4, 4, 0), (2,)])
def test_select_passes_the_chosen_channels_in_order(channels):
    bands = random_images(2, channels=5).astype("float32")
    out = to_numpy(ChannelAdapter(channels=channels)(bands))
    np.testing.assert_array_equal(out, bands[..., list(channels)])


# Issue 24: the adapter's config brings back the same adapter.
@pytest.mark.parametrize("options", [{"repeat": 3}, {"channels": [3, 0, 1]}])
def test_the_adapter_serializes(options):
    revived = run_serialization_test(ChannelAdapter(**options))
    assert revived.output_channels == 3


# Issue 24: bad arguments and images it cannot adapt are named.
@pytest.mark.parametrize(
    "options, match",
    [
        ({}, "exactly one of `channels` and `repeat`"),
        ({"channels": (0, 1), "repeat": 3}, "exactly one"),
        ({"channels": ()}, "non-empty sequence"),
        ({"channels": (0, -1)}, "channel indices"),
        ({"channels": (0.5,)}, "channel indices"),
        ({"repeat": 0}, "`repeat` must be a positive integer"),
        ({"repeat": True}, "`repeat` must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        ChannelAdapter(**options)


# Issue 24: an adapter refuses images it cannot adapt, naming their channels.
def test_images_it_cannot_adapt_are_named():
    with pytest.raises(ValueError, match="repeats a one-channel.*3 channels"):
        ChannelAdapter(repeat=3)(random_images(1).astype("float32"))
    with pytest.raises(ValueError, match="reads channel 4.*have 4 channels"):
        ChannelAdapter(channels=(0, 4))(random_images(1, channels=4).astype("float32"))


def _tiny_rgb_extractor(**kwargs):
    return kp.AuxiliaryExtractor(tiny_feature_model(), **kwargs)


# Issue 24: an RGB auxiliary network reads grayscale images through the
# adapter: its features are those of the gray image repeated on RGB.
def test_an_rgb_extractor_reads_grayscale_through_the_adapter():
    gray = random_images(2, channels=1)
    extractor = _tiny_rgb_extractor(adapter=ChannelAdapter(repeat=3))
    extractor.build(gray.shape)
    plain = _tiny_rgb_extractor()
    rgb = np.repeat(gray, 3, axis=-1)
    for got, expected in zip(extractor(gray), plain(rgb), strict=True):
        np.testing.assert_allclose(to_numpy(got), to_numpy(expected), atol=1e-5)


# Issue 24: the extractor's network refuses other channels, naming both.
def test_an_extractor_without_adapter_names_the_channels():
    extractor = _tiny_rgb_extractor()
    with pytest.raises(
        ValueError,
        match=r"`auxiliary` of this AuxiliaryExtractor reads 3-channel images, "
        r"but receives 4 channels.*ChannelAdapter",
    ):
        extractor.build((None, 16, 16, 4))


# Issue 24: an explainer of grayscale images with an RGB auxiliary network
# (the adapter saved with it) trains, explains and loads with the same maps.
def test_an_explainer_with_an_adapted_extractor_saves_and_loads(tmp_path):
    images = random_images(8, channels=1)
    explainer = kp.PTAME(
        kp.Backbone(tiny_classifier(channels=1)),
        kp.AuxiliaryExtractor(tiny_feature_model(), adapter=ChannelAdapter(repeat=3)),
    )
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2))
    explainer.fit(images, epochs=1, batch_size=4, verbose=0)
    maps = explainer.explain(images)
    assert maps.shape == (8, 16, 16) and explainer.input_channels == 1
    path = str(tmp_path / "adapted.keras")
    explainer.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.extractor.adapter, ChannelAdapter)
    assert loaded.extractor.adapter.repeat == 3
    np.testing.assert_allclose(loaded.explain(images), maps, atol=1e-5)


# Issue 24: a keras-hub preset's RGB network reads chosen bands of a
# multispectral image through `from_preset(..., adapter=...)`: the features
# of bands (2, 1, 0) are those of that RGB image; without the adapter the
# channels are named.
def test_a_preset_extractor_reads_chosen_bands(tmp_path):
    pytest.importorskip("keras_hub")
    from keras_ptame.demo import save_tiny_resnet

    preset = save_tiny_resnet(tmp_path / "tiny_resnet")
    bands = random_images(2, size=32, channels=5)
    adapted = kp.AuxiliaryExtractor.from_preset(
        preset, adapter=ChannelAdapter(channels=(2, 1, 0))
    )
    adapted.build(bands.shape)
    plain = kp.AuxiliaryExtractor.from_preset(preset)
    rgb = np.ascontiguousarray(bands[..., [2, 1, 0]])
    for got, expected in zip(adapted(bands), plain(rgb), strict=True):
        np.testing.assert_allclose(to_numpy(got), to_numpy(expected), atol=1e-4)
    with pytest.raises(ValueError, match="reads 3-channel images, but receives 5"):
        kp.AuxiliaryExtractor.from_preset(preset).build(bands.shape)


# Issue 24: a classifier of RGB images explains 4-band images through its
# `Backbone`'s adapter: its scores are those of the chosen bands; the adapter
# is in the backbone's config.
def test_a_backbone_reads_chosen_bands_through_its_adapter():
    classifier = tiny_classifier()
    backbone = kp.Backbone(classifier, adapter=ChannelAdapter(channels=(0, 1, 2)))
    bands = random_images(2, channels=4)
    backbone.build(bands.shape)
    expected = to_numpy(kp.Backbone(classifier)(bands[..., :3]))
    np.testing.assert_allclose(to_numpy(backbone(bands)), expected, atol=1e-5)
    revived = run_serialization_test(backbone)
    assert revived.adapter.channels == [0, 1, 2]


# Issue 24: an adapter given as the `preprocessor` itself works the same, and
# the channels the network takes are known before any call.
def test_an_adapter_as_the_preprocessor_reads_grayscale():
    gray = random_images(2, channels=1)
    extractor = _tiny_rgb_extractor(preprocessor=ChannelAdapter(repeat=3))
    assert extractor.input_channels == 1
    assert _tiny_rgb_extractor().input_channels == 3
    extractor.build(gray.shape)
    expected = _tiny_rgb_extractor()(np.repeat(gray, 3, axis=-1))
    for got, want in zip(extractor(gray), expected, strict=True):
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), atol=1e-5)
