"""The serving signatures check every request inside the graph.

A loaded signature (`tf.saved_model.load(path).signatures[name]`, as TF
Serving runs it) does not check its inputs against the shapes it declares: a
bad tensor used to reach the convolutions, where a rank-2 or rank-3 one
aborts the whole process (a oneDNN CHECK, exit 134). The requests are
therefore sent from a child process, which a crash kills instead of pytest.
The explainer is exported from the current backend; serving is TensorFlow.
"""

import json
import os
import re
import subprocess
import sys

import keras
import pytest

from keras_ptame import export
from tests.helpers import IMAGE_SIZE, tiny_explainer

pytest.importorskip("tensorflow")

S = IMAGE_SIZE
SHAPE = "not compatible with expected shape"
PIXELS = r"raw pixels in \[0, 255\]"
EMPTY = "at least one"
TOP_K = r"`k` must be in \[1, num_classes=4\]"
# name: (signature, {input: (shape or a list of values, dtype, fill)}, message)
BAD_REQUESTS = {
    "rank 2": ("serving_default", {"images": ((S, S), "float32", 0)}, SHAPE),
    "rank 3": ("serving_default", {"images": ((S, S, 3), "float32", 0)}, SHAPE),
    "rank 5": ("serving_default", {"images": ((1, 1, S, S, 3), "float32", 0)}, SHAPE),
    "1x1": ("serving_default", {"images": ((1, 1, 1, 3), "float32", 0)}, SHAPE),
    "other size": (
        "serving_default",
        {"images": ((1, S + 4, S + 4, 3), "float32", 0)},
        SHAPE,
    ),
    "one channel": ("serving_default", {"images": ((1, S, S, 1), "float32", 0)}, SHAPE),
    "negative pixels": (
        "serving_default",
        {"images": ((1, S, S, 3), "float32", -1)},
        PIXELS,
    ),
    "pixels above 255": (
        "serving_default",
        {"images": ((1, S, S, 3), "float32", 256)},
        PIXELS,
    ),
    "NaN pixels": (
        "serving_default",
        {"images": ((1, S, S, 3), "float32", "nan")},
        PIXELS,
    ),
    "infinite pixels": (
        "serving_default",
        {"images": ((1, S, S, 3), "float32", "inf")},
        PIXELS,
    ),
    "uint8 rank 3": ("explain_uint8", {"images": ((S, S, 3), "uint8", 0)}, SHAPE),
    "uint8 1x1": ("explain_uint8", {"images": ((1, 1, 1, 3), "uint8", 0)}, SHAPE),
    # Issue 27: the uint8-maps signature checks its request as the others do.
    "uint8 maps, rank 3": (
        "explain_uint8_maps",
        {"images": ((S, S, 3), "uint8", 0)},
        SHAPE,
    ),
    "uint8 maps, empty batch": (
        "explain_uint8_maps",
        {"images": ((0, S, S, 3), "uint8", 0)},
        EMPTY,
    ),
    "classes, rank 2 images": (
        "explain_classes",
        {"images": ((S, S), "float32", 0), "classes": ((1,), "int32", 0)},
        SHAPE,
    ),
    "classes, pixels above 255": (
        "explain_classes",
        {"images": ((1, S, S, 3), "float32", 300), "classes": ((1,), "int32", 0)},
        PIXELS,
    ),
    "classes of rank 2": (
        "explain_classes",
        {"images": ((1, S, S, 3), "float32", 0), "classes": ((1, 1), "int32", 0)},
        SHAPE,
    ),
    # Issue 24: `k` of explain_top_k, a scalar in [1, num_classes].
    "top k of 0": (
        "explain_top_k",
        {"images": ((1, S, S, 3), "float32", 0), "k": ((), "int32", 0)},
        TOP_K,
    ),
    "top k above num_classes": (
        "explain_top_k",
        {"images": ((1, S, S, 3), "float32", 0), "k": ((), "int32", 5)},
        TOP_K,
    ),
    "top k of rank 1": (
        "explain_top_k",
        {"images": ((1, S, S, 3), "float32", 0), "k": ((1,), "int32", 2)},
        SHAPE,
    ),
    "top k, rank 3 images": (
        "explain_top_k",
        {"images": ((S, S, 3), "float32", 0), "k": ((), "int32", 2)},
        SHAPE,
    ),
    "empty batch": ("serving_default", {"images": ((0, S, S, 3), "float32", 0)}, EMPTY),
    "empty uint8 batch": (
        "explain_uint8",
        {"images": ((0, S, S, 3), "uint8", 0)},
        EMPTY,
    ),
    "no encoded images": ("explain_encoded", {"encoded": ((0,), "string", "")}, EMPTY),
    "encoded of rank 0": ("explain_encoded", {"encoded": ((), "string", "")}, SHAPE),
    "encoded of rank 2": (
        "explain_encoded",
        {"encoded": ((1, 1), "string", "")},
        SHAPE,
    ),
}
GOOD_REQUEST = ("serving_default", {"images": ((2, S, S, 3), "float32", 255)}, None)

# Sends each request and prints one JSON line per answer; a crash ends it.
_CLIENT = """
import json, sys
import numpy as np
import tensorflow as tf

signatures = tf.saved_model.load(sys.argv[1]).signatures
for name, (signature, inputs, _) in json.loads(sys.argv[2]).items():
    feed = {}
    for key, (shape, dtype, fill) in inputs.items():
        if dtype == "string":
            feed[key] = tf.fill(shape, fill)
        else:
            feed[key] = tf.constant(np.full(shape, float(fill)).astype(dtype))
    print(json.dumps({"request": name}), flush=True)
    try:
        outputs = signatures[signature](**feed)
        answer = {"answered": sorted(outputs)}
    except Exception as error:
        answer = {"error": type(error).__name__, "message": str(error)}
    print(json.dumps({"request": name, **answer}), flush=True)
"""


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    """Every request's answer from a SavedModel exported from this backend."""
    keras.utils.set_random_seed(3)
    path = str(tmp_path_factory.mktemp("served") / "1")
    export.export_saved_model(tiny_explainer(), path)
    requests = {**BAD_REQUESTS, "good": GOOD_REQUEST}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    result = subprocess.run(
        [sys.executable, "-c", _CLIENT, path, json.dumps(requests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    last = lines[-1]["request"] if lines else None
    assert result.returncode == 0, (
        f"the serving process died (exit {result.returncode}) on {last!r}: "
        + result.stderr[-1500:]
    )
    return {line["request"]: line for line in lines if len(line) > 1}


# Issue 22, case 9
@pytest.mark.parametrize("request_name", sorted(BAD_REQUESTS))
def test_a_bad_request_is_answered_with_invalid_argument(answers, request_name):
    answer = answers[request_name]
    assert answer.get("error") == "InvalidArgumentError", answer
    assert re.search(BAD_REQUESTS[request_name][2], answer["message"]), answer


# Issue 22, case 9
def test_a_good_request_is_still_answered(answers):
    assert answers["good"].get("answered") == [
        "classes", "evidence", "flat", "maps", "misranked", "scores",
    ]  # fmt: skip
