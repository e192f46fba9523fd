"""`ptame export`: a SavedModel that reproduces the explainer."""

import keras
import numpy as np
import pytest


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


def test_export_of_a_missing_file(tmp_path, ptame):
    target = tmp_path / "out"
    ptame(
        "export", "--model", tmp_path / "missing.keras", "--output", target
    ).assert_user_error("No such explainer file")
    assert not target.exists()
