"""TensorFlow that only serves JAX or PyTorch is kept off the GPU, in one place.

Every path where TensorFlow serves another backend (`kp.data` pipelines,
`kp.datasets.shapes_dataset`, the export check, `fit`'s check of a
`tf.data` dataset) imports it through `utils.tf_runtime.import_tensorflow`,
which calls `tf.config.set_visible_devices([], "GPU")` once: the TensorFlow
call a user's GPU depends on, recorded here instead of made.
"""

import warnings

import keras
import pytest

import keras_ptame as kp
from keras_ptame import export
from keras_ptame.utils import tf_runtime
from tests.helpers import IMAGE_SIZE, tiny_explainer

tf = pytest.importorskip("tensorflow")

OTHER_BACKEND = pytest.mark.skipif(
    keras.config.backend() == "tensorflow",
    reason="under KERAS_BACKEND=tensorflow TensorFlow is the backend and keeps "
    "the GPU: nothing is hidden (see test_nothing_is_hidden_under_tensorflow)",
)


@pytest.fixture
def visible_devices(monkeypatch):
    """Records `tf.config.set_visible_devices` calls instead of making them,
    with the once-per-process flag reset."""
    calls = []
    monkeypatch.setattr(tf_runtime, "_GPU_HIDDEN", False)
    monkeypatch.setattr(
        tf.config, "set_visible_devices", lambda *args: calls.append(args)
    )
    return calls


# Issue 23: one definition; `kp.data.import_tensorflow` (the notebooks') is it.
def test_kp_data_re_exports_the_one_definition():
    assert kp.data.import_tensorflow is tf_runtime.import_tensorflow


# Issue 23: hidden once per process under JAX and PyTorch, never under TensorFlow.
@pytest.mark.parametrize("backend", ["jax", "torch", "tensorflow"])
def test_gpu_is_hidden_once_unless_tensorflow_is_the_backend(
    backend, visible_devices, monkeypatch
):
    monkeypatch.setattr(keras.config, "backend", lambda: backend)
    assert tf_runtime.import_tensorflow() is tf
    tf_runtime.import_tensorflow()
    expected = [] if backend == "tensorflow" else [([], "GPU")]
    assert visible_devices == expected


# Issue 23: a TensorFlow started earlier that holds the GPU is reported.
def test_a_started_tensorflow_that_holds_the_gpu_is_reported(monkeypatch):
    def started(*args):
        raise RuntimeError("Visible devices cannot be modified after being initialized")

    monkeypatch.setattr(tf_runtime, "_GPU_HIDDEN", False)
    monkeypatch.setattr(keras.config, "backend", lambda: "jax")
    monkeypatch.setattr(tf.config, "set_visible_devices", started)
    monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind: ["GPU:0"])
    with pytest.warns(UserWarning, match="already holds the GPU"):
        tf_runtime.import_tensorflow()
    # Without a GPU there is nothing to say.
    monkeypatch.setattr(tf_runtime, "_GPU_HIDDEN", False)
    monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind: [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tf_runtime.import_tensorflow()


# Issue 23: the synthetic-data path hides the GPU under JAX and PyTorch.
@OTHER_BACKEND
def test_shapes_dataset_hides_the_gpu(visible_devices):
    kp.datasets.shapes_dataset(4, batch_size=2, image_size=32, seed=0)
    assert visible_devices == [([], "GPU")]


# Issue 23: the export check, which runs the SavedModel in TensorFlow in this
# process, hides the GPU under JAX and PyTorch.
@OTHER_BACKEND
def test_the_export_check_hides_the_gpu(visible_devices, tmp_path):
    explainer = tiny_explainer()
    explainer.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    export.export_saved_model(explainer, tmp_path / "ptame" / "1", verify=False)
    assert visible_devices == []
    export.verify_saved_model(explainer, tmp_path / "ptame" / "1", (16, 16))
    assert visible_devices == [([], "GPU")]


# Issue 23: `fit` on a tf.data dataset (TensorFlow feeding JAX or PyTorch).
@OTHER_BACKEND
def test_fit_on_a_tf_data_dataset_hides_the_gpu(visible_devices):
    images = tf.zeros((4, IMAGE_SIZE, IMAGE_SIZE, 3), tf.uint8)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2)
    explainer = tiny_explainer()
    explainer.compile(optimizer="adam")
    explainer.fit(dataset, epochs=1, verbose=0)
    assert visible_devices == [([], "GPU")]


# Issue 23: under TensorFlow, the same paths leave TensorFlow's devices alone.
@pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="the TensorFlow backend's case; the others hide the GPU (tests above)",
)
def test_nothing_is_hidden_under_tensorflow(visible_devices, tmp_path):
    kp.datasets.shapes_dataset(4, batch_size=2, image_size=32, seed=0)
    explainer = tiny_explainer()
    explainer.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    export.export_saved_model(explainer, tmp_path / "ptame" / "1")
    assert visible_devices == []
