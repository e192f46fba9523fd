"""Export a trained explainer for serving, from any Keras backend.

- `export_saved_model` (`keras_ptame/export/saved_model.py`): a TensorFlow
  SavedModel for TF Serving, its signatures checked against `explain`.
- `export_litert` (`keras_ptame/export/litert.py`): a LiteRT model (`.tflite`)
  for phones and edge devices, and `export_onnx` (`keras_ptame/export/onnx.py`):
  an ONNX model (`.onnx`) for ONNX Runtime, each converted from that
  SavedModel's graph and checked the same way (`keras_ptame/export/converted.py`).

`keras_ptame/export/tracing.py` traces the signatures,
`keras_ptame/export/verification.py` holds the checks and their tolerances,
`keras_ptame/export/target.py` what an export may replace.
"""

from keras_ptame.export.litert import LITERT_SIGNATURES, export_litert
from keras_ptame.export.onnx import ONNX_SIGNATURES, export_onnx
from keras_ptame.export.saved_model import export_saved_model, resolve_image_size
from keras_ptame.export.target import MARKER, is_own_export, user_files
from keras_ptame.export.tracing import (
    SIGNATURES,
    exported_signatures,
    write_saved_model,
)
from keras_ptame.export.verification import (
    Precision,
    measured_precision,
    probe_images,
    verification_tolerances,
    verify_saved_model,
)

# What writes each format of `PTAME.export`.
EXPORTERS = {
    "tf_saved_model": export_saved_model,
    "litert": export_litert,
    "onnx": export_onnx,
}

__all__ = [
    "EXPORTERS",
    "LITERT_SIGNATURES",
    "MARKER",
    "ONNX_SIGNATURES",
    "SIGNATURES",
    "Precision",
    "export_litert",
    "export_onnx",
    "export_saved_model",
    "exported_signatures",
    "is_own_export",
    "measured_precision",
    "probe_images",
    "resolve_image_size",
    "user_files",
    "verification_tolerances",
    "verify_saved_model",
    "write_saved_model",
]
