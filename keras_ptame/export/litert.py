"""Export a trained explainer as a LiteRT model (a `.tflite` file) for phones
and edge devices.

The file is converted by TensorFlow's LiteRT converter from the graph that
`export_saved_model` writes (from any backend, itself checked against the
explainer), with LiteRT's builtin operations only: it runs on the LiteRT
runtime alone, without TensorFlow's kernels. Two signatures:

- `serving_default`: `images` `(B, H, W, C)` float32 raw pixels in [0, 255]
  → `classes` `(B,)` int32, `scores`, `maps` `(B, H, W)` in [0, 1],
  `evidence`, `flat` and `misranked`, as the SavedModel's (see
  `keras_ptame.export.saved_model`).
- `explain_uint8_maps`: `images` uint8 → the same with `maps` uint8 in
  [0, 255], `round(255 * maps)`.

The SavedModel's request checks (image size, pixel range) are assertions,
which LiteRT does not run: an app checks its requests itself.

Before the file is written, the LiteRT interpreter (`ai-edge-litert`, the
`litert` extra) runs it on probe images, and its outputs are compared with
`explain`'s within the SavedModel check's tolerances.

```python
import numpy as np
from ai_edge_litert.interpreter import Interpreter
import keras_ptame as kp

kp.export.export_litert(explainer, "ptame.tflite")
runner = Interpreter(model_path="ptame.tflite").get_signature_runner("serving_default")
outputs = runner(images=images.astype(np.float32))   # outputs["maps"]: (B, H, W)
```
"""

import os
import tempfile

import keras
import numpy as np

from keras_ptame.export.saved_model import (
    export_saved_model,
    progress,
    resolve_image_size,
)
from keras_ptame.export.target import check_litert_target
from keras_ptame.export.verification import (
    compare_explanations,
    measured_precision,
    probe_images,
    verification_tolerances,
)
from keras_ptame.utils.files import atomic_path
from keras_ptame.utils.install import install_hint
from keras_ptame.utils.tf_runtime import import_tensorflow

LITERT_SIGNATURES = ("serving_default", "explain_uint8_maps")


def export_litert(
    explainer,
    path,
    image_size=None,
    overwrite=False,
    verify=True,
    safe_mode=True,
    verbose=0,
):
    """Writes `explainer` as a LiteRT model (`.tflite`), builtin ops only.

    Args:
        explainer: a `keras_ptame.PTAME`.
        path: str or path-like. The file to write, e.g. `"ptame.tflite"`.
        image_size: optional `(height, width)` of the images it takes.
            Defaults to `None` (as `export_saved_model`).
        overwrite: bool. Whether to replace an existing LiteRT model at
            `path` (any other file there is an error). Defaults to `False`.
        verify: bool. Whether to check the SavedModel it is converted from
            and the LiteRT model against `explain` first. Defaults to `True`.
        safe_mode: bool. As `export_saved_model`'s. Defaults to `True`.
        verbose: int. `1` prints each step as it starts. Defaults to `0`.

    Returns:
        The path of the file, as a str.

    Raises:
        FileExistsError: `path` exists and `overwrite` is `False`, or holds
            something other than a LiteRT model.
        RuntimeError: the conversion failed, or the LiteRT model's outputs
            differ from the explainer's.
        ModuleNotFoundError: `verify` needs `ai-edge-litert` (the
            `litert` extra).
    """
    path = os.path.abspath(os.fspath(path))
    check_litert_target(path, overwrite)
    if verify:
        _interpreter_class()
    size = resolve_image_size(explainer, image_size)
    with tempfile.TemporaryDirectory() as scratch:
        saved = export_saved_model(
            explainer,
            os.path.join(scratch, "saved_model"),
            image_size=size,
            verify=verify,
            safe_mode=safe_mode,
            verbose=verbose,
        )
        progress(verbose, "Converting the SavedModel to LiteRT")
        model = convert_saved_model(saved)
    if verify:
        progress(verbose, "Checking the LiteRT model against the explainer")
        verify_litert(explainer, model, size)
    check_litert_target(path, overwrite)
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(model)
    if verbose:
        print(
            f"Saved a LiteRT model at {path!r} ({len(model) / 2**20:.1f} MiB) with "
            f"signatures {', '.join(LITERT_SIGNATURES)}."
        )
    return path


def convert_saved_model(saved_model):
    """The LiteRT FlatBuffer (bytes) of the SavedModel's `LITERT_SIGNATURES`."""
    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model, signature_keys=list(LITERT_SIGNATURES)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return converter.convert()
    except Exception as error:  # noqa: BLE001 - the converter raises its own types
        raise RuntimeError(
            "The explainer's graph did not convert to LiteRT's builtin "
            f"operations: {str(error)[-2000:]}"
        ) from error


def verify_litert(explainer, model, image_size):
    """Raises `RuntimeError` if the LiteRT `model` (bytes) disagrees with `explainer`.

    On `probe_images`: `serving_default`'s classes where the top two logits
    are clear of each other, and its maps, scores, evidence and flags within
    `verification_tolerances`; `explain_uint8_maps`' maps within a level of
    `round(255 * maps)` of the float signature's.
    """
    runners = _runners(model)
    images = probe_images(image_size, channels=explainer.input_channels)
    expected = explainer.explain_outputs(images)
    got = runners["serving_default"](images=images.astype("float32"))
    logits = keras.ops.convert_to_numpy(explainer.backbone(images))
    precision = measured_precision(explainer)
    tolerances = verification_tolerances(precision, np.max(np.abs(logits)))
    top2 = np.sort(logits, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > tolerances["logits"]
    problems = []
    if np.any(got["classes"][clear] != expected["classes"][clear]):
        problems.append(f"classes: {got['classes'].tolist()}")
    problems += compare_explanations(
        {key: value[clear] for key, value in got.items()},
        {key: value[clear] for key, value in expected.items()},
        explainer.evidence_threshold,
        tolerances,
    )
    lean = runners["explain_uint8_maps"](images=images)
    levels = np.abs(lean["maps"].astype("float32") - np.round(255 * got["maps"]))
    if lean["maps"].dtype != np.uint8 or np.max(levels, initial=0) > 1:
        problems.append("explain_uint8_maps: not round(255 * maps) of serving_default")
    if problems:
        raise RuntimeError(
            "The LiteRT model does not reproduce the explainer (tolerances: "
            + ", ".join(f"{key} {value:.2g}" for key, value in tolerances.items())
            + "): "
            + "; ".join(problems)
        )


def _runners(model):
    interpreter = _interpreter_class()(model_content=model)
    return {name: interpreter.get_signature_runner(name) for name in LITERT_SIGNATURES}


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "Checking a LiteRT export runs it with the LiteRT interpreter "
            f"(ai-edge-litert): {install_hint('litert')}; or pass verify=False.",
            name=error.name,
        ) from error
    return Interpreter
