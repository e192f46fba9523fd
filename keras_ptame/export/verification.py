"""Checking that an exported SavedModel gives the explainer's own outputs.

The SavedModel runs in TensorFlow, on a CPU under JAX and PyTorch (the GPU is
hidden from TensorFlow there, see `keras_ptame.utils.tf_runtime`); the
explainer runs on its own device, in whatever precision that device computes
in: float32 on a CPU, TF32 for float32 convolutions and matmuls on NVIDIA GPUs
since Ampere (A100, L4, H100: inputs rounded to 11 significant bits), float16
or bfloat16 under a mixed dtype policy. The two differ by rounding, in
proportion to the coarser precision; so each tolerance is
`max(floor, multiple * unit_roundoff)`, the unit roundoff measured on the
explainer's device (`measured_precision`).
"""

import collections
import math

import keras
import numpy as np

from keras_ptame.export.tracing import exported_signatures
from keras_ptame.utils.tf_runtime import import_tensorflow

# Outputs compared, with the tolerance each gets when both sides compute in
# float32 (the floor of every tolerance). Maps are min-max normalised, which
# divides by each map's range: they differ a little more than the scores.
# Evidence is a difference of sigmoids, before any normalisation. A class is
# compared only where the classifier's top two logits differ by more than
# the logits' tolerance (relative to the largest logit, see
# `verification_tolerances`).
TOLERANCE_FLOORS = {"maps": 1e-3, "scores": 1e-5, "evidence": 1e-4, "logits": 1e-4}
# Each tolerance in units of the unit roundoff (2^-11 in TF32): four times
# the largest difference measured with TF32 emulated on a CPU, rounded up to
# a power of two. Emulated: the inputs of every convolution and matmul
# rounded to 11 significant bits (`tests/helpers/precision.py`), the
# explainer in TF32 against its SavedModel in float32, after four training
# steps, on TensorFlow, JAX and PyTorch: the tiny keras-hub ResNet pair at 32
# pixels, and ResNet-50 through ResNet-18 at 224 (random weights, the head
# scaled to logits up to 14: `python -m tests.export.tf32_differences
# [--large --gain 20]`). Largest differences, in units of 2^-11: maps 1.25
# (the README's 1.29, on the tiny presets, counted), scores 2.07, evidence
# 0.10, logits 2.24 of the largest logit. Four times: a GPU also sums in its
# own order, and two runs in TF32 differ by up to twice what one differs
# from float32.
ROUNDOFF_MULTIPLES = {"maps": 8, "scores": 16, "evidence": 0.5, "logits": 16}

# Significant bits (the unit roundoff is 2^-bits) of the float formats.
_FLOAT_BITS = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}
# What a float32 kernel keeping that many bits is.
_KERNEL_FORMATS = {24: "float32", 11: "TF32", 8: "bfloat16"}
_COARSEST_BITS = 8
_PROBE_CHANNELS = 64

Precision = collections.namedtuple("Precision", ["bits", "name", "how"])
Precision.__doc__ = """The precision an explainer computes in.

`bits`: significant bits, the unit roundoff is `2 ** -bits`; `name`: the
format (`"float32"`, `"TF32"`, `"float16"`, `"bfloat16"`); `how`: how it
was found, for messages."""


def probe_images(image_size, count=3, seed=0, channels=3):
    """Deterministic uint8 probe images: noise, a gradient and all black."""
    height, width = image_size
    rng = np.random.default_rng(seed)
    shape = (height, width, channels)
    images = rng.integers(0, 256, (count, *shape)).astype("uint8")
    ramp = np.linspace(0, 255, width, dtype="float32")
    images[1] = np.broadcast_to(ramp[None, :, None], shape).astype("uint8")
    images[-1] = 0
    return images


def measured_precision(explainer):
    """The coarser of two precisions: the backend's float32 kernels on its
    device, and the lowest compute dtype among the explainer's layers.

    The kernels are measured: a float32 matmul and a float32 convolution
    (64 channels, 3x3, the shapes of a ResNet's) through `keras.ops`, on
    values whose significands fill all 24 bits, each multiplied by an exact
    permutation (zeros and ones), so that the exact result is the input
    itself. A kernel that rounds its inputs to fewer bits (TF32 on an NVIDIA
    GPU: 11) moves them by up to `2 ** -bits` of their value; the largest
    relative move gives the bits kept. The dtype policy's compute dtype
    (`mixed_float16`: float16, 11 bits; `mixed_bfloat16`: 8) bounds them.

    Returns:
        A `Precision`.
    """
    kernels = _kernel_bits()
    bits = min(kernels.values())
    name = _KERNEL_FORMATS.get(bits, f"{bits} significant bits")
    how = ", ".join(f"{kernel} 2^-{b}" for kernel, b in kernels.items())
    how = f"measured: float32 {how}"
    dtype, dtype_bits = _lowest_compute_dtype(explainer)
    if dtype_bits < bits:
        bits, name = dtype_bits, dtype
        how = f"the layers' compute dtype; {how}"
    return Precision(bits, name, how)


def _kernel_bits():
    """Significant bits the float32 matmul and convolution keep, on the
    backend's default device."""
    rng = np.random.default_rng(0)
    channels = _PROBE_CHANNELS
    x = rng.uniform(1.0, 2.0, (2, 16, 16, channels)).astype("float32")
    order = rng.permutation(channels)
    # Column c holds a single one, in row order[c]: x @ select = x[..., order].
    select = np.eye(channels, dtype="float32")[order].T
    kernel = np.zeros((3, 3, channels, channels), "float32")
    kernel[1, 1] = select
    exact = x[..., order].astype("float64")
    outputs = {
        "matmul": keras.ops.matmul(x.reshape(-1, channels), select),
        "convolution": keras.ops.conv(x, kernel, padding="same"),
    }
    bits = {}
    for kernel_name, output in outputs.items():
        got = keras.ops.convert_to_numpy(output).astype("float64")
        moved = float(np.max(np.abs(got.reshape(exact.shape) - exact) / exact))
        if moved == 0:
            bits[kernel_name] = 24
        elif moved < 2.0**-_COARSEST_BITS:
            bits[kernel_name] = min(24, math.floor(-math.log2(moved)))
        else:
            # No float32 kernel rounds coarser than bfloat16; a kernel that
            # moves its inputs further does not loosen the check further.
            bits[kernel_name] = _COARSEST_BITS
    return bits


def _lowest_compute_dtype(explainer):
    """The float compute dtype with the fewest significant bits among the
    explainer's layers (its networks' included), and those bits."""
    dtypes = {
        keras.backend.standardize_dtype(layer.compute_dtype)
        for layer in explainer._flatten_layers(include_self=True)
    }
    floats = [dtype for dtype in dtypes if dtype in _FLOAT_BITS] or ["float32"]
    dtype = min(floats, key=_FLOAT_BITS.get)
    return dtype, _FLOAT_BITS[dtype]


def verification_tolerances(precision, logit_scale=1.0):
    """The tolerance of each compared output, for an explainer computing in
    `precision`: `max(TOLERANCE_FLOORS, ROUNDOFF_MULTIPLES * 2 ** -bits)`;
    the logits' (for near ties) relative to `logit_scale`, the largest
    absolute logit."""
    unit = 2.0**-precision.bits
    scales = {"logits": max(1.0, float(logit_scale))}
    return {
        key: max(floor, ROUNDOFF_MULTIPLES[key] * unit * scales.get(key, 1.0))
        for key, floor in TOLERANCE_FLOORS.items()
    }


def verify_saved_model(explainer, path, image_size, expected=None):
    """Raises `RuntimeError` if the SavedModel at `path` disagrees with `explainer`.

    Compares, on `probe_images`, the outputs of `explain_classes` (given the
    explainer's own classes, so that a near-tie between two classes cannot
    make the comparison flaky), the classes of `serving_default` and the
    outputs of `explain_top_k` (on the images whose top classes are not near
    ties) and the maps of `explain_uint8_maps` (`round(255 * maps)` of the
    graph's own float maps), within
    tolerances that follow from the precision the explainer computes in
    (`measured_precision`, `verification_tolerances`); the error names both.
    `expected`, optional, is the explainer's `explain_outputs` on them when
    already computed.
    """
    # Under JAX and PyTorch, TensorFlow only checks the export, on a CPU.
    tf = import_tensorflow()
    images = probe_images(image_size, channels=explainer.input_channels)
    if expected is None:
        expected = explainer.explain_outputs(images)
    served = tf.saved_model.load(path)
    wanted = exported_signatures(explainer.input_channels)
    missing = [name for name in wanted if name not in served.signatures]
    if missing:
        raise RuntimeError(f"The SavedModel lacks the signatures {missing}.")
    got = served.signatures["explain_classes"](
        images=tf.constant(images, tf.float32),
        classes=tf.constant(expected["classes"], tf.int32),
    )
    got = {key: value.numpy() for key, value in got.items()}
    precision = measured_precision(explainer)
    logits = keras.ops.convert_to_numpy(explainer.backbone(images))
    tolerances = verification_tolerances(precision, np.max(np.abs(logits)))
    problems = compare_explanations(
        got, expected, explainer.evidence_threshold, tolerances
    )
    # Run once, for the classes and for the uint8 maps.
    from_uint8 = served.signatures["explain_uint8"](images=tf.constant(images))
    from_uint8 = {key: value.numpy() for key, value in from_uint8.items()}
    problems += _compare_classes(
        served, images, from_uint8, logits, expected["classes"], tolerances
    )
    problems += _compare_top_k(explainer, served, images, logits, tolerances)
    problems += _compare_uint8_maps(served, images, from_uint8)
    if problems:
        limits = ", ".join(f"{key} {value:.2g}" for key, value in tolerances.items())
        raise RuntimeError(
            "The exported SavedModel does not reproduce the explainer "
            f"(KERAS_BACKEND={keras.config.backend()}; the explainer computes "
            f"in {precision.name}, unit roundoff 2^-{precision.bits} "
            f"({precision.how}); tolerances: {limits}): " + "; ".join(problems)
        )


def compare_explanations(got, expected, threshold, tolerances):
    """Differences beyond rounding between two `explain_outputs`."""
    problems = []
    for key in ("maps", "scores", "evidence", "flat", "misranked"):
        if key not in got or got[key].shape != expected[key].shape:
            shape = got[key].shape if key in got else "missing"
            problems.append(f"{key}: shape {shape} != {expected[key].shape}")
    if problems:
        return problems
    # A map whose evidence lies on the threshold may fall either side of it
    # in either backend; its map (and whether it is misranked, which a flat
    # map never is) is compared only where both agree.
    clear = np.abs(expected["evidence"] - threshold) > tolerances["evidence"]
    if np.any((got["flat"] != expected["flat"]) & clear):
        problems.append(f"flat: {got['flat'].tolist()} != {expected['flat'].tolist()}")
    same = got["flat"] == expected["flat"]
    if np.any(got["misranked"][same] != expected["misranked"][same]):
        problems.append(
            f"misranked: {got['misranked'].tolist()} != {expected['misranked'].tolist()}"
        )
    for key, where in (
        ("maps", same),
        ("scores", slice(None)),
        ("evidence", slice(None)),
    ):
        error = float(np.max(np.abs(got[key][where] - expected[key][where]), initial=0))
        if not error <= tolerances[key]:
            problems.append(
                f"{key}: max abs difference {error:.3g} > {tolerances[key]:.3g}"
            )
    return problems


def _compare_classes(served, images, from_uint8, logits, expected, tolerances):
    """Differences in the classes `serving_default` and `explain_uint8` give
    (`from_uint8`: the latter's outputs on `images`, as numpy; `logits`: the
    explainer's classifier's, for near ties)."""
    tf = import_tensorflow()
    problems = []
    classes = served.signatures["serving_default"](
        images=tf.constant(images, tf.float32)
    )["classes"].numpy()
    if not np.array_equal(from_uint8["classes"], classes):
        problems.append("explain_uint8: other classes than serving_default")
    top2 = np.sort(logits, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > tolerances["logits"]
    if np.any(classes[clear] != expected[clear]):
        problems.append(f"classes: {classes.tolist()} != {expected.tolist()}")
    return problems


def _compare_top_k(explainer, served, images, logits, tolerances):
    """Differences between `explain_top_k` and the explainer's `top_k`, for
    `k` up to 3, on the images whose `k + 1` highest logits are clear of
    each other (`logits`: the explainer's classifier's)."""
    tf = import_tensorflow()
    k = min(3, explainer.num_classes)
    expected = explainer.explain_outputs(images, top_k=k)
    got = served.signatures["explain_top_k"](
        images=tf.constant(images, tf.float32), k=tf.constant(k, tf.int32)
    )
    got = {key: value.numpy() for key, value in got.items()}
    if got["maps"].shape != expected["maps"].shape:
        return [f"explain_top_k: maps of shape {got['maps'].shape}"]
    top = np.sort(logits, axis=-1)[:, ::-1][:, : k + 1]
    clear = np.all(-np.diff(top, axis=-1) > tolerances["logits"], axis=-1)
    if np.any(got["classes"][clear] != expected["classes"][clear]):
        return [f"explain_top_k: classes {got['classes'].tolist()}"]
    rows = {key: value[clear] for key, value in got.items()}
    problems = compare_explanations(
        rows,
        {key: value[clear] for key, value in expected.items()},
        explainer.evidence_threshold,
        tolerances,
    )
    return [f"explain_top_k: {problem}" for problem in problems]


def _compare_uint8_maps(served, images, floats):
    """Differences between `explain_uint8_maps` and `round(255 * maps)` of
    `explain_uint8` (`floats`, its outputs on the same uint8 `images`, as
    numpy): one level at most, for a float map that lies on a rounding
    boundary in one graph and not the other."""
    tf = import_tensorflow()
    lean = served.signatures["explain_uint8_maps"](images=tf.constant(images))
    maps = lean["maps"].numpy()
    if maps.dtype != np.uint8:
        return [f"explain_uint8_maps: maps of dtype {maps.dtype}, not uint8"]
    if not np.array_equal(lean["classes"].numpy(), floats["classes"]):
        return ["explain_uint8_maps: other classes than explain_uint8"]
    wanted = np.round(255 * floats["maps"])
    error = float(np.max(np.abs(maps.astype("float32") - wanted), initial=0))
    if error > 1:
        return [f"explain_uint8_maps: maps {error:.0f} levels from round(255 * maps)"]
    return []
