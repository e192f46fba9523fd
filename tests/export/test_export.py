"""The SavedModel export: its signatures reproduce `explain` on every backend.

Under JAX and PyTorch the export rebuilds the explainer under TensorFlow in
a child process; these tests then compare that graph's outputs with the
explainer's own, computed by the backend it was trained on.
"""

import errno
import io
import json
import os
import shutil
import subprocess

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame import export
from keras_ptame.export import saved_model
from tests.helpers import (
    IMAGE_SIZE,
    briefly_trained_explainer,
    random_images,
    tiny_explainer,
)
from tests.helpers.files import snapshot

tf = pytest.importorskip("tensorflow")
Image = pytest.importorskip("PIL.Image")

ATOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A briefly trained explainer and its SavedModel (exported once)."""
    explainer = briefly_trained_explainer()
    path = str(tmp_path_factory.mktemp("export") / "ptame" / "1")
    explainer.export(path, verbose=0)  # PTAME.export -> export_saved_model
    return explainer, path


@pytest.fixture(scope="module")
def served(exported):
    return tf.saved_model.load(exported[1])


def assert_same(got, expected, atol=ATOL):
    np.testing.assert_array_equal(np.asarray(got["classes"]), expected["classes"])
    np.testing.assert_allclose(np.asarray(got["scores"]), expected["scores"], atol=atol)
    np.testing.assert_allclose(np.asarray(got["maps"]), expected["maps"], atol=atol)
    np.testing.assert_allclose(
        np.asarray(got["evidence"]), expected["evidence"], atol=atol
    )
    np.testing.assert_array_equal(np.asarray(got["flat"]), expected["flat"])
    np.testing.assert_array_equal(np.asarray(got["misranked"]), expected["misranked"])


def encode(image, format="PNG", mode=None):
    picture = Image.fromarray(image)
    if mode is not None:
        picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, format=format)
    return buffer.getvalue()


def test_layout_and_signatures(exported, served):
    _, path = exported
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert set(export.SIGNATURES) <= set(served.signatures)
    outputs = served.signatures["serving_default"].structured_outputs
    assert set(outputs) == {
        "classes", "scores", "maps", "evidence", "flat", "misranked",
    }  # fmt: skip
    assert outputs["misranked"].dtype == tf.bool
    # Nothing but the SavedModel is left next to it.
    assert os.listdir(os.path.dirname(path)) == ["1"]


@pytest.mark.parametrize("count", [1, 5])
def test_serving_default_equals_explain(exported, served, count):
    explainer, _ = exported
    images = random_images(count, seed=count)
    expected = explainer.explain_outputs(images)
    got = served.signatures["serving_default"](images=tf.constant(images, tf.float32))
    assert_same(got, expected)
    assert got["maps"].shape == (count, IMAGE_SIZE, IMAGE_SIZE)


def test_uint8_images_from_python(exported, served):
    explainer, _ = exported
    images = random_images(3, seed=11)
    expected = explainer.explain_outputs(images)
    assert_same(served.serving_default(tf.constant(images)), expected)
    classes = np.array([3, 0, 1], "int32")
    assert_same(
        served.explain_classes(tf.constant(images), tf.constant(classes)),
        explainer.explain_outputs(images, classes),
    )


def test_uint8_signature_equals_the_float_one(exported, served):
    explainer, _ = exported
    images = random_images(4, seed=12)
    from_uint8 = served.signatures["explain_uint8"](images=tf.constant(images))
    from_float = served.signatures["serving_default"](
        images=tf.constant(images, tf.float32)
    )
    assert from_uint8["maps"].dtype == tf.float32
    np.testing.assert_array_equal(from_uint8["classes"], from_float["classes"])
    np.testing.assert_array_equal(from_uint8["maps"], from_float["maps"])
    assert_same(from_uint8, explainer.explain_outputs(images))


# Issue 27: uint8 maps in the reply, `round(255 * maps)` of the float ones.
def test_uint8_maps_signature_rounds_the_float_maps(exported, served):
    explainer, _ = exported
    images = tf.constant(random_images(4, seed=13))
    lean = served.signatures["explain_uint8_maps"](images=images)
    floats = served.signatures["explain_uint8"](images=images)
    assert lean["maps"].dtype == tf.uint8
    np.testing.assert_array_equal(
        lean["maps"], np.round(255 * floats["maps"].numpy()).astype("uint8")
    )
    for key in ("classes", "scores", "evidence", "flat", "misranked"):
        np.testing.assert_array_equal(lean[key], floats[key], err_msg=key)
    # Against the explainer's own uint8 maps: one level apart at most, where
    # the two backends' float maps straddle a rounding boundary.
    expected = explainer.explain(images.numpy(), dtype="uint8")
    assert np.max(np.abs(lean["maps"].numpy() - expected.astype(int))) <= 1
    np.testing.assert_array_equal(
        served.explain_uint8_maps(images)["maps"], lean["maps"]
    )


def test_explain_classes_equals_explain(exported, served):
    explainer, _ = exported
    images = random_images(4, seed=12)
    classes = np.array([0, 1, 2, 3], "int32")
    expected = explainer.explain_outputs(images, classes=classes)
    got = served.signatures["explain_classes"](
        images=tf.constant(images, tf.float32), classes=tf.constant(classes)
    )
    assert_same(got, expected)
    np.testing.assert_array_equal(got["classes"].numpy(), classes)


@pytest.mark.parametrize("bad", [[0, 4], [-1, 0]])
def test_explain_classes_rejects_out_of_range(served, bad):
    # A wrapped-around index would silently explain another class.
    with pytest.raises(tf.errors.InvalidArgumentError, match="classes"):
        served.signatures["explain_classes"](
            images=tf.constant(random_images(2), tf.float32),
            classes=tf.constant(bad, tf.int32),
        )


# Issue 24: explain_top_k gives explain_outputs(top_k=k): (B, k, ...) outputs.
@pytest.mark.parametrize("k", [1, 3])
def test_explain_top_k_equals_explain(exported, served, k):
    explainer, _ = exported
    images = random_images(4, seed=14)
    expected = explainer.explain_outputs(images, top_k=k)
    got = served.signatures["explain_top_k"](
        images=tf.constant(images, tf.float32), k=tf.constant(k, tf.int32)
    )
    assert got["maps"].shape == (4, k, IMAGE_SIZE, IMAGE_SIZE)
    assert got["classes"].shape == got["flat"].shape == (4, k)
    assert_same(got, expected)
    # From Python, uint8 images too.
    assert_same(served.explain_top_k(tf.constant(images), tf.constant(k)), expected)


def test_explain_encoded_png_equals_explain(exported, served):
    explainer, _ = exported
    images = random_images(3, seed=13)
    got = served.signatures["explain_encoded"](
        encoded=tf.constant([encode(image) for image in images])
    )
    assert_same(got, explainer.explain_outputs(images))


def test_explain_encoded_converts_and_resizes(exported, served):
    explainer, _ = exported
    big = random_images(1, size=24, seed=14)[0][:, :20]
    blobs = [
        encode(random_images(1, seed=15)[0], "JPEG"),
        encode(random_images(1, seed=16)[0], mode="L"),
        encode(random_images(1, seed=17)[0], mode="RGBA"),
        encode(big),
    ]
    got = served.signatures["explain_encoded"](encoded=tf.constant(blobs))
    # The same decoding and resizing, done eagerly, then explained in Python.
    images = np.stack(
        [
            tf.image.resize(
                tf.cast(tf.io.decode_image(blob, channels=3), tf.float32),
                (IMAGE_SIZE, IMAGE_SIZE),
            ).numpy()
            for blob in blobs
        ]
    )
    assert_same(got, explainer.explain_outputs(images))
    assert got["maps"].shape == (4, IMAGE_SIZE, IMAGE_SIZE)


def test_explain_encoded_rejects_garbage(served):
    with pytest.raises(tf.errors.InvalidArgumentError):
        served.signatures["explain_encoded"](encoded=tf.constant([b"not an image"]))


def test_wrong_image_size_is_rejected(served):
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        served.signatures["serving_default"](
            images=tf.constant(random_images(1, size=IMAGE_SIZE + 4), tf.float32)
        )


def test_saved_model_cli_run(exported, tmp_path):
    """The TF command-line runner (what TF Serving executes) gives the same maps."""
    explainer, path = exported
    cli = shutil.which("saved_model_cli")
    if cli is None:
        pytest.skip("saved_model_cli is not installed")
    images = random_images(2, seed=21)
    expected = explainer.explain_outputs(images)
    np.save(tmp_path / "images.npy", images.astype("float32"))
    # Fixed-width bytes need no pickle; PNG files never end in a zero byte.
    np.save(tmp_path / "encoded.npy", np.array([encode(image) for image in images]))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    for signature, inputs in (
        ("serving_default", f"images={tmp_path / 'images.npy'}"),
        ("explain_encoded", f"encoded={tmp_path / 'encoded.npy'}"),
    ):
        out = tmp_path / signature
        result = subprocess.run(
            [
                cli,
                "run",
                "--dir",
                path,
                "--tag_set",
                "serve",
                "--signature_def",
                signature,
                "--inputs",
                inputs,
                "--outdir",
                str(out),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        got = {
            key: np.load(out / f"{key}.npy")
            for key in ("classes", "scores", "maps", "evidence", "flat", "misranked")
        }
        assert_same(got, expected)


def test_a_map_without_evidence_is_served_flat_as_explain_returns_it(
    exported, tmp_path
):
    explainer, _ = exported
    images = random_images(2, seed=5)
    low, high = sorted(explainer.explain_outputs(images)["evidence"])
    saved = explainer.evidence_threshold
    try:
        # Between the two maps' evidence: one is flagged, the other not.
        explainer.evidence_threshold = (low + high) / 2
        expected = explainer.explain_outputs(images)
        path = explainer.export(str(tmp_path / "flat"), verbose=0)
    finally:
        explainer.evidence_threshold = saved
    assert sorted(expected["flat"].tolist()) == [False, True]
    assert not np.any(expected["maps"][expected["flat"]])
    served = tf.saved_model.load(path)
    assert_same(
        served.signatures["serving_default"](images=tf.constant(images, tf.float32)),
        expected,
    )


def test_misranked_maps_are_served_as_explain_flags_them(exported, tmp_path):
    explainer, _ = exported
    images = random_images(4, seed=8)
    saved = explainer.misranked_classes, explainer.evidence_threshold
    try:
        # No map flat, and the first image's class flagged by the removal check.
        explainer.evidence_threshold = 0.0
        classes = explainer.explain_outputs(images)["classes"]
        explainer.misranked_classes = [classes[0]]
        expected = explainer.explain_outputs(images)
        path = explainer.export(str(tmp_path / "misranked"), verbose=0)
        # The verification compares `misranked` too: every other class flagged
        # instead, the export does not reproduce the explainer.
        others = set(range(explainer.num_classes)) - {int(classes[0])}
        explainer.misranked_classes = others
        with pytest.raises(RuntimeError, match="misranked: "):
            export.verify_saved_model(explainer, path, (IMAGE_SIZE, IMAGE_SIZE))
    finally:
        explainer.misranked_classes, explainer.evidence_threshold = saved
    np.testing.assert_array_equal(expected["misranked"], classes == classes[0])
    served = tf.saved_model.load(path)
    got = served.signatures["serving_default"](images=tf.constant(images, tf.float32))
    assert got["misranked"].dtype == tf.bool
    assert_same(got, expected)


def test_existing_path_is_an_error_then_overwritten(exported, tmp_path):
    explainer, _ = exported
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        export.export_saved_model(explainer, target)
    assert (target / "keep.txt").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["model"]

    # `overwrite` replaces only a SavedModel this package wrote.
    with pytest.raises(FileExistsError, match="not a SavedModel exported"):
        export.export_saved_model(explainer, target, overwrite=True, verify=False)
    assert (target / "keep.txt").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_overwrite_replaces_an_earlier_export_only(exported, tmp_path):
    explainer, earlier = exported
    target = tmp_path / "ptame" / "1"
    shutil.copytree(earlier, target)
    assert export.is_own_export(target)
    export.export_saved_model(explainer, target, overwrite=True, verify=False)
    assert (target / "saved_model.pb").is_file() and export.is_own_export(target)
    # A version folder among its siblings, the base folder itself, the
    # working folder: never replaced.
    with pytest.raises(FileExistsError, match="not a SavedModel exported"):
        export.export_saved_model(explainer, tmp_path / "ptame", overwrite=True)


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_export_leaves_nothing(exported, tmp_path, monkeypatch, error):
    explainer, _ = exported

    def half_written(*args):
        # Whichever route runs, it writes part of a SavedModel and dies.
        output = args[1]
        os.makedirs(os.path.join(output, "variables"))
        with open(os.path.join(output, "saved_model.pb"), "wb") as file:
            file.write(b"\x08\x01")
        raise error("killed mid-export")

    monkeypatch.setattr(saved_model, "write_saved_model", half_written)
    monkeypatch.setattr(saved_model, "_export_in_subprocess", half_written)
    target = tmp_path / "ptame" / "1"
    with pytest.raises(error):
        export.export_saved_model(explainer, target)
    assert not target.exists()
    assert os.listdir(tmp_path / "ptame") == []


def test_interrupted_overwrite_keeps_the_previous_export(
    exported, tmp_path, monkeypatch
):
    explainer, earlier = exported
    target = tmp_path / "model"
    shutil.copytree(earlier, target)
    (target / "assets.extra" / "keras_ptame.json").write_text("previous export")

    def failing_verify(*args, **kwargs):
        raise RuntimeError("verification failed")

    monkeypatch.setattr(saved_model, "verify_saved_model", failing_verify)
    monkeypatch.setattr(
        saved_model,
        "write_saved_model",
        lambda explainer, path, size: os.makedirs(path),
    )
    monkeypatch.setattr(
        saved_model,
        "_export_in_subprocess",
        lambda keras_file, path, size, safe_mode: os.makedirs(path),
    )
    with pytest.raises(RuntimeError, match="verification"):
        export.export_saved_model(explainer, target, overwrite=True)
    marker = target / "assets.extra" / "keras_ptame.json"
    assert marker.read_text() == "previous export"
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_verify_catches_a_different_explainer(exported):
    _, path = exported
    keras.utils.set_random_seed(99)
    other = kp.PTAME(exported[0].backbone, exported[0].extractor)
    other.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    with pytest.raises(RuntimeError, match="does not reproduce"):
        export.verify_saved_model(other, path, (IMAGE_SIZE, IMAGE_SIZE))


def test_arguments_are_checked(exported, tmp_path):
    explainer, _ = exported
    with pytest.raises(ValueError, match="PTAME"):
        export.export_saved_model(explainer.backbone, tmp_path / "x")
    with pytest.raises(ValueError, match="image_size"):
        export.export_saved_model(explainer, tmp_path / "x", image_size=(0, 16))
    if keras.config.backend() != "tensorflow":
        with pytest.raises(ValueError, match="TensorFlow backend"):
            export.export_saved_model(explainer, tmp_path / "x", in_subprocess=False)
    assert os.listdir(tmp_path) == []


def test_any_size_classifier_needs_image_size(tmp_path):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="s1")(inputs)
    y = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="s2")(x)
    logits = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(y))
    classifier = keras.Model(inputs, logits)
    explainer = kp.PTAME(
        kp.Backbone(classifier), kp.AuxiliaryExtractor(classifier, ["s1", "s2"])
    )
    with pytest.raises(ValueError, match="image_size"):
        export.resolve_image_size(explainer)
    assert export.resolve_image_size(explainer, 32) == (32, 32)
    assert export.resolve_image_size(explainer, (24, 32)) == (24, 32)


@pytest.mark.slow
def test_corrupted_keras_file_fails_the_child_clearly(tmp_path):
    keras_file = tmp_path / "broken.keras"
    keras_file.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(RuntimeError, match="under TensorFlow"):
        saved_model._export_in_subprocess(
            str(keras_file), str(tmp_path / "out"), (IMAGE_SIZE, IMAGE_SIZE), True
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="the child-process route is the default off TensorFlow, tested there",
)
def test_subprocess_route_on_tensorflow(exported, tmp_path):
    explainer, _ = exported
    path = export.export_saved_model(explainer, tmp_path / "m", in_subprocess=True)
    images = random_images(3, seed=31)
    got = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.constant(images, tf.float32)
    )
    assert_same(got, explainer.explain_outputs(images))


def add_user_files(target, outside):
    """A TF Serving warm-up file, notes, a nested file and a link out."""
    (target / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"\x00warm")
    (target / "notes.txt").write_text("mine")
    (target / "extra" / "deep").mkdir(parents=True)
    (target / "extra" / "deep" / "x.txt").write_text("nested")
    outside.mkdir()
    (outside / "victim.txt").write_text("not the export's")
    os.symlink(outside, target / "elsewhere")
    return {
        os.path.join("assets.extra", "tf_serving_warmup_requests"),
        "notes.txt",
        os.path.join("extra", "deep", "x.txt"),
        "elsewhere",
    }


# Issue 22, case 5
# The file list is read the same way on every backend: that case runs once,
# under JAX, in `make test` (slow); the older export without one on every backend.
@pytest.mark.parametrize(
    "marker",
    [
        pytest.param("with a file list", marks=pytest.mark.slow),
        "without (older export)",
    ],
)
def test_overwrite_keeps_the_files_the_user_added(exported, tmp_path, marker):
    explainer, earlier = exported
    target = tmp_path / "ptame" / "1"
    shutil.copytree(earlier, target)
    if marker.startswith("without"):
        details = json.loads((target / export.MARKER).read_text())
        del details["files"]
        (target / export.MARKER).write_text(json.dumps(details))
    added = add_user_files(target, tmp_path / "outside")
    kept = {
        name: content for name, content in snapshot(target).items() if name in added
    }
    assert set(export.user_files(target)) == added
    for _ in range(2):  # and again, from the new export's own file list
        export.export_saved_model(explainer, target, overwrite=True, verify=False)
        assert {k: v for k, v in snapshot(target).items() if k in added} == kept
        assert set(export.user_files(target)) == added
    listed = json.loads((target / export.MARKER).read_text())["files"]
    assert "saved_model.pb" in listed and not added & set(listed)
    assert snapshot(tmp_path / "outside") == {"victim.txt": b"not the export's"}
    assert sorted(os.listdir(tmp_path / "ptame")) == ["1"]


# Issue 22, case 5
def test_overwrite_refuses_what_it_cannot_keep(exported, tmp_path):
    explainer, earlier = exported
    target = tmp_path / "model"
    shutil.copytree(earlier, target)
    add_user_files(target, tmp_path / "outside")
    details = json.loads((target / export.MARKER).read_text())
    # Warm-up requests for other images would make TF Serving refuse the model.
    (target / export.MARKER).write_text(json.dumps({**details, "image_size": [8, 8]}))
    before = snapshot(target)
    with pytest.raises(FileExistsError, match="tf_serving_warmup_requests.*8x8"):
        export.export_saved_model(explainer, target, overwrite=True, verify=False)
    assert snapshot(target) == before
    # A file of the user's where the new export writes one: named, not replaced.
    details["files"].remove("saved_model.pb")
    (target / export.MARKER).write_text(json.dumps(details))
    before = snapshot(target)
    with pytest.raises(FileExistsError, match="saved_model.pb"):
        export.export_saved_model(explainer, target, overwrite=True, verify=False)
    assert snapshot(target) == before
    assert sorted(os.listdir(tmp_path)) == ["model", "outside"]


# Issue 22, case 11
@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        # As TensorFlow and the child process report it; told apart by the same
        # text on every backend, so it runs once, under JAX (slow).
        pytest.param(
            RuntimeError("The child process said: [Errno 28] No space left on device"),
            marks=pytest.mark.slow,
        ),
    ],
)
def test_a_full_disk_changes_nothing_and_says_so(
    exported, tmp_path, monkeypatch, error
):
    explainer, earlier = exported
    target = tmp_path / "model"
    shutil.copytree(earlier, target)
    before = snapshot(target)

    def full(*args):
        raise error

    monkeypatch.setattr(saved_model, "write_marker", full)
    with pytest.raises(OSError, match="nothing was changed") as raised:
        export.export_saved_model(explainer, target, overwrite=True, verify=False)
    assert raised.value.errno == errno.ENOSPC
    assert str(target) in str(raised.value) and "\n" not in str(raised.value)
    assert snapshot(target) == before
    assert sorted(os.listdir(tmp_path)) == ["model"]


def nan_explainer(where):
    """An explainer with a NaN weight, or finite weights that give NaN."""
    explainer = tiny_explainer()
    explainer.ensure_built((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    if where == "weights":
        weight = explainer.decoder.weights[0]
        value = keras.ops.convert_to_numpy(weight).copy()
        value.flat[0] = np.nan
    else:  # logits of +-inf: the softmax scores are NaN
        weight = explainer.backbone.weights[-2]
        value = np.full(weight.shape, 3e38, "float32")
    weight.assign(value)
    return explainer


# Issue 22, case 11
@pytest.mark.parametrize(
    "where, match",
    [("weights", "holds NaN or Inf values"), ("outputs", "weights are finite")],
)
def test_a_nan_model_is_refused_before_anything_is_written(tmp_path, where, match):
    explainer = nan_explainer(where)
    with pytest.raises(ValueError, match=match):
        export.export_saved_model(explainer, tmp_path / "ptame" / "1", verify=False)
    assert os.listdir(tmp_path) == []


# Issue 23: a long export (a child process, then the check) says what it is
# doing before each step, not only once it is over.
def test_verbose_export_announces_each_step_before_it_runs(exported, tmp_path, capsys):
    explainer, _ = exported
    path = export.export_saved_model(explainer, tmp_path / "ptame", verbose=1)
    lines = capsys.readouterr().out.splitlines()
    child = keras.config.backend() != "tensorflow"
    first = "Rebuilding the explainer under TensorFlow" if child else "Tracing"
    assert lines[0].startswith(first) and lines[0].endswith("...")
    assert lines[1] == "Checking the SavedModel against the explainer..."
    assert lines[2].startswith(f"Saved a TensorFlow SavedModel at {path!r}")
