"""`ptame export`: a SavedModel that reproduces the explainer."""

import errno
import os

import keras
import numpy as np
import pytest

from keras_ptame.export import saved_model
from tests.helpers import IMAGE_SIZE, tiny_explainer


def test_export_command(workspace, tmp_path, ptame, snapshot):
    tf = pytest.importorskip("tensorflow")
    root, images = workspace
    target = tmp_path / "models" / "ptame" / "1"
    argv = ["export", "--model", root / "explainer.keras", "--output", target]
    result = ptame(*argv)
    assert result.code == 0, result.err
    assert "serving_default" in result.out
    served = tf.saved_model.load(str(target))
    explainer = keras.saving.load_model(root / "explainer.keras")
    got = served.signatures["serving_default"](images=tf.constant(images, tf.float32))
    np.testing.assert_allclose(
        got["maps"].numpy(), explainer.explain(images), atol=1e-4
    )

    before = snapshot(target)
    ptame(*argv).assert_user_error("export path exists")
    assert snapshot(target) == before


# Issue 25: --format litert writes one .tflite file that explains as the
# explainer does, and replaces only a LiteRT model.
def test_export_command_litert(workspace, tmp_path, ptame):
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    root, images = workspace
    target = tmp_path / "ptame.tflite"
    argv = ["export", "--model", root / "explainer.keras", "--output", target]
    result = ptame(*argv, "--format", "litert")
    assert result.code == 0, result.err
    assert "LiteRT model" in result.out and "explain_uint8_maps" in result.out
    runner = litert.Interpreter(model_path=str(target)).get_signature_runner(
        "serving_default"
    )
    explainer = keras.saving.load_model(root / "explainer.keras")
    got = runner(images=images.astype("float32"))
    np.testing.assert_allclose(got["maps"], explainer.explain(images), atol=1e-4)
    ptame(*argv, "--format", "litert").assert_user_error("exists")
    assert os.listdir(tmp_path) == ["ptame.tflite"]


def test_export_of_a_missing_file(tmp_path, ptame):
    target = tmp_path / "out"
    ptame(
        "export", "--model", tmp_path / "missing.keras", "--output", target
    ).assert_user_error("No such explainer file")
    assert not target.exists()


# Issue 22, case 5
# Slow (run once, under JAX, in `make test`): a file policy the same on every backend;
# test_export_command exports from every backend.
@pytest.mark.slow
def test_export_overwrite_keeps_the_warmup_file(workspace, tmp_path, ptame):
    root, _ = workspace
    target = tmp_path / "models" / "ptame" / "1"
    argv = ["export", "--model", root / "explainer.keras", "--output", target]
    assert ptame(*argv, "--no-verify").code == 0
    warmup = target / "assets.extra" / "tf_serving_warmup_requests"
    warmup.write_bytes(b"\x00requests")
    result = ptame(*argv, "--overwrite", "--no-verify")
    assert result.code == 0, result.err
    assert warmup.read_bytes() == b"\x00requests"
    assert "kept your files: assets.extra/tf_serving_warmup_requests" in result.out


# Issue 22, case 11
# Slow (run once, under JAX, in `make test`): the error path is the same on every backend;
# tests/export/test_export.py checks the full disk on every backend.
@pytest.mark.slow
def test_export_onto_a_full_disk_is_a_user_error(
    workspace, tmp_path, ptame, monkeypatch
):
    root, _ = workspace

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(saved_model, "write_marker", full)
    target = tmp_path / "out"
    result = ptame("export", "--model", root / "explainer.keras", "--output", target)
    result.assert_user_error("nothing was changed")
    assert str(target) in result.err
    assert os.listdir(tmp_path) == []


# Issue 22, case 11
def test_export_of_a_nan_explainer_is_a_user_error(tmp_path, ptame):
    explainer = tiny_explainer()
    explainer.ensure_built((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    weight = explainer.decoder.weights[0]
    value = keras.ops.convert_to_numpy(weight).copy()
    value.flat[0] = np.nan
    weight.assign(value)
    explainer.save(tmp_path / "nan.keras")
    target = tmp_path / "out"
    result = ptame("export", "--model", tmp_path / "nan.keras", "--output", target)
    result.assert_user_error("NaN")
    assert not target.exists()
