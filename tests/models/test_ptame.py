import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import keras_ptame as kp
from keras_ptame.models.diverged import TrainingDiverged
from tests.helpers import (
    NUM_CLASSES,
    random_images,
    tiny_classifier,
    tiny_explainer,
    tiny_feature_model,
    to_numpy,
    weights_of,
)
from tests.helpers.test_case import (
    run_layer_test,
    run_model_saving_test,
    run_serialization_test,
)

BACKENDS = ("tensorflow", "jax", "torch")


def _compiled(**kwargs):
    explainer = tiny_explainer(**kwargs)
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    return explainer


def _predictions(explainer, images):
    return to_numpy(ops.argmax(explainer.backbone(images), axis=-1))


# === Training ===


def test_fit_lowers_the_loss_and_logs_every_term():
    explainer = _compiled()
    images = random_images(32)
    history = explainer.fit(images, epochs=6, batch_size=8, verbose=0).history
    assert {"loss", "ce", "area", "smoothness", "kept"} <= set(history)
    assert history["loss"][-1] < history["loss"][0]
    assert all(0.0 <= kept <= 1.0 for kept in history["kept"])


def test_fit_moves_only_the_decoder():
    explainer = _compiled()
    images = random_images(16)
    explainer.build((None, 16, 16, 3))
    backbone = weights_of(explainer.backbone)
    extractor = weights_of(explainer.extractor)
    decoder = weights_of(explainer.decoder)
    explainer.fit(images, epochs=2, batch_size=8, verbose=0)
    for before, after in zip(backbone, weights_of(explainer.backbone)):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(extractor, weights_of(explainer.extractor)):
        np.testing.assert_array_equal(before, after)
    moved = [
        not np.array_equal(b, a) for b, a in zip(decoder, weights_of(explainer.decoder))
    ]
    assert all(moved)  # kernels, biases, BN parameters and statistics
    assert {id(w) for w in explainer.trainable_weights} == {
        id(w) for w in explainer.decoder.trainable_weights
    }


def test_a_compiled_classifier_does_not_leak_its_metrics_into_the_logs():
    classifier = tiny_classifier()
    classifier.compile(loss="mse", metrics=["accuracy"])
    auxiliary = tiny_feature_model()
    auxiliary.compile(loss="mse")
    explainer = kp.PTAME(classifier, auxiliary)
    explainer.compile()
    history = explainer.fit(random_images(8), epochs=1, batch_size=4, verbose=0)
    expected = {"loss", "ce", "area", "smoothness", "kept", "empty"}
    assert set(history.history) == expected | {"misranked", "reversed"}
    assert history.history["loss"][0] > 0


def test_compile_defaults_are_the_chosen_ones_and_the_paper_s_loss_is_one_argument_away():
    explainer = kp.PTAME(tiny_classifier(), tiny_feature_model())
    explainer.compile()
    optimizer = explainer.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == (
        pytest.approx(1e-3)
    )
    assert optimizer.amsgrad and optimizer.epsilon == 1e-8
    chosen = explainer.perturbation_loss.get_config()
    paper = kp.PerturbationLoss().get_config()
    assert chosen == {**paper, "smoothness_coeff": 0.001}
    assert paper["smoothness_coeff"] == 0.01
    explainer.compile(loss=kp.PerturbationLoss())
    assert explainer.perturbation_loss.get_config() == paper


def test_labels_are_ignored():
    images = random_images(16)
    labels = np.full((16,), 3)
    runs = []
    for y in (None, labels, (labels + 1) % NUM_CLASSES):
        keras.utils.set_random_seed(0)
        explainer = _compiled()
        history = explainer.fit(
            images, y, epochs=1, batch_size=8, shuffle=False, verbose=0
        )
        runs.append(history.history["loss"][0])
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)
    assert runs[0] == pytest.approx(runs[2], rel=1e-5)


def test_fit_accepts_tf_data_of_images_or_image_label_pairs():
    tf = pytest.importorskip("tensorflow")
    images = random_images(16)
    labels = np.arange(16) % NUM_CLASSES
    for dataset in (
        tf.data.Dataset.from_tensor_slices(images).batch(8),
        tf.data.Dataset.from_tensor_slices((images, labels)).batch(8),
    ):
        explainer = _compiled()
        history = explainer.fit(dataset, epochs=1, verbose=0).history
        assert np.isfinite(history["loss"][0])


def test_training_pass_computes_maps_for_the_batch_classes_only():
    explainer = tiny_explainer(num_classes=10)
    images = random_images(5)
    out = explainer.perturb(ops.convert_to_tensor(images), training=False)
    assert tuple(out["maps"].shape) == (5, 8, 8, 5)
    np.testing.assert_array_equal(
        to_numpy(out["classes"]), _predictions(explainer, images)
    )
    # Map k of every image is the sigmoid of the decoder's map for class t_k.
    features = explainer.extractor(images)
    full = to_numpy(ops.sigmoid(explainer.decoder(features, training=False)))
    np.testing.assert_allclose(
        to_numpy(out["maps"]), full[..., to_numpy(out["classes"])], rtol=1e-5, atol=1e-6
    )


def test_black_fill_multiplies_the_image_by_its_own_map():
    explainer = tiny_explainer()
    images = random_images(3).astype("float32")
    out = explainer.perturb(ops.convert_to_tensor(images), training=False)
    own = np.stack([to_numpy(out["maps"])[b, :, :, b] for b in range(3)])
    mask = to_numpy(
        ops.image.resize(own[..., None], (16, 16), interpolation="bilinear")
    )
    expected = to_numpy(explainer.backbone(images * mask))
    np.testing.assert_allclose(
        to_numpy(out["masked_logits"]), expected, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("fill", ["mean", "blur"])
def test_other_fills_replace_the_masked_out_pixels(fill):
    explainer = tiny_explainer(fill=fill)
    images = ops.convert_to_tensor(random_images(2).astype("float32"))
    nothing_kept = to_numpy(explainer.apply_mask(images, ops.zeros((2, 4, 4, 1))))
    everything_kept = to_numpy(explainer.apply_mask(images, ops.ones((2, 4, 4, 1))))
    np.testing.assert_allclose(everything_kept, to_numpy(images), atol=1e-3)
    assert nothing_kept.std() < to_numpy(images).std() / 2  # flat or blurred
    assert nothing_kept.mean() == pytest.approx(to_numpy(images).mean(), rel=0.1)


# === Explanations ===


def test_explain_gives_one_map_in_zero_one_per_image_for_its_prediction():
    # No map flagged flat: random initial weights may give little contrast.
    explainer = tiny_explainer(evidence_threshold=0.0)
    images = random_images(7)
    maps = explainer.explain(images, batch_size=3)
    assert maps.shape == (7, 16, 16) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    # Normalised after upsampling (not the default), maps span [0, 1].
    spanning = explainer.explain(images, batch_size=3, normalize="minmax_upsampled")
    np.testing.assert_allclose(spanning.max(axis=(1, 2)), 1.0, atol=1e-5)
    outputs = explainer.explain_outputs(images)
    np.testing.assert_array_equal(outputs["classes"], _predictions(explainer, images))
    probabilities = to_numpy(ops.softmax(explainer.backbone(images)))
    np.testing.assert_allclose(
        outputs["scores"], probabilities.max(axis=-1), rtol=1e-5, atol=1e-6
    )


def test_explain_for_given_classes_matches_the_decoder_maps():
    # No map flagged flat: random initial weights may give little contrast.
    explainer = tiny_explainer(evidence_threshold=0.0)
    images = random_images(4)
    classes = np.array([3, 0, 2, 3])
    maps = explainer.explain(images, classes=classes)
    features = explainer.extractor(images)
    raw = to_numpy(explainer.decoder(features, training=False))
    for b, c in enumerate(classes):
        m = raw[b, :, :, c]
        # The authors' order: min-max at the decoder's size, then upsampled.
        m = (m - m.min()) / (m.max() - m.min() + 1e-8)
        up = to_numpy(
            ops.image.resize(m[None, :, :, None], (16, 16), interpolation="bilinear")
        )
        up = up[0, :, :, 0]
        np.testing.assert_allclose(maps[b], up, rtol=1e-4, atol=1e-5)
    other = explainer.explain(images, classes=(classes + 1) % NUM_CLASSES)
    assert not np.allclose(maps, other)


def test_maps_at_the_decoder_s_resolution_are_its_normalised_maps():
    # No map flagged flat: random initial weights may give little contrast.
    explainer = tiny_explainer(evidence_threshold=0.0)
    images = random_images(3)
    outputs = explainer.explain_outputs(images, resolution="decoder")
    raw = to_numpy(explainer.decoder(explainer.extractor(images), training=False))
    assert outputs["maps"].shape == (3, 8, 8)  # the finest feature map's size
    for b, c in enumerate(outputs["classes"]):
        m = raw[b, :, :, c]
        expected = (m - m.min()) / (m.max() - m.min() + 1e-8)
        np.testing.assert_allclose(outputs["maps"][b], expected, atol=1e-5)
    # The compiled resolution follows each call's choice, both ways.
    assert explainer.explain(images).shape == (3, 16, 16)
    assert explainer.explain(images, resolution="decoder").shape == (3, 8, 8)
    with pytest.raises(ValueError, match="resolution"):
        explainer.explain(images, resolution="full")


def test_explain_is_the_same_for_uint8_and_float_pixels_and_any_batch_size():
    explainer = tiny_explainer()
    images = random_images(5)
    a = explainer.explain(images, batch_size=5)
    b = explainer.explain(images.astype("float32"), batch_size=2)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_explain_runs_no_masked_classifier_pass():
    explainer = tiny_explainer()
    images = ops.convert_to_tensor(random_images(2))
    explainer.explain_batch(images)  # builds
    calls = []
    original = explainer.backbone.call
    explainer.backbone.call = lambda x: calls.append(1) or original(x)
    explainer.explain_batch(images)
    assert len(calls) == 1
    explainer.perturb(images)
    assert len(calls) == 3  # one plain and one masked pass in training


# === Saving ===


def test_saved_explainer_gives_the_same_maps_after_loading(tmp_path):
    explainer = _compiled()
    images = random_images(8)
    explainer.fit(images, epochs=1, batch_size=4, verbose=0)
    # The whole config and compile config (the loss's included), and the
    # maps, with `load_model`'s default `safe_mode=True`.
    restored = run_model_saving_test(
        explainer, images, tmp_path, call=lambda model, x: model.explain(x)
    )
    # Training goes on from where it stopped.
    restored.fit(images, epochs=1, batch_size=4, verbose=0)


def test_an_extractor_that_taps_the_classifier_itself_saves_and_loads(tmp_path):
    classifier = tiny_classifier()
    explainer = kp.PTAME(
        kp.Backbone(classifier),
        kp.AuxiliaryExtractor(classifier, layer_names=["stage1", "stage2"]),
    )
    images = random_images(3)
    expected = explainer.explain(images)
    path = str(tmp_path / "shared.keras")
    explainer.save(path)
    restored = keras.saving.load_model(path)
    assert restored.extractor.model is restored.backbone.classifier
    np.testing.assert_allclose(restored.explain(images), expected, rtol=1e-5, atol=1e-5)


def test_weights_saved_under_one_backend_load_under_another(tmp_path):
    current = keras.config.backend()
    other = BACKENDS[(BACKENDS.index(current) + 1) % 3]
    explainer = _compiled()
    images = random_images(4)
    explainer.fit(images, epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "explainer.keras"
    explainer.save(str(path))
    np.save(tmp_path / "images.npy", images)
    script = (
        "import json, sys, numpy as np, keras, keras_ptame\n"
        f"model = keras.saving.load_model({str(path)!r})\n"
        f"maps = model.explain(np.load({str(tmp_path / 'images.npy')!r}))\n"
        "print(json.dumps(maps.tolist()))\n"
    )
    env = dict(os.environ, KERAS_BACKEND=other)
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    maps = np.array(json.loads(result.stdout.strip().splitlines()[-1]), "float32")
    np.testing.assert_allclose(maps, explainer.explain(images), rtol=1e-4, atol=1e-4)


def test_config_round_trip():
    explainer = tiny_explainer(fill="mean", evidence_threshold=0.25)
    restored = run_serialization_test(explainer)
    assert restored.num_classes == NUM_CLASSES and restored.fill == "mean"


def test_layer_checks_and_saving(tmp_path):
    # Frozen: the classifier (2 convolutions and a dense layer) and the
    # auxiliary network (2 convolutions), a kernel and a bias each, the
    # decoder's moving statistics and the count of steps trained. Trained:
    # per feature map a convolution and a batch normalisation (2 weights
    # each), and the fuser's kernel.
    explainer = tiny_explainer()
    run_layer_test(
        explainer,
        random_images(2),
        tmp_path,
        expected_output_shape={
            "classes": (2,),
            "scores": (2,),
            "maps": (2, 16, 16),
            "evidence": (2,),
            "flat": (2,),
            "misranked": (2,),
        },
        expected_num_trainable_weights=2 * 4 + 1,
        expected_num_non_trainable_weights=6 + 4 + 2 * 2 + 1,
    )


def test_decoder_numerics_travel_with_the_explainer(tmp_path):
    explainer = tiny_explainer(
        decoder_options={"upsampling": "doubling", "batch_norm_epsilon": 1e-4}
    )
    images = random_images(2)
    expected = explainer.explain(images)
    explainer.save(tmp_path / "e.keras")
    restored = keras.saving.load_model(tmp_path / "e.keras")
    assert restored.decoder.upsampling == "doubling"
    np.testing.assert_allclose(restored.explain(images), expected, atol=1e-5)
    # A config from before the options existed keeps Keras' old defaults.
    config = explainer.get_config()
    del config["decoder_options"]
    old = kp.PTAME.from_config(config)
    assert old.decoder.batch_norm_epsilon == 1e-3
    assert old.decoder.upsampling == "resize"


def test_input_size_is_the_fixed_or_the_built_size():
    explainer = tiny_explainer()
    assert explainer.input_size == (16, 16)  # the tiny classifier is fixed
    free = kp.PTAME(
        kp.Backbone(_any_size_classifier()),
        kp.AuxiliaryExtractor(_any_size_classifier(), layer_names=["s1", "s2"]),
    )
    assert free.input_size is None
    free.ensure_built((None, 24, 32, 3))
    assert free.input_size == (24, 32)


def _any_size_classifier():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="s1")(inputs)
    x = keras.layers.Conv2D(8, 3, 2, padding="same", name="s2")(x)
    logits = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, logits)


def test_plain_keras_models_are_wrapped():
    explainer = kp.PTAME(tiny_classifier(), tiny_feature_model())
    assert isinstance(explainer.backbone, kp.Backbone)
    assert isinstance(explainer.extractor, kp.AuxiliaryExtractor)
    assert explainer.num_classes == NUM_CLASSES


def test_mixed_precision_maps_stay_close_to_float32():
    images = random_images(4)
    full = tiny_explainer()
    full.build((None, 16, 16, 3))
    mixed = tiny_explainer(dtype="mixed_bfloat16")
    mixed.build((None, 16, 16, 3))
    for target, source in zip(mixed.decoder.weights, weights_of(full.decoder)):
        target.assign(source)
    a, b = full.explain(images), mixed.explain(images)
    assert np.abs(a - b).mean() < 0.03


# === Bad input ===


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((16, 16, 3), "uint8"), "rank 3"),
        # Issue 24: the message names the channels read and received.
        (np.zeros((2, 16, 16, 4), "uint8"), "reads 3-channel images.*4 channels"),
        (np.zeros((2, 16, 16, 1), "float32"), "reads 3-channel images.*1 channel"),
        (np.full((2, 16, 16, 3), "a"), "dtype <U1"),
        (np.zeros((2, 16, 16, 3), bool), "dtype bool"),
        (np.zeros((0, 16, 16, 3), "uint8"), "empty"),
    ],
)
def test_bad_images_get_a_clear_error(images, message):
    explainer = _compiled()
    with pytest.raises(ValueError, match=message):
        explainer.explain(images)
    with pytest.raises(ValueError, match=message):
        explainer.fit(images, epochs=1, verbose=0)


def test_nan_or_inf_pixels_are_refused_before_training_starts():
    explainer = _compiled()
    images = random_images(8).astype("float32")
    explainer.build((None, 16, 16, 3))
    decoder = weights_of(explainer.decoder)
    images[3, 2, 2, 1] = np.nan
    images[5, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="2 NaN or Inf"):
        explainer.fit(images, epochs=1, verbose=0)
    for before, after in zip(decoder, weights_of(explainer.decoder)):
        np.testing.assert_array_equal(before, after)


def test_class_indices_out_of_range_are_refused():
    explainer = tiny_explainer()
    with pytest.raises(ValueError, match=r"\[0, 4\).*from 0 to 4"):
        explainer.explain(random_images(2), classes=[0, 4])
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        explainer.explain(random_images(2), classes=[0, 1, 2])
    with pytest.raises(ValueError, match="integer"):
        explainer.explain(random_images(2), classes=[0.5, 1])


def test_num_classes_that_disagrees_with_the_backbone_is_refused():
    with pytest.raises(ValueError, match="num_classes=5.*outputs 4"):
        kp.PTAME(tiny_classifier(num_classes=4), tiny_feature_model(), num_classes=5)


def test_feature_maps_that_cannot_be_aligned_are_refused_at_build():
    inputs = keras.Input((16, 16, 3))
    tall = keras.layers.Conv2D(4, (1, 4), strides=(1, 4))(inputs)  # 16 x 4
    wide = keras.layers.Conv2D(4, (4, 1), strides=(4, 1))(inputs)  # 4 x 16
    explainer = kp.PTAME(tiny_classifier(), keras.Model(inputs, [tall, wide]))
    with pytest.raises(ValueError, match="cannot be aligned"):
        explainer.explain(random_images(1))


def test_empty_or_unbatched_datasets_are_refused():
    tf = pytest.importorskip("tensorflow")
    explainer = _compiled()
    empty = tf.data.Dataset.from_tensor_slices(random_images(4)).take(0).batch(2)
    with pytest.raises(ValueError, match="empty"):
        explainer.fit(empty, verbose=0)
    unbatched = tf.data.Dataset.from_tensor_slices(random_images(4))
    with pytest.raises(ValueError, match="batch"):
        explainer.fit(unbatched, verbose=0)


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(ValueError, match="fill"):
        tiny_explainer(fill="white")
    with pytest.raises(ValueError, match="num_classes"):
        kp.PTAME(tiny_classifier(), tiny_feature_model(), num_classes=0)
    with pytest.raises(ValueError, match="PerturbationLoss"):
        tiny_explainer().compile(loss="mse")


# Issue 22, case 8
def test_a_loss_that_turns_nan_stops_training_with_an_error():
    explainer = _compiled()
    explainer.build((None, 16, 16, 3))
    kernel = explainer.decoder.weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    with pytest.raises(TrainingDiverged, match="loss was nan at epoch 1"):
        explainer.fit(random_images(8), epochs=2, batch_size=4, verbose=0)


# Issue 22, case 8
def test_a_last_step_that_turns_the_weights_nan_stops_training_with_an_error():
    # One step at an infinite rate: its loss is finite, its weights are not.
    explainer = tiny_explainer()
    explainer.compile(optimizer=keras.optimizers.SGD(float("inf")))
    with pytest.raises(ValueError, match="Training diverged: .*decoder.* NaN or Inf"):
        explainer.fit(random_images(4), epochs=1, batch_size=4, verbose=0)


# Issue 22, case 8
def test_a_diverged_training_leaves_no_backup_of_its_nan_weights(tmp_path):
    explainer = _compiled()
    explainer.build((None, 16, 16, 3))
    kernel = explainer.decoder.weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    backup = keras.callbacks.BackupAndRestore(str(tmp_path), delete_checkpoint=False)
    with pytest.raises(TrainingDiverged):
        explainer.fit(
            random_images(8), epochs=1, batch_size=4, verbose=0, callbacks=[backup]
        )
    assert not (tmp_path / "latest.weights.h5").exists()
