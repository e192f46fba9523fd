"""The SavedModel of a grayscale (1-channel) and of a multispectral (4-channel)
explainer: its image signatures take the explainer's channel count and
reproduce `explain`; `explain_encoded` (image files) is exported for
grayscale, not for 4 channels (image files hold no fourth band)."""

import io

import keras
import numpy as np
import pytest

from tests.helpers import IMAGE_SIZE, random_images, tiny_explainer

tf = pytest.importorskip("tensorflow")
Image = pytest.importorskip("PIL.Image")

ATOL = 1e-4
S = IMAGE_SIZE


@pytest.fixture(scope="module", params=[1, 4], ids=["gray", "four"])
def exported(request, tmp_path_factory):
    """A briefly trained explainer of `channels` channels and its SavedModel."""
    channels = request.param
    keras.utils.set_random_seed(7)
    explainer = tiny_explainer(channels=channels)
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-3, amsgrad=True))
    images = random_images(8, seed=3, channels=channels)
    explainer.fit(images, epochs=1, batch_size=4, verbose=0)
    path = str(tmp_path_factory.mktemp(f"export{channels}") / "ptame" / "1")
    explainer.export(path, verbose=0)
    return explainer, tf.saved_model.load(path), channels


def _assert_same(got, expected):
    np.testing.assert_array_equal(np.asarray(got["classes"]), expected["classes"])
    for key in ("scores", "maps", "evidence"):
        np.testing.assert_allclose(np.asarray(got[key]), expected[key], atol=ATOL)
    np.testing.assert_array_equal(np.asarray(got["flat"]), expected["flat"])


# Issue 24: the float and uint8 signatures take the explainer's channels and
# give what `explain_outputs` gives.
def test_the_image_signatures_take_the_explainer_s_channels(exported):
    explainer, served, channels = exported
    images = random_images(3, seed=11, channels=channels)
    expected = explainer.explain_outputs(images)
    for name, dtype in (("serving_default", tf.float32), ("explain_uint8", tf.uint8)):
        signature = served.signatures[name]
        spec = signature.structured_input_signature[1]["images"]
        assert tuple(spec.shape) == (None, S, S, channels)
        _assert_same(signature(images=tf.constant(images, dtype)), expected)
    got = served.signatures["explain_classes"](
        images=tf.constant(images, tf.float32),
        classes=tf.constant(expected["classes"], tf.int32),
    )
    _assert_same(got, expected)


# Issue 24: a request of another channel count is refused inside the graph.
def test_a_request_of_other_channels_is_refused(exported):
    _, served, channels = exported
    wrong = np.zeros((1, S, S, 3), "float32")
    with pytest.raises(tf.errors.InvalidArgumentError, match="not compatible"):
        served.signatures["serving_default"](images=tf.constant(wrong))


# Issue 24: grayscale PNGs are decoded to one channel; a 4-channel explainer
# has no `explain_encoded` (a 4-channel PNG would be RGBA, not a band).
def test_explain_encoded_decodes_grayscale_and_is_left_out_for_four(exported):
    explainer, served, channels = exported
    if channels != 1:
        assert "explain_encoded" not in served.signatures
        assert set(served.signatures) == {
            "serving_default",
            "explain_classes",
            "explain_top_k",
            "explain_uint8",
            "explain_uint8_maps",
        }
        return
    images = random_images(2, seed=5, channels=1)
    blobs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0], mode="L").save(buffer, format="PNG")
        blobs.append(buffer.getvalue())
    got = served.signatures["explain_encoded"](encoded=tf.constant(blobs))
    _assert_same(got, explainer.explain_outputs(images))
