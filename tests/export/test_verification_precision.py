"""The export check's tolerances follow from the precision the explainer
computes in: float32 on a CPU, TF32 on recent NVIDIA GPUs (emulated here by
`tests.helpers.precision.emulated_tf32`), float16 or bfloat16 under a mixed
dtype policy; and still catch a wrong model or a wrong map."""

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame import export
from keras_ptame.demo import TINY_IMAGE_SIZE, save_tiny_presets
from keras_ptame.export.verification import TOLERANCE_FLOORS
from tests.helpers import IMAGE_SIZE, random_images, tiny_explainer
from tests.helpers.precision import emulated_tf32, round_to_tf32

tf = pytest.importorskip("tensorflow")
pytest.importorskip("keras_hub")

SIZE = (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    return save_tiny_presets(tmp_path_factory.mktemp("presets"))


def _trained_resnet_explainer(classifier, auxiliary, seed=0):
    """An explainer over the tiny keras-hub ResNets, after four training steps."""
    keras.utils.set_random_seed(seed)
    explainer = kp.PTAME(
        kp.Backbone.from_preset(classifier),
        kp.AuxiliaryExtractor.from_preset(auxiliary),
    )
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    images = random_images(16, size=TINY_IMAGE_SIZE, seed=seed)
    explainer.fit(images, epochs=1, batch_size=4, verbose=0)
    return explainer


@pytest.fixture(scope="module")
def exported(presets, tmp_path_factory):
    """The trained tiny ResNet explainer and its SavedModel, written in float32."""
    explainer = _trained_resnet_explainer(*presets)
    path = str(tmp_path_factory.mktemp("export") / "ptame" / "1")
    export.export_saved_model(explainer, path, verify=False)
    return explainer, path


def _served_outputs(path, images, classes):
    served = tf.saved_model.load(path)
    got = served.signatures["explain_classes"](
        images=tf.constant(images, tf.float32), classes=tf.constant(classes, tf.int32)
    )
    return {key: value.numpy() for key, value in got.items()}


# Issue 23: the emulation rounds to 11 significant bits, as a GPU's TF32 does.
def test_tf32_emulation_keeps_eleven_significant_bits():
    values = np.array(
        [1 + 2**-11, 1 + 2**-12, 1 + 3 * 2**-12, -(1 + 2**-10)], "float32"
    )
    rounded = keras.ops.convert_to_numpy(round_to_tf32(values))
    # Halfway cases go away from zero; 10 stored mantissa bits are kept.
    np.testing.assert_array_equal(rounded, [1 + 2**-10, 1, 1 + 2**-10, -(1 + 2**-10)])
    x = np.random.default_rng(0).uniform(1, 2, (32, 32)).astype("float32")
    eye = np.eye(32, dtype="float32")
    with emulated_tf32():
        product = keras.ops.convert_to_numpy(keras.ops.matmul(x, eye))
    moved = np.abs(product.astype("float64") - x) / x
    assert 2**-13 < moved.max() <= 2**-11
    # Outside the context, float32 again.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(keras.ops.matmul(x, eye)), x
    )


# Issue 23: on a CPU the explainer computes in float32: the floors are the tolerances.
def test_a_cpu_measures_float32():
    explainer = tiny_explainer()
    explainer.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    precision = export.measured_precision(explainer)
    assert (precision.bits, precision.name) == (24, "float32")
    assert "matmul 2^-24, convolution 2^-24" in precision.how
    assert export.verification_tolerances(precision) == TOLERANCE_FLOORS


# Issue 23: the probe measures TF32 where the kernels round to it.
def test_the_probe_measures_tf32_where_the_kernels_round_to_it():
    explainer = tiny_explainer()
    explainer.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    with emulated_tf32():
        precision = export.measured_precision(explainer)
    assert (precision.bits, precision.name) == (11, "TF32")
    tolerances = export.verification_tolerances(precision)
    for key, floor in TOLERANCE_FLOORS.items():
        assert tolerances[key] == max(
            floor, export.verification.ROUNDOFF_MULTIPLES[key] * 2**-11
        )


# Issue 23: under a mixed policy, the precision is that of the compute dtype.
@pytest.mark.parametrize(
    ("policy", "bits"), [("mixed_float16", 11), ("mixed_bfloat16", 8)]
)
def test_a_mixed_policy_computes_in_its_compute_dtype(policy, bits):
    keras.config.set_dtype_policy(policy)
    try:
        explainer = tiny_explainer()
        explainer.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    finally:
        keras.config.set_dtype_policy("float32")
    precision = export.measured_precision(explainer)
    assert (precision.bits, precision.name) == (bits, policy.split("_")[1])
    assert precision.how.startswith("the layers' compute dtype; measured")


# Issue 23: the explainer in TF32 against its SavedModel in float32 (a TF32 GPU
# against TensorFlow on the CPU) passes; the float32 tolerances would not.
def test_the_check_passes_in_tf32(exported):
    explainer, path = exported
    images = export.probe_images(SIZE)
    with emulated_tf32(explainer):
        expected = explainer.explain_outputs(images)
        export.verify_saved_model(explainer, path, SIZE)
    got = _served_outputs(path, images, expected["classes"])
    # What the check allowed before (1e-5 for scores) is exceeded: the issue's
    # `scores: max abs difference 2.3e-05 > 1e-05`.
    assert (
        np.max(np.abs(got["scores"] - expected["scores"])) > TOLERANCE_FLOORS["scores"]
    )


# Issue 23: in TF32, the SavedModel of another decoder or another classifier
# is still caught, and the message names the precision and the tolerances.
@pytest.mark.parametrize("other", ["decoder", "classifier"])
def test_the_check_catches_another_model_in_tf32(exported, presets, other):
    explainer, path = exported
    classifier, auxiliary = presets
    keras.utils.set_random_seed(99)
    backbone = (
        explainer.backbone
        if other == "decoder"
        else kp.Backbone.from_preset(auxiliary)  # other weights, same classes
    )
    wrong = kp.PTAME(backbone, explainer.extractor)
    wrong.build((None, *SIZE, 3))
    if other == "classifier":
        wrong.decoder.set_weights(explainer.decoder.get_weights())
    with emulated_tf32(wrong), pytest.raises(RuntimeError) as raised:
        export.verify_saved_model(wrong, path, SIZE)
    message = str(raised.value)
    assert "computes in TF32, unit roundoff 2^-11 (measured: float32 matmul" in message
    assert "tolerances: maps 0.0039, scores 0.0078" in message
    assert ("maps: max abs difference" if other == "decoder" else "scores:") in message


# Issue 23: a flipped or shifted map is caught in TF32.
@pytest.mark.parametrize("change", ["flipped", "shifted"])
def test_the_check_catches_a_wrong_map_in_tf32(exported, change):
    explainer, path = exported
    images = export.probe_images(SIZE)
    with emulated_tf32(explainer):
        expected = explainer.explain_outputs(images)
        maps = expected["maps"]
        assert np.any(maps), "the probe images need a map that is not flat"
        wrong = (
            np.flip(maps, axis=2) if change == "flipped" else np.roll(maps, 1, axis=1)
        )
        with pytest.raises(
            RuntimeError, match=r"maps: max abs difference .* > 0\.0039"
        ):
            export.verify_saved_model(
                explainer, path, SIZE, expected={**expected, "maps": wrong}
            )


# Issue 23: the export, check included, passes under a mixed dtype policy
# (the SavedModel computes in the same policy, restored from the .keras file).
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_the_export_passes_under_a_mixed_policy(policy, tmp_path):
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        explainer = tiny_explainer()
        explainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
        explainer.fit(random_images(8, seed=1), epochs=1, batch_size=4, verbose=0)
        path = export.export_saved_model(explainer, tmp_path / "ptame" / "1")
    finally:
        keras.config.set_dtype_policy("float32")
    images = export.probe_images((IMAGE_SIZE, IMAGE_SIZE))
    expected = explainer.explain_outputs(images)
    got = _served_outputs(path, images, expected["classes"])
    # Not float32's agreement, but within the rounding of the compute dtype.
    tolerances = export.verification_tolerances(export.measured_precision(explainer))
    assert tolerances["maps"] > TOLERANCE_FLOORS["maps"]
    for key in ("maps", "scores", "evidence"):
        assert np.max(np.abs(got[key] - expected[key])) <= tolerances[key]
