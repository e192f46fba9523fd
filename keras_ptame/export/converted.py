"""One-file exports converted from the SavedModel's graph: LiteRT and ONNX.

Each format (`keras_ptame/export/litert.py`, `keras_ptame/export/onnx.py`)
converts the SavedModel that `export_saved_model` writes (from any backend,
itself checked against the explainer) and runs the result with its own
runtime. The flow is this module's: the SavedModel written into a temporary
folder, converted, run on probe images and compared with `explain` within
the SavedModel check's tolerances, then moved into place (`overwrite`
replaces only a model of the same format).
"""

import collections
import os
import tempfile

import keras
import numpy as np

from keras_ptame.export.saved_model import (
    export_saved_model,
    progress,
    resolve_image_size,
)
from keras_ptame.export.target import check_file_target
from keras_ptame.export.verification import (
    compare_explanations,
    measured_precision,
    probe_images,
    verification_tolerances,
)
from keras_ptame.utils.files import atomic_path

Format = collections.namedtuple(
    "Format", ["name", "signatures", "convert", "runner", "is_model"]
)
Format.__doc__ = """A one-file export format.

`name`: for messages; `signatures`: the names the file serves;
`convert(saved_model_path, signatures)`: the file's bytes;
`runner(model_bytes)`: a function `(signature, images) -> dict of numpy
outputs` (raises `ModuleNotFoundError` with the install hint when the
runtime is missing); `is_model(path)`: whether a file is one."""


def export_converted(
    explainer, path, format, image_size, overwrite, verify, safe_mode, verbose
):
    """Writes `explainer` to `path` in `format` (a `Format`); returns the path."""
    path = os.path.abspath(os.fspath(path))
    check_file_target(path, overwrite, format.is_model, format.name)
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
        progress(verbose, f"Converting the SavedModel to {format.name}")
        model = format.convert(saved, format.signatures)
    if verify:
        progress(verbose, f"Checking the {format.name} model against the explainer")
        verify_converted(explainer, format.runner(model), size, format)
    check_file_target(path, overwrite, format.is_model, format.name)
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(model)
    if verbose:
        print(
            f"Saved a {format.name} model at {path!r} ({len(model) / 2**20:.1f} MiB) "
            f"with signatures {', '.join(format.signatures)}."
        )
    return path


def verify_converted(explainer, run, image_size, format):
    """Raises `RuntimeError` if the model `run` runs disagrees with `explainer`.

    On `probe_images`: `serving_default`'s classes where the top two logits
    are clear of each other, and its maps, scores, evidence and flags within
    `verification_tolerances`; `explain_uint8_maps`' maps (where the format
    has it) within a level of `round(255 * maps)` of the float signature's.
    """
    images = probe_images(image_size, channels=explainer.input_channels)
    expected = explainer.explain_outputs(images)
    got = run("serving_default", images.astype("float32"))
    logits = keras.ops.convert_to_numpy(explainer.backbone(images))
    tolerances = verification_tolerances(
        measured_precision(explainer), np.max(np.abs(logits))
    )
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
    if "explain_uint8_maps" in format.signatures:
        lean = run("explain_uint8_maps", images)["maps"]
        levels = np.abs(lean.astype("float32") - np.round(255 * got["maps"]))
        if lean.dtype != np.uint8 or np.max(levels, initial=0) > 1:
            problems.append(
                "explain_uint8_maps: not round(255 * maps) of serving_default"
            )
    if problems:
        raise RuntimeError(
            f"The {format.name} model does not reproduce the explainer (tolerances: "
            + ", ".join(f"{key} {value:.2g}" for key, value in tolerances.items())
            + "): "
            + "; ".join(problems)
        )
