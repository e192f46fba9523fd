"""The ONNX export (`kp.export.export_onnx`): a `.onnx` file that ONNX Runtime
runs with the explainer's classes and maps, from every backend (issue 25)."""

import numpy as np
import pytest

from keras_ptame import export
from tests.helpers import IMAGE_SIZE, briefly_trained_explainer, random_images

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A briefly trained explainer and its ONNX model (exported once)."""
    explainer = briefly_trained_explainer()
    path = str(tmp_path_factory.mktemp("onnx") / "ptame.onnx")
    explainer.export(path, format="onnx", verbose=0)
    return explainer, path


def test_the_onnx_model_explains_as_the_explainer(exported):
    explainer, path = exported
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    images = random_images(5, seed=11)
    names = [output.name for output in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"images": images.astype("float32")})))
    expected = explainer.explain_outputs(images)
    np.testing.assert_array_equal(got["classes"], expected["classes"])
    assert got["maps"].shape == (5, IMAGE_SIZE, IMAGE_SIZE)
    for key in ("maps", "scores", "evidence"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-4)
    for key in ("flat", "misranked"):
        np.testing.assert_array_equal(got[key], expected[key])


def test_only_an_onnx_model_is_replaced(exported, tmp_path):
    explainer, path = exported
    mine = tmp_path / "ptame.onnx"
    mine.write_bytes(b"")
    # An empty file parses as an empty ONNX model: not one tf2onnx wrote.
    with pytest.raises(FileExistsError, match="not an ONNX model"):
        export.export_onnx(explainer, mine, overwrite=True)
    assert mine.read_bytes() == b""
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_onnx(explainer, path)
