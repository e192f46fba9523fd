"""Export a trained explainer as a TensorFlow SavedModel for TF Serving.

The SavedModel is a plain TensorFlow graph whatever backend the explainer
was trained on. Under TensorFlow it is traced in this process. Under JAX and
PyTorch the explainer is saved to a `.keras` file, rebuilt under TensorFlow
in a child process from that file and traced there; the SavedModel is then
loaded back here and its maps are compared with the explainer's own before
it is moved to the target path. A pure TensorFlow graph (rather than JAX's
`jax2tf` `XlaCallModule` op) runs on any TF Serving build.

Signatures:

- `serving_default`: `images` `(B, H, W, 3)` float32 raw pixels in
  [0, 255] → `classes` `(B,)` int32 (the classifier's prediction), `scores`
  `(B,)` (its softmax probability), `maps` `(B, H, W)` in [0, 1],
  `evidence` `(B,)` float32, `flat` `(B,)` bool (a map that found no
  evidence, all zeros) and `misranked` `(B,)` bool (a map, not flat, of a
  class in the explainer's `misranked_classes`: its class failed the removal
  check in training, its maps do not carry it);
  see `PTAME.explain_outputs`.
- `explain_classes`: `images` and `classes` `(B,)` int32 → the same outputs
  for the given classes.
- `explain_encoded`: `encoded` `(B,)` string, each a JPEG, PNG, GIF or BMP
  file's bytes (grayscale and RGBA are converted to RGB) → the same
  outputs, at `(H, W)`: the images are decoded and resized bilinearly to
  `(H, W)` inside the graph. Over REST, send `{"b64": ...}`.
- `explain_uint8`: `images` `(B, H, W, 3)` uint8 → the same outputs as
  `serving_default` (a quarter of the float payload, for gRPC clients).

From Python, `tf.saved_model.load(path).serving_default(images)` and
`.explain_classes(images, classes)` also take uint8 images.

```python
import numpy as np
import tensorflow as tf
import keras_ptame as kp

kp.export.export_saved_model(explainer, "ptame_savedmodel/1")
served = tf.saved_model.load("ptame_savedmodel/1")
outputs = served.signatures["serving_default"](images=tf.constant(images, "float32"))
np.allclose(outputs["maps"], explainer.explain(images), atol=1e-4)  # True
```
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_ptame.export.tracing import SIGNATURES, write_saved_model
from keras_ptame.export.verification import probe_images, verify_saved_model
from keras_ptame.utils.files import atomic_path
from keras_ptame.version import __version__

__all__ = [
    "MARKER",
    "SIGNATURES",
    "export_saved_model",
    "is_own_export",
    "probe_images",
    "resolve_image_size",
    "verify_saved_model",
    "write_saved_model",
]

# Every export carries this file (TF Serving ignores `assets.extra`), so that
# `overwrite=True` can tell a SavedModel it wrote from anything else.
MARKER = os.path.join("assets.extra", "keras_ptame.json")
_SAVED_MODEL_ENTRIES = {
    "saved_model.pb",
    "variables",
    "assets",
    "assets.extra",
    "fingerprint.pb",
}
_WORKER = (
    "import sys; from keras_ptame.export import _worker_main; "
    "sys.exit(_worker_main(sys.argv[1:]))"
)


def export_saved_model(
    explainer,
    path,
    image_size=None,
    overwrite=False,
    verify=True,
    in_subprocess=None,
    safe_mode=True,
    verbose=0,
):
    """Writes `explainer` as a TensorFlow SavedModel ready for TF Serving.

    The write is atomic: the SavedModel is built in a temporary directory
    next to `path` and renamed to `path` only once it is complete (and
    verified), so an interrupted or failed export leaves nothing at `path`.

    Args:
        explainer: a `keras_ptame.PTAME`.
        path: str or path-like. The SavedModel directory to create (TF
            Serving expects `<model_base_path>/<version>`, e.g.
            `"models/ptame/1"`).
        image_size: optional `(height, width)` of the images the signatures
            take. Defaults to `None` (read from the classifier's input
            shape, or from the shape the explainer was built on).
        overwrite: bool. Whether to replace an existing `path`; only a
            SavedModel that this package exported is ever replaced (see
            `is_own_export`), anything else there is an error. Defaults to
            `False` (an existing `path` is an error and is left untouched).
        verify: bool. Whether to load the written SavedModel and check that
            its classes, scores and maps equal the explainer's own on a few
            probe images before moving it to `path`. Defaults to `True`.
        in_subprocess: optional bool. Whether to rebuild the explainer under
            TensorFlow in a child process (from a `.keras` file) and trace
            it there. Defaults to `None`: only when the Keras backend is not
            TensorFlow.
        safe_mode: bool. `safe_mode` for loading the `.keras` file in the
            child process. Defaults to `True`.
        verbose: int. `1` prints where the SavedModel went and its
            signatures. Defaults to `0`.

    Returns:
        The path of the SavedModel, as a str.

    Raises:
        FileExistsError: `path` exists and `overwrite` is `False`.
        ValueError: the explainer cannot be exported as given (not a
            `PTAME`, unknown image size).
        RuntimeError: the child process failed, or the SavedModel's outputs
            differ from the explainer's (with the difference in the message).

    Examples:
    ```python
    import keras_ptame as kp

    kp.export.export_saved_model(explainer, "models/ptame/1")
    # then: docker run -p 8501:8501 -v "$PWD/models/ptame:/models/ptame" \\
    #   -e MODEL_NAME=ptame tensorflow/serving
    ```
    """
    _check_explainer(explainer)
    path = os.path.abspath(os.fspath(path))
    _check_target(path, overwrite)
    size = resolve_image_size(explainer, image_size)
    explainer.ensure_built((None, *size, 3))
    if in_subprocess is None:
        in_subprocess = keras.config.backend() != "tensorflow"
    if not in_subprocess and keras.config.backend() != "tensorflow":
        raise ValueError(
            "Tracing in this process needs the TensorFlow backend. Received: "
            f"in_subprocess=False with KERAS_BACKEND={keras.config.backend()!r}"
        )
    # Built beside the target and renamed into place once verified: the
    # rename stays on one file system, so it is atomic.
    with atomic_path(path, directory=True) as model_dir:
        if in_subprocess:
            with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as scratch:
                keras_file = os.path.join(scratch, "explainer.keras")
                explainer.save(keras_file)
                _export_in_subprocess(keras_file, model_dir, size, safe_mode)
        else:
            write_saved_model(explainer, model_dir, size)
        if verify:
            verify_saved_model(explainer, model_dir, size)
        _write_marker(model_dir, explainer, size)
        # Checked again: the path may have appeared while the export ran.
        _check_target(path, overwrite)
    if verbose:
        print(
            f"Saved a TensorFlow SavedModel at {path!r} with signatures "
            f"{', '.join(SIGNATURES)} for images of {size[0]}x{size[1]} pixels."
        )
    return path


def resolve_image_size(explainer, image_size=None):
    """The `(height, width)` that the exported signatures take."""
    if image_size is not None:
        if isinstance(image_size, (int, np.integer)):
            image_size = (image_size, image_size)
        size = tuple(image_size)
        if len(size) != 2 or not all(
            isinstance(s, (int, np.integer)) and s > 0 for s in size
        ):
            raise ValueError(
                "`image_size` must be two positive integers (height, width). "
                f"Received: image_size={image_size!r}"
            )
        return int(size[0]), int(size[1])
    if explainer.input_size is not None:
        return tuple(int(s) for s in explainer.input_size)
    raise ValueError(
        "The image size to export for cannot be read from the classifier (it "
        "accepts any size). Pass `image_size=(height, width)`."
    )


# === Child process (JAX and PyTorch backends) ===


def _export_in_subprocess(keras_file, model_dir, image_size, safe_mode):
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "tensorflow"
    # Tracing needs no accelerator; keep the child off the GPU the parent
    # process may be using.
    env["CUDA_VISIBLE_DEVICES"] = "-1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [
        sys.executable,
        "-c",
        _WORKER,
        keras_file,
        model_dir,
        "--image-size",
        str(image_size[0]),
        str(image_size[1]),
    ]
    if not safe_mode:
        command.append("--unsafe")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise RuntimeError(
            "Rebuilding the explainer under TensorFlow for export failed "
            f"(exit code {result.returncode}). Every layer of the explainer must "
            "load from a `.keras` file under TensorFlow (no backend-specific "
            f"layers). The child process said:\n{tail}"
        )


def _worker_main(argv):
    """Entry point of the child process: `.keras` file in, SavedModel out."""
    parser = argparse.ArgumentParser(prog="python -m keras_ptame.export")
    parser.add_argument("keras_file")
    parser.add_argument("output")
    parser.add_argument("--image-size", type=int, nargs=2, required=True)
    parser.add_argument("--unsafe", action="store_true")
    args = parser.parse_args(argv)
    if keras.config.backend() != "tensorflow":
        print("Run with KERAS_BACKEND=tensorflow.", file=sys.stderr)
        return 2
    explainer = keras.saving.load_model(
        args.keras_file, compile=False, safe_mode=not args.unsafe
    )
    size = tuple(args.image_size)
    explainer.ensure_built((None, *size, 3))
    write_saved_model(explainer, args.output, size)
    return 0


# === The final move ===


def _check_target(path, overwrite):
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise FileExistsError(
            f"The export path exists: {path!r}. Choose another path or pass "
            "`overwrite=True` (`--overwrite` on the command line)."
        )
    if not is_own_export(path):
        raise FileExistsError(
            f"{path!r} exists and is not a SavedModel exported by keras_ptame (no "
            f"{MARKER}, or other files beside the SavedModel's own); overwriting "
            "replaces only those. Choose another path, or remove it yourself."
        )


def is_own_export(path):
    """Whether `path` is a SavedModel folder that this package wrote, and only that.

    `overwrite=True` replaces nothing else: not a folder of other files, not
    a model's base folder holding versions, not a link.
    """
    return (
        os.path.isdir(path)
        and not os.path.islink(path)
        and os.path.isfile(os.path.join(path, MARKER))
        and set(os.listdir(path)) <= _SAVED_MODEL_ENTRIES
    )


def _write_marker(model_dir, explainer, image_size):
    folder = os.path.dirname(os.path.join(model_dir, MARKER))
    os.makedirs(folder, exist_ok=True)
    details = {
        "written_by": f"keras_ptame {__version__}",
        "keras_backend": keras.config.backend(),
        "image_size": list(image_size),
        "num_classes": int(explainer.num_classes),
        "signatures": list(SIGNATURES),
    }
    with open(os.path.join(model_dir, MARKER), "w") as file:
        json.dump(details, file, indent=2)


def _check_explainer(explainer):
    # The explainer's public surface is all an export needs.
    needed = ("explain_outputs", "ensure_built", "input_size", "backbone", "save")
    if not all(hasattr(explainer, name) for name in needed):
        raise ValueError(
            "`explainer` must be a `keras_ptame.PTAME`. "
            f"Received: explainer={type(explainer).__name__}"
        )


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
