"""`explain(dtype="uint8")`: the maps as `round(255 * maps)`, made on the device.

Issue 27: a quarter of the bytes to copy off an accelerator, store or send;
every other output is the float call's.
"""

import numpy as np
import pytest

from tests.helpers import random_images, tiny_explainer
from tests.models.test_explanation import explainer_blind_to

# Class 2's maps are flat (zeros, unless `zero_flat=False`), the others not.
CLASSES = {"classes": np.array([0, 1, 2, 3, 0, 1])}


@pytest.mark.parametrize(
    "options",
    [
        CLASSES,
        {"normalize": "sigmoid", **CLASSES},
        {"normalize": "minmax_upsampled", "zero_flat": False, **CLASSES},
        {"resolution": "decoder", "normalize": "none", **CLASSES},
        {"top_k": 3},
    ],
)
def test_uint8_maps_are_the_rounded_float_maps(options):
    explainer = explainer_blind_to(2)
    images = random_images(6, seed=5)
    floats = explainer.explain_outputs(images, **options)
    lean = explainer.explain_outputs(images, dtype="uint8", **options)
    assert lean["maps"].dtype == np.uint8
    assert lean["maps"].shape == floats["maps"].shape
    np.testing.assert_array_equal(
        lean["maps"], np.round(255 * floats["maps"]).astype(np.uint8)
    )
    for key in floats.keys() - {"maps"}:
        np.testing.assert_array_equal(lean[key], floats[key], err_msg=key)
    # Maps with contrast: the rounding was not vacuous.
    assert lean["maps"].max() - lean["maps"].min() > 100


def test_flat_maps_are_zeros_in_uint8():
    explainer = explainer_blind_to(2)
    outputs = explainer.explain_outputs(random_images(2), classes=[2, 1], dtype="uint8")
    assert outputs["flat"].tolist() == [True, False]
    assert not outputs["maps"][0].any() and outputs["maps"][1].any()


def test_dtype_forms_and_switching_back():
    explainer = tiny_explainer()
    images = random_images(2)
    floats = explainer.explain(images)
    for dtype in ("uint8", np.uint8, np.dtype("uint8")):
        assert explainer.explain(images, dtype=dtype).dtype == np.uint8
    # `predict` compiled the option in: the next float call compiles again.
    again = explainer.explain(images, dtype=np.float32)
    assert again.dtype == np.float32
    np.testing.assert_array_equal(again, floats)


@pytest.mark.parametrize("dtype", ["float16", "int8", None, "pixels"])
def test_other_dtypes_are_refused(dtype):
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        tiny_explainer().explain(random_images(1), dtype=dtype)
