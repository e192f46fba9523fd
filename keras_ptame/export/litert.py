"""Export a trained explainer as a LiteRT model (a `.tflite` file) for phones
and edge devices.

The file is converted by TensorFlow's LiteRT converter from the graph that
`export_saved_model` writes, with LiteRT's builtin operations only: it runs
on the LiteRT runtime alone, without TensorFlow's kernels. Two signatures:

- `serving_default`: `images` `(B, H, W, C)` float32 raw pixels in [0, 255]
  → `classes` `(B,)` int32, `scores`, `maps` `(B, H, W)` in [0, 1],
  `evidence`, `flat` and `misranked`, as the SavedModel's (see
  `keras_ptame.export.saved_model`).
- `explain_uint8_maps`: `images` uint8 → the same with `maps` uint8 in
  [0, 255], `round(255 * maps)`.

The SavedModel's request checks (image size, pixel range) are assertions,
which LiteRT does not run: an app checks its requests itself. Before the
file is written, the LiteRT interpreter (`ai-edge-litert`, the `litert`
extra) runs it and its outputs are compared with `explain`'s (see
`keras_ptame.export.converted`).

```python
import numpy as np
from ai_edge_litert.interpreter import Interpreter
import keras_ptame as kp

kp.export.export_litert(explainer, "ptame.tflite")
interpreter = Interpreter(model_path="ptame.tflite")
runner = interpreter.get_signature_runner("serving_default")
outputs = runner(images=images.astype(np.float32))   # outputs["maps"]: (B, H, W)
```
"""

from keras_ptame.export.converted import Format, export_converted
from keras_ptame.utils.install import install_hint
from keras_ptame.utils.tf_runtime import import_tensorflow

LITERT_SIGNATURES = ("serving_default", "explain_uint8_maps")
# A LiteRT model is a FlatBuffer with this identifier at bytes 4 to 8.
_IDENTIFIER = b"TFL3"


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
        ModuleNotFoundError: `verify` needs `ai-edge-litert` (the `litert`
            extra).
    """
    if verify:
        _interpreter_class()
    return export_converted(
        explainer, path, LITERT, image_size, overwrite, verify, safe_mode, verbose
    )


def convert_to_litert(saved_model, signatures):
    """The LiteRT FlatBuffer (bytes) of the SavedModel's `signatures`."""
    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model, signature_keys=list(signatures)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return converter.convert()
    except Exception as error:  # noqa: BLE001 - the converter raises its own types
        raise RuntimeError(
            "The explainer's graph did not convert to LiteRT's builtin "
            f"operations: {str(error)[-2000:]}"
        ) from error


def litert_runner(model):
    """`(signature, images) -> outputs` of the LiteRT `model` (bytes)."""
    interpreter = _interpreter_class()(model_content=model)
    runners = {
        name: interpreter.get_signature_runner(name) for name in LITERT_SIGNATURES
    }
    return lambda signature, images: runners[signature](images=images)


def is_litert_model(path):
    """Whether the file at `path` is a LiteRT model."""
    with open(path, "rb") as file:
        return file.read(8)[4:8] == _IDENTIFIER


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


LITERT = Format(
    "LiteRT", LITERT_SIGNATURES, convert_to_litert, litert_runner, is_litert_model
)
