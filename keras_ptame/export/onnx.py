"""Export a trained explainer as an ONNX model (a `.onnx` file), for ONNX
Runtime and the engines that read ONNX.

The file is converted by tf2onnx from the `serving_default` signature of the
graph that `export_saved_model` writes: `images` `(B, H, W, C)` float32 raw
pixels in [0, 255] → `classes` `(B,)` int32, `scores`, `maps` `(B, H, W)` in
[0, 1], `evidence`, `flat` and `misranked` (see
`keras_ptame.export.saved_model`). One graph, so one signature: the
SavedModel's request checks are not carried over. Before the file is
written, ONNX Runtime runs it and its outputs are compared with `explain`'s
(see `keras_ptame.export.converted`). Needs the `onnx` extra (tf2onnx and
onnxruntime).

```python
import numpy as np
import onnxruntime
import keras_ptame as kp

kp.export.export_onnx(explainer, "ptame.onnx")
session = onnxruntime.InferenceSession("ptame.onnx")
classes, evidence, flat, maps, misranked, scores = session.run(
    None, {"images": images.astype(np.float32)}
)
```
"""

from keras_ptame.export.converted import Format, export_converted
from keras_ptame.utils.install import install_hint
from keras_ptame.utils.tf_runtime import import_tensorflow

ONNX_SIGNATURES = ("serving_default",)
# The ONNX operator set written: ONNX Runtime 1.20 and later run it.
OPSET = 17


def export_onnx(
    explainer,
    path,
    image_size=None,
    overwrite=False,
    verify=True,
    safe_mode=True,
    verbose=0,
):
    """Writes `explainer` as an ONNX model (`.onnx`).

    Args:
        explainer: a `keras_ptame.PTAME`.
        path: str or path-like. The file to write, e.g. `"ptame.onnx"`.
        image_size: optional `(height, width)` of the images it takes.
            Defaults to `None` (as `export_saved_model`).
        overwrite: bool. Whether to replace an existing ONNX model (one
            tf2onnx wrote) at `path`; any other file there is an error.
            Defaults to `False`.
        verify: bool. Whether to check the SavedModel it is converted from
            and the ONNX model against `explain` first. Defaults to `True`.
        safe_mode: bool. As `export_saved_model`'s. Defaults to `True`.
        verbose: int. `1` prints each step as it starts. Defaults to `0`.

    Returns:
        The path of the file, as a str.

    Raises:
        FileExistsError: `path` exists and `overwrite` is `False`, or holds
            something other than an ONNX model.
        RuntimeError: the conversion failed, or the ONNX model's outputs
            differ from the explainer's.
        ModuleNotFoundError: tf2onnx (and, for `verify`, onnxruntime) is
            missing (the `onnx` extra).
    """
    _module("tf2onnx")
    if verify:
        _module("onnxruntime")
    return export_converted(
        explainer, path, ONNX, image_size, overwrite, verify, safe_mode, verbose
    )


def convert_to_onnx(saved_model, signatures):
    """The ONNX model (bytes) of the SavedModel's `serving_default`."""
    tf = import_tensorflow()
    tf2onnx = _module("tf2onnx")
    (name,) = signatures
    # Held while converting: the signature reads the loaded object's variables.
    served = tf.saved_model.load(saved_model)
    signature = served.signatures[name]
    spec = signature.structured_input_signature[1]["images"]
    try:
        model, _ = tf2onnx.convert.from_function(
            tf.function(lambda images: signature(images=images)),
            input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name="images")],
            opset=OPSET,
        )
    except Exception as error:  # noqa: BLE001 - tf2onnx raises its own types
        raise RuntimeError(
            f"The explainer's graph did not convert to ONNX: {str(error)[-2000:]}"
        ) from error
    return model.SerializeToString()


def onnx_runner(model):
    """`(signature, images) -> outputs` of the ONNX `model` (bytes)."""
    session = _module("onnxruntime").InferenceSession(
        model, providers=["CPUExecutionProvider"]
    )
    names = [output.name for output in session.get_outputs()]
    return lambda signature, images: dict(
        zip(names, session.run(None, {"images": images}))
    )


def is_onnx_model(path):
    """Whether the file at `path` is an ONNX model that tf2onnx wrote."""
    onnx = _module("onnx")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - anything unreadable is not one
        return False
    return model.producer_name == "tf2onnx" and len(model.graph.node) > 0


def _module(name):
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"The ONNX export needs {name}: {install_hint('onnx')}.",
            name=error.name,
        ) from error


ONNX = Format("ONNX", ONNX_SIGNATURES, convert_to_onnx, onnx_runner, is_onnx_model)
