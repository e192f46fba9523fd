"""Classifiers and auxiliary networks built from presets, offline.

Tiny random keras-hub models are saved as local preset directories and loaded
through `from_preset`, the same path as `from_preset("resnet_50_imagenet")`.
"""

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.demo import (
    TINY_IMAGE_SIZE,
    TINY_NUM_CLASSES,
    save_tiny_resnet,
    save_tiny_vit,
)
from keras_ptame.layers import pretrained_networks
from keras_ptame.layers.preprocessors import ApplicationPreprocessor, ImagePreprocessor
from tests.helpers import to_numpy
from tests.helpers.test_case import run_layer_test

keras_hub = pytest.importorskip("keras_hub")

SIZE = TINY_IMAGE_SIZE


@pytest.fixture(scope="module")
def resnet_preset(tmp_path_factory):
    return save_tiny_resnet(tmp_path_factory.mktemp("presets") / "tiny_resnet")


@pytest.fixture(scope="module")
def vit_preset(tmp_path_factory):
    return save_tiny_vit(tmp_path_factory.mktemp("presets") / "tiny_vit")


@pytest.fixture(scope="module")
def vgg_preset(tmp_path_factory):
    """A five-block VGG classifier (blocks of one 4-filter conv), saved locally."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.VGGBackbone(
        stackwise_num_repeats=[1] * 5,
        stackwise_num_filters=[4, 4, 8, 8, 8],
        image_shape=(SIZE, SIZE, 3),
    )
    converter = keras_hub.layers.VGGImageConverter(
        image_size=(SIZE, SIZE), scale=1 / 255.0
    )
    classifier = keras_hub.models.VGGImageClassifier(
        backbone=backbone,
        num_classes=TINY_NUM_CLASSES,
        # The default head's 7x7 convolution needs 224x224 images.
        pooling="flatten",
        pooling_hidden_dim=8,
        preprocessor=keras_hub.models.VGGImageClassifierPreprocessor(converter),
    )
    directory = tmp_path_factory.mktemp("presets") / "tiny_vgg"
    classifier.save_to_preset(str(directory))
    return str(directory)


def _images(count=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, SIZE, SIZE, 3)).astype("uint8")


def test_backbone_from_preset_preprocesses_raw_pixels(resnet_preset):
    backbone = kp.Backbone.from_preset(resnet_preset)
    assert isinstance(backbone.preprocessor, ImagePreprocessor)
    assert backbone.num_classes == TINY_NUM_CLASSES
    assert backbone.output_type == "logits"
    assert not backbone.trainable_weights
    images = _images(2).astype("float32")
    expected = backbone.classifier(backbone.preprocessor(images), training=False)
    np.testing.assert_allclose(
        to_numpy(backbone(images)), to_numpy(expected), atol=1e-5
    )


def test_extractor_from_preset_taps_the_four_stages(resnet_preset):
    extractor = kp.AuxiliaryExtractor.from_preset(resnet_preset)
    assert isinstance(extractor.preprocessor, ImagePreprocessor)
    features = extractor(_images(2))
    # P2..P5 of a ResNet: strides 4, 8, 16, 32, finest first.
    assert [tuple(f.shape) for f in features] == [
        (2, SIZE // 4, SIZE // 4, 64),
        (2, SIZE // 8, SIZE // 8, 8),
        (2, SIZE // 16, SIZE // 16, 8),
        (2, SIZE // 32, SIZE // 32, 8),
    ]
    two = kp.AuxiliaryExtractor.from_preset(resnet_preset, feature_names=["P3", "P5"])
    assert [tuple(f.shape)[1] for f in two(_images(2))] == [SIZE // 8, SIZE // 32]
    with pytest.raises(ValueError, match="P9"):
        kp.AuxiliaryExtractor.from_preset(resnet_preset, feature_names=["P9"])


def _check_explained(explainer, images):
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    explainer.build(images.shape)
    decoder = [to_numpy(w).copy() for w in explainer.decoder.weights]
    frozen = [to_numpy(w).copy() for w in explainer.backbone.weights]
    explainer.fit(images, epochs=1, batch_size=len(images), verbose=0)
    assert any(
        not np.allclose(a, to_numpy(b))
        for a, b in zip(decoder, explainer.decoder.weights, strict=True)
    )
    for old, new in zip(frozen, explainer.backbone.weights, strict=True):
        np.testing.assert_array_equal(old, to_numpy(new))
    outputs = explainer.explain_outputs(images[:2])
    assert outputs["maps"].shape == (2, SIZE, SIZE)
    assert 0.0 <= outputs["maps"].min() and outputs["maps"].max() <= 1.0
    return outputs


def test_vit_classifier_with_resnet_extractor_explained_end_to_end(
    vit_preset, resnet_preset
):
    # A ViT classifier (token outputs, pooled to logits by the task head)
    # explained with the features of a ResNet, as in the paper's ViT setting.
    backbone = kp.Backbone.from_preset(vit_preset)
    assert backbone.num_classes == TINY_NUM_CLASSES
    explainer = kp.PTAME(backbone, kp.AuxiliaryExtractor.from_preset(resnet_preset))
    _check_explained(explainer, _images(4))


@pytest.mark.slow
def test_resnet_preset_explained_end_to_end_and_saved(resnet_preset, tmp_path):
    explainer = kp.PTAME(
        kp.Backbone.from_preset(resnet_preset),
        kp.AuxiliaryExtractor.from_preset(resnet_preset),
    )
    images = _images(4)
    outputs = _check_explained(explainer, images)
    explainer.save(tmp_path / "explainer.keras")
    loaded = keras.saving.load_model(tmp_path / "explainer.keras")
    np.testing.assert_allclose(loaded.explain(images[:2]), outputs["maps"], atol=1e-5)
    # A loaded explainer trains on: no keras-hub task state comes back with it.
    loaded.fit(images, epochs=1, batch_size=len(images), verbose=0)


@pytest.mark.slow
def test_loaded_preset_explainer_trains_only_its_decoder(resnet_preset, tmp_path):
    explainer = kp.PTAME(
        kp.Backbone.from_preset(resnet_preset),
        kp.AuxiliaryExtractor.from_preset(resnet_preset),
    )
    explainer.build((None, SIZE, SIZE, 3))
    explainer.save(tmp_path / "explainer.keras")
    loaded = keras.saving.load_model(tmp_path / "explainer.keras")
    assert len(loaded.trainable_weights) == len(explainer.decoder.trainable_weights)


def test_preset_image_size_overrides_the_converter(resnet_preset):
    backbone = kp.Backbone.from_preset(resnet_preset, image_size=48)
    assert backbone.preprocessor.image_size == (48, 48)


def test_failed_download_says_what_failed_and_how_to_fix_it(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.ImageClassifier, "from_preset", offline)
    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(OSError, match="network access") as error:
        kp.Backbone.from_preset("resnet_50_imagenet")
    assert "resnet_50_imagenet" in str(error.value)
    assert "save_to_preset" in str(error.value)
    with pytest.raises(OSError, match="local directory"):
        kp.AuxiliaryExtractor.from_preset("resnet_18_imagenet")


def test_unknown_preset_is_not_reported_as_a_download_failure():
    with pytest.raises(ValueError, match="Unknown preset"):
        kp.Backbone.from_preset("resnet_5_imagenet")


def test_application_preprocessor_matches_preprocess_input(tmp_path):
    images = _images(2).astype("float32")
    layer = ApplicationPreprocessor("resnet50")
    expected = keras.applications.resnet50.preprocess_input(images.copy())
    np.testing.assert_allclose(to_numpy(layer(images)), expected, atol=1e-4)
    run_layer_test(
        layer,
        images,
        tmp_path,
        expected_output_shape=images.shape,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        atol=1e-4,
    )
    with pytest.raises(ValueError, match="keras.applications"):
        ApplicationPreprocessor("not_a_module")


def _fake_application(calls):
    """Stands in for `keras.applications.ResNet50`: same arguments, tiny model."""

    def build(weights=None, input_shape=None, include_top=True, **kwargs):
        calls.append(dict(weights=weights, include_top=include_top, **kwargs))
        inputs = keras.Input(input_shape)
        x = inputs
        for index, name in enumerate(
            pretrained_networks.application_layer_names(RESNET50)
        ):
            x = keras.layers.Conv2D(
                4, 3, strides=2 if index else 4, padding="same", name=name
            )(x)
        if include_top:
            x = keras.layers.Dense(kwargs["classes"])(
                keras.layers.GlobalAveragePooling2D()(x)
            )
        return keras.Model(inputs, x)

    return build


RESNET50 = "keras.applications.ResNet50"


def test_keras_application_backbone_and_extractor(monkeypatch):
    # The real ResNet50 is too big for a unit test; the plumbing is what is
    # tested: the arguments, the `resnet50` preprocessing, the stage layers.
    calls = []
    monkeypatch.setattr(keras.applications, "ResNet50", _fake_application(calls))
    backbone = kp.Backbone.from_preset(RESNET50, load_weights=False, image_size=SIZE)
    assert isinstance(backbone.preprocessor, ApplicationPreprocessor)
    assert backbone.preprocessor.module == "resnet50"
    assert calls[-1]["classifier_activation"] is None  # logits
    assert calls[-1]["weights"] is None
    assert tuple(backbone(_images(1)).shape) == (1, 1000)
    extractor = kp.AuxiliaryExtractor.from_preset(RESNET50, image_size=SIZE)
    assert calls[-1] == {"weights": "imagenet", "include_top": False}
    assert [tuple(f.shape)[1] for f in extractor(_images(1))] == [
        SIZE // 4,
        SIZE // 8,
        SIZE // 16,
        SIZE // 32,
    ]
    with pytest.raises(ValueError, match="layer_names"):
        kp.AuxiliaryExtractor.from_preset("keras.applications.MobileNetV2")
    with pytest.raises(ValueError, match="Unknown `keras.applications` model"):
        kp.Backbone.from_preset("keras.applications.ResNet51")


def test_failed_application_download_says_how_to_fix_it(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...")

    monkeypatch.setattr(keras.applications, "ResNet50", offline)
    with pytest.raises(OSError, match="load_weights=False"):
        kp.Backbone.from_preset(RESNET50)


# === VGG stages, other image sizes, preprocessing on the accelerator ===


def test_vgg_extractor_taps_blocks_two_to_five(vgg_preset):
    # keras-hub's VGG has no `pyramid_outputs`: its pooled blocks 2..5
    # (strides 4..32) are the stages, as for a ResNet.
    extractor = kp.AuxiliaryExtractor.from_preset(vgg_preset)
    assert extractor.layer_names == [f"block{i}_pool" for i in range(2, 6)]
    assert [tuple(f.shape) for f in extractor(_images(2))] == [
        (2, SIZE // 4, SIZE // 4, 4),
        (2, SIZE // 8, SIZE // 8, 8),
        (2, SIZE // 16, SIZE // 16, 8),
        (2, SIZE // 32, SIZE // 32, 8),
    ]
    explainer = kp.PTAME(kp.Backbone.from_preset(vgg_preset), extractor)
    _check_explained(explainer, _images(4))


def test_fixed_size_classifier_explains_images_of_any_size(vit_preset, resnet_preset):
    # The ViT takes only 32x32 images, but its converter resizes: the
    # explainer takes any size and returns maps at the size given.
    explainer = kp.PTAME(
        kp.Backbone.from_preset(vit_preset),
        kp.AuxiliaryExtractor.from_preset(resnet_preset),
    )
    rng = np.random.default_rng(0)
    tall = rng.integers(0, 256, (3, 48, 40, 3)).astype("uint8")
    maps = explainer.explain(tall)
    assert maps.shape == (3, 48, 40)
    assert 0.0 <= maps.min() and maps.max() <= 1.0
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    explainer.fit(tall, epochs=1, batch_size=3, verbose=0)
    assert explainer.explain(_images(2)).shape == (2, SIZE, SIZE)
    wide = rng.integers(0, 256, (2, 24, 64, 3)).astype("uint8")
    assert explainer.explain(wide).shape == (2, 24, 64)


def test_fixed_size_network_without_resizing_still_refuses_other_sizes(
    resnet_preset,
):
    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    classifier = keras.Model(inputs, keras.layers.Dense(3)(pooled))
    explainer = kp.PTAME(
        kp.Backbone(classifier), kp.AuxiliaryExtractor.from_preset(resnet_preset)
    )
    with pytest.raises(ValueError, match="32x32"):
        explainer.explain(np.zeros((1, 40, 40, 3), "uint8"))


def test_image_preprocessor_matches_the_preset_converter(
    resnet_preset, vit_preset, tmp_path
):
    for preset in (resnet_preset, vit_preset):
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
        layer = ImagePreprocessor.from_converter(converter)
        # Square images: the converter's crop to the aspect ratio is a no-op.
        for size in (SIZE, 50):
            images = _images(2).astype("float32")
            images = np.resize(images, (2, size, size, 3))
            np.testing.assert_allclose(
                to_numpy(layer(images)), to_numpy(converter(images)), atol=1e-5
            )
        run_layer_test(
            layer,
            _images(1),
            tmp_path,
            expected_output_shape=(1, SIZE, SIZE, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
        )


def test_preset_preprocessing_is_not_pinned_to_the_cpu(resnet_preset):
    # Under TensorFlow, keras-hub's converter pins its ops to the CPU inside
    # `tf.function` (so `fit` would resize and normalise every batch there);
    # the explainer's preprocessing runs on the device it is placed on.
    if keras.config.backend() != "tensorflow":
        pytest.skip("device pinning inside tf.function is TensorFlow's")
    import tensorflow as tf

    spec = tf.TensorSpec((2, 40, 40, 3), tf.float32)

    def devices(function):
        graph = tf.function(function).get_concrete_function(spec).graph
        return {op.device for op in graph.get_operations()}

    converter = keras_hub.layers.ImageConverter.from_preset(resnet_preset)
    assert any("CPU" in device for device in devices(converter))
    backbone = kp.Backbone.from_preset(resnet_preset)
    extractor = kp.AuxiliaryExtractor.from_preset(resnet_preset)
    assert devices(backbone) == {""}
    assert devices(extractor) == {""}


# Issue 23: keras-hub 0.21 (Colab's) `ViTImageConverter` normalises once more
# after its scale and offset; CI's keras-hub has no such step, so a stand-in
# converter with keras-hub 0.21's attributes checks that it is folded in.
def test_a_converter_s_second_normalisation_is_folded_in():
    class ViTConverter021:
        image_size, interpolation, antialias = (4, 4), "bilinear", False
        name, dtype_policy = "vit_converter", "float32"
        scale, offset = 1 / 255.0, None
        norm_mean, norm_std = [0.5, 0.4, 0.3], [0.5, 0.25, 0.2]

    images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    layer = ImagePreprocessor.from_converter(ViTConverter021())
    mean, std = (
        np.asarray(ViTConverter021.norm_mean),
        np.asarray(ViTConverter021.norm_std),
    )
    expected = (images / 255.0 - mean) / std
    np.testing.assert_allclose(to_numpy(layer(images)), expected, rtol=1e-5, atol=1e-5)
