"""The LiteRT export (`kp.export.export_litert`): a `.tflite` file that runs on
the LiteRT interpreter and gives the explainer's classes and maps, from every
backend (issue 25)."""

import os
import re
import shutil

import keras
import numpy as np
import pytest

from keras_ptame import export
from keras_ptame.export import converted, litert
from tests.helpers import (
    IMAGE_SIZE,
    briefly_trained_explainer,
    random_images,
    tiny_explainer,
)

pytest.importorskip("tensorflow")
interpreter = pytest.importorskip("ai_edge_litert.interpreter")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A briefly trained explainer and its LiteRT model (exported once)."""
    explainer = briefly_trained_explainer()
    path = str(tmp_path_factory.mktemp("litert") / "ptame.tflite")
    explainer.export(path, format="litert", verbose=0)
    return explainer, path


def _run(path, signature, images):
    runner = interpreter.Interpreter(model_path=path).get_signature_runner(signature)
    return runner(images=images)


def test_the_litert_model_explains_as_the_explainer(exported):
    explainer, path = exported
    with open(path, "rb") as file:
        assert file.read(8)[4:8] == b"TFL3"
    images = random_images(5, seed=11)
    expected = explainer.explain_outputs(images)
    got = _run(path, "serving_default", images.astype("float32"))
    np.testing.assert_array_equal(got["classes"], expected["classes"])
    assert got["maps"].shape == (5, IMAGE_SIZE, IMAGE_SIZE)
    for key in ("maps", "scores", "evidence"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-4)
    for key in ("flat", "misranked"):
        np.testing.assert_array_equal(got[key], expected[key])
    lean = _run(path, "explain_uint8_maps", images)
    assert lean["maps"].dtype == np.uint8
    wanted = explainer.explain(images, dtype="uint8")
    assert np.abs(lean["maps"].astype(int) - wanted).max() <= 1


def test_a_model_of_another_explainer_is_refused(exported):
    explainer, path = exported
    with open(path, "rb") as file:
        model = file.read()
    other = tiny_explainer()
    other.ensure_built((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    other.set_weights(explainer.get_weights())
    # Another classifier: its last layer's kernel negated.
    kernel = other.backbone.weights[-2]
    # "dense" or "dense_1": Keras numbers the name by the layers made before it.
    assert re.search(r"dense(_\d+)?/kernel$", kernel.path), kernel.path
    kernel.assign(-keras.ops.convert_to_numpy(kernel))
    run = litert.litert_runner(model)
    with pytest.raises(RuntimeError, match="LiteRT model does not reproduce"):
        converted.verify_converted(other, run, (IMAGE_SIZE, IMAGE_SIZE), litert.LITERT)


def test_only_a_litert_model_is_replaced(exported, tmp_path):
    explainer, path = exported
    target = tmp_path / "ptame.tflite"
    shutil.copy(path, target)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_litert(explainer, target)
    mine = tmp_path / "notes.txt"
    mine.write_text("not a model")
    with pytest.raises(FileExistsError, match="not a LiteRT model"):
        export.export_litert(explainer, mine, overwrite=True)
    assert mine.read_text() == "not a model"
    os.utime(target, (0, 0))
    assert export.export_litert(explainer, target, overwrite=True) == str(target)
    assert os.stat(target).st_mtime > 0
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "ptame.tflite"]
