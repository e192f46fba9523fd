"""Foreign classifiers (SavedModel, torch module, JAX function) as black boxes."""

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame import blackbox
from keras_ptame.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD
from tests.helpers import (
    NUM_CLASSES,
    random_images,
    tiny_classifier,
    tiny_feature_model,
)
from tests.helpers.test_case import run_layer_test

BACKEND = keras.config.backend()


def _explain_end_to_end(backbone):
    """Fits a decoder on the black box for one step and explains two images."""
    explainer = kp.PTAME(backbone, kp.AuxiliaryExtractor(tiny_feature_model()))
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    images = random_images(8)
    explainer.build(images.shape)
    before = [keras.ops.convert_to_numpy(w).copy() for w in explainer.decoder.weights]
    frozen = [keras.ops.convert_to_numpy(w).copy() for w in backbone.weights]
    explainer.fit(images, epochs=1, batch_size=8, verbose=0)
    after = [keras.ops.convert_to_numpy(w) for w in explainer.decoder.weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    for old, new in zip(frozen, backbone.weights, strict=True):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))
    maps = explainer.explain(images[:2])
    assert maps.shape == (2, 16, 16)
    assert 0.0 <= maps.min() and maps.max() <= 1.0
    return explainer


# === TensorFlow SavedModel ===


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TFSMLayer needs TensorFlow")
def test_saved_model_is_explained_as_a_black_box(tmp_path):
    import tensorflow as tf

    classifier = tiny_classifier()
    classifier.export(str(tmp_path / "classifier"), verbose=False)
    backbone = blackbox.saved_model(str(tmp_path / "classifier"))
    images = random_images(4).astype("float32")
    np.testing.assert_allclose(
        backbone(images).numpy(), classifier(images).numpy(), atol=1e-5
    )
    # Training needs gradients through the SavedModel to the pixels.
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(backbone(x)[:, 0])
    assert float(tf.reduce_sum(tf.abs(tape.gradient(score, x)))) > 0
    _explain_end_to_end(backbone)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TFSMLayer needs TensorFlow")
def test_saved_model_classifier_passes_the_layer_checks(tmp_path):
    classifier = tiny_classifier()
    classifier.export(str(tmp_path / "classifier"), verbose=False)
    run_layer_test(
        blackbox.SavedModelClassifier(str(tmp_path / "classifier"), name="saved"),
        random_images(2).astype("float32"),
        tmp_path,
        expected_output_shape=(2, NUM_CLASSES),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=len(classifier.weights),
    )


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TFSMLayer needs TensorFlow")
def test_saved_model_with_several_outputs_needs_output_key(tmp_path):
    import tensorflow as tf

    classifier = tiny_classifier()

    class TwoHeads(tf.Module):
        def __init__(self):
            super().__init__()
            # Tracked, so that its variables are saved with the module.
            self.classifier = classifier

        @tf.function(input_signature=[tf.TensorSpec((None, 16, 16, 3), tf.float32)])
        def serve(self, images):
            logits = self.classifier(images)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    module = TwoHeads()
    tf.saved_model.save(
        module, str(tmp_path / "two"), signatures={"serving_default": module.serve}
    )
    images = random_images(2).astype("float32")
    with pytest.raises(ValueError, match="output_key"):
        blackbox.saved_model(str(tmp_path / "two"))(images)
    backbone = blackbox.saved_model(str(tmp_path / "two"), output_key="logits")
    np.testing.assert_allclose(
        backbone(images).numpy(), classifier(images).numpy(), atol=1e-5
    )


@pytest.mark.skipif(BACKEND == "tensorflow", reason="checks the error elsewhere")
def test_saved_model_names_the_backend_it_needs(tmp_path):
    with pytest.raises(ValueError, match="needs the tensorflow backend"):
        blackbox.saved_model(str(tmp_path))


# === PyTorch module ===


def _torch_classifier():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, NUM_CLASSES),
    )


@pytest.mark.skipif(BACKEND != "torch", reason="TorchModuleWrapper needs torch")
def test_torch_module_is_explained_as_a_black_box():
    import torch

    module = _torch_classifier()
    backbone = blackbox.torch_module(
        module, preprocessor=blackbox.torchvision_normalization()
    )
    images = random_images(4).astype("float32")
    expected = module(
        (
            torch.tensor(images).permute(0, 3, 1, 2) / 255.0
            - torch.tensor(IMAGENET_MEAN)[:, None, None]
        )
        / torch.tensor(IMAGENET_STD)[:, None, None]
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(backbone(images)),
        expected.detach().numpy(),
        atol=1e-4,
    )
    assert not module.training
    assert not any(p.requires_grad for p in module.parameters())
    x = torch.tensor(images, requires_grad=True)
    backbone(x)[:, 0].sum().backward()
    assert float(x.grad.abs().sum()) > 0
    _explain_end_to_end(backbone)
    # BatchNorm statistics of the classifier stay as they were (eval mode).
    assert not module.training


@pytest.mark.skipif(BACKEND != "torch", reason="TorchModuleWrapper needs torch")
def test_torch_classifier_passes_the_layer_checks(tmp_path):
    module = _torch_classifier()
    # The module is pickled into the file: it loads with `safe_mode=False`.
    run_layer_test(
        blackbox.TorchClassifier(module, name="torch_classifier"),
        random_images(2).astype("float32"),
        tmp_path,
        expected_output_shape=(2, NUM_CLASSES),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=len(list(module.parameters())),
        safe_mode=False,
    )


@pytest.mark.skipif(BACKEND == "torch", reason="checks the error elsewhere")
def test_torch_module_names_the_backend_it_needs():
    with pytest.raises(ValueError, match="needs the torch backend"):
        blackbox.torch_module(object())


# === JAX function ===


def _jax_params():
    rng = np.random.default_rng(0)
    return {
        "kernel": rng.normal(size=(3, 3, 3, 8)).astype("float32") * 0.1,
        "dense": rng.normal(size=(8, NUM_CLASSES)).astype("float32"),
    }


def _jax_classify(params, inputs):
    import jax

    x = jax.lax.conv_general_dilated(
        inputs / 255.0,
        params["kernel"],
        window_strides=(1, 1),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return jax.numpy.mean(jax.nn.relu(x), axis=(1, 2)) @ params["dense"]


@pytest.mark.skipif(BACKEND != "jax", reason="JaxLayer needs JAX")
def test_jax_function_is_explained_as_a_black_box():
    import jax

    params = _jax_params()
    backbone = blackbox.jax_function(_jax_classify, params)
    images = random_images(4).astype("float32")
    np.testing.assert_allclose(
        np.asarray(backbone(images)),
        np.asarray(_jax_classify(params, images)),
        atol=1e-4,
    )
    grad = jax.grad(lambda x: backbone(x)[:, 0].sum())(images)
    assert float(np.abs(grad).sum()) > 0
    explainer = _explain_end_to_end(backbone)
    assert explainer.backbone.trainable_weights == []


@pytest.mark.skipif(BACKEND == "jax", reason="checks the error elsewhere")
def test_jax_function_names_the_backend_it_needs():
    with pytest.raises(ValueError, match="needs the jax backend"):
        blackbox.jax_function(lambda params, inputs: inputs, {})
