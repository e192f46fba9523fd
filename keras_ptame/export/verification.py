"""Checking that an exported SavedModel gives the explainer's own outputs."""

import keras
import numpy as np

from keras_ptame.export.tracing import SIGNATURES

# Maps are min-max normalised, which divides by each map's range: backends
# that differ in the last float32 bits differ a little more after it.
MAPS_ATOL = 1e-3
SCORES_ATOL = 1e-5
# Evidence is a difference of sigmoids, before any normalisation.
EVIDENCE_ATOL = 1e-4


def probe_images(image_size, count=3, seed=0):
    """Deterministic uint8 probe images: noise, a gradient and all black."""
    height, width = image_size
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, height, width, 3)).astype("uint8")
    ramp = np.linspace(0, 255, width, dtype="float32")
    images[1] = np.broadcast_to(ramp[None, :, None], (height, width, 3)).astype("uint8")
    images[-1] = 0
    return images


def verify_saved_model(explainer, path, image_size, expected=None):
    """Raises `RuntimeError` if the SavedModel at `path` disagrees with `explainer`.

    Compares, on `probe_images`, the outputs of `explain_classes` (given the
    explainer's own classes, so that a near-tie between two classes cannot
    make the comparison flaky) and the classes of `serving_default`.
    `expected`, optional, is the explainer's `explain_outputs` on them when
    already computed.
    """
    import tensorflow as tf

    images = probe_images(image_size)
    if expected is None:
        expected = explainer.explain_outputs(images)
    served = tf.saved_model.load(path)
    missing = [name for name in SIGNATURES if name not in served.signatures]
    if missing:
        raise RuntimeError(f"The SavedModel lacks the signatures {missing}.")
    got = served.signatures["explain_classes"](
        images=tf.constant(images, tf.float32),
        classes=tf.constant(expected["classes"], tf.int32),
    )
    got = {key: value.numpy() for key, value in got.items()}
    problems = _compare_explanations(got, expected, explainer.evidence_threshold)
    problems += _compare_classes(served, explainer, images, expected["classes"])
    if problems:
        raise RuntimeError(
            "The exported SavedModel does not reproduce the explainer "
            f"(KERAS_BACKEND={keras.config.backend()}): " + "; ".join(problems)
        )


def _compare_explanations(got, expected, threshold):
    """Differences beyond float rounding between two `explain_outputs`."""
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
    clear = np.abs(expected["evidence"] - threshold) > EVIDENCE_ATOL
    if np.any((got["flat"] != expected["flat"]) & clear):
        problems.append(f"flat: {got['flat'].tolist()} != {expected['flat'].tolist()}")
    same = got["flat"] == expected["flat"]
    if np.any(got["misranked"][same] != expected["misranked"][same]):
        problems.append(
            f"misranked: {got['misranked'].tolist()} != {expected['misranked'].tolist()}"
        )
    for key, atol, where in (
        ("maps", MAPS_ATOL, same),
        ("scores", SCORES_ATOL, slice(None)),
        ("evidence", EVIDENCE_ATOL, slice(None)),
    ):
        error = float(np.max(np.abs(got[key][where] - expected[key][where]), initial=0))
        if not error <= atol:
            problems.append(f"{key}: max abs difference {error:.3g} > {atol}")
    return problems


def _compare_classes(served, explainer, images, expected):
    """Differences in the classes `serving_default` and `explain_uint8` give."""
    import tensorflow as tf

    problems = []
    classes = served.signatures["serving_default"](
        images=tf.constant(images, tf.float32)
    )["classes"].numpy()
    from_uint8 = served.signatures["explain_uint8"](images=tf.constant(images))
    if not np.array_equal(from_uint8["classes"].numpy(), classes):
        problems.append("explain_uint8: other classes than serving_default")
    logits = keras.ops.convert_to_numpy(explainer.backbone(images))
    top2 = np.sort(logits, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-4
    if np.any(classes[clear] != expected[clear]):
        problems.append(f"classes: {classes.tolist()} != {expected.tolist()}")
    return problems
