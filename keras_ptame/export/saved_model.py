"""Export a trained explainer as a TensorFlow SavedModel for TF Serving.

The SavedModel is a plain TensorFlow graph whatever backend the explainer
was trained on. Under TensorFlow it is traced in this process. Under JAX and
PyTorch the explainer is saved to a `.keras` file, rebuilt under TensorFlow
in a child process from that file and traced there; the SavedModel is then
loaded back here and its maps are compared with the explainer's own before
it is moved to the target path, within tolerances that follow from the
precision the explainer computes in (TF32 on recent NVIDIA GPUs, float16 or
bfloat16 under a mixed dtype policy: see `keras_ptame.export.verification`).
A pure TensorFlow graph (rather than JAX's `jax2tf` `XlaCallModule` op) runs
on any TF Serving build.

Signatures:

- `serving_default`: `images` `(B, H, W, C)` float32 raw pixels in
  [0, 255] → `classes` `(B,)` int32 (the classifier's prediction), `scores`
  `(B,)` (its softmax probability), `maps` `(B, H, W)` in [0, 1],
  `evidence` `(B,)` float32, `flat` `(B,)` bool (a map that found no
  evidence, all zeros) and `misranked` `(B,)` bool (a map, not flat, of a
  class in the explainer's `misranked_classes`: its class failed the removal
  check in training, its maps do not carry it);
  see `PTAME.explain_outputs`.
- `explain_classes`: `images` and `classes` `(B,)` int32 → the same outputs
  for the given classes.
- `explain_top_k`: `images` and `k` (a scalar int32 in [1, num_classes]) →
  each image's `k` highest-scoring classes, highest first, with an axis of
  `k` after the first in every output: `classes`, `scores`, `evidence`,
  `flat`, `misranked` `(B, k)` and `maps` `(B, k, H, W)` (one pass of each
  network, as `PTAME.explain_outputs(images, top_k=k)`).
- `explain_encoded`: `encoded` `(B,)` string, each a JPEG, PNG, GIF or BMP
  file's bytes (converted to the explainer's grayscale or RGB: RGBA loses
  its alpha) → the same outputs, at `(H, W)`: the images are decoded and
  resized bilinearly to `(H, W)` inside the graph. Over REST, send
  `{"b64": ...}`. Only for explainers of 1- or 3-channel images: image
  files hold no other bands (a 4-channel PNG is RGBA), so a multispectral
  explainer takes its pixels through the other signatures.
- `explain_uint8`: `images` `(B, H, W, C)` uint8 → the same outputs as
  `serving_default` (a quarter of the float payload, for gRPC clients).
- `explain_uint8_maps`: `images` uint8 → the same outputs with `maps` uint8
  in [0, 255], `round(255 * maps)` (as `explain(images, dtype="uint8")`):
  a quarter of the maps' bytes in the reply too.

`C` is the explainer's channel count (`explainer.input_channels`: 1 for
grayscale, 3 for RGB, 4 or more for multispectral images).

From Python, `tf.saved_model.load(path).serving_default(images)` and
`.explain_classes(images, classes)` and `.explain_top_k(images, k)` also
take uint8 images.

Every signature checks its request in the graph (a loaded signature does
not check its declared shape by itself) and answers a bad one with
`InvalidArgumentError`: `images` of another rank or size, float pixels
outside [0, 255] (NaN included), `classes` or `encoded` not `(B,)`, `k`
not a scalar in [1, num_classes].

`overwrite=True` replaces only the files an earlier export wrote (its
marker lists them); files added to it since, such as TF Serving's warm-up
file `assets.extra/tf_serving_warmup_requests`, are copied into the new
SavedModel (see `keras_ptame.export.target`).

```python
import numpy as np
import tensorflow as tf
import keras_ptame as kp

kp.export.export_saved_model(explainer, "ptame_savedmodel/1")
served = tf.saved_model.load("ptame_savedmodel/1")
outputs = served.signatures["serving_default"](images=tf.constant(images, "float32"))
# The tolerance the export's own check used for maps (1e-3 where the
# explainer computes in float32, more in TF32 or under mixed precision).
precision = kp.export.measured_precision(explainer)
atol = kp.export.verification_tolerances(precision)["maps"]
np.allclose(outputs["maps"], explainer.explain(images), atol=atol)  # True
```
"""

import argparse
import contextlib
import errno
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_ptame.export.target import (
    carry_user_files,
    check_target,
    write_marker,
)
from keras_ptame.export.tracing import (
    exported_signatures,
    write_saved_model,
)
from keras_ptame.export.verification import (
    probe_images,
    verify_saved_model,
)
from keras_ptame.utils.files import atomic_path
from keras_ptame.utils.validation import check_finite_weights

_WORKER = (
    "import sys; from keras_ptame.export.saved_model import _worker_main; "
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
            `is_own_export`), anything else there is an error. Of that
            export, only the files it wrote are replaced: files added to it
            since (`user_files`, e.g. TF Serving's warm-up file
            `assets.extra/tf_serving_warmup_requests`) are copied into the
            new SavedModel. Defaults to `False` (an existing `path` is an
            error and is left untouched).
        verify: bool. Whether to load the written SavedModel and check that
            its classes, scores and maps equal the explainer's own on a few
            probe images, to the rounding of the precision the explainer
            computes in (`verify_saved_model`), before moving it to `path`.
            Defaults to `True`.
        in_subprocess: optional bool. Whether to rebuild the explainer under
            TensorFlow in a child process (from a `.keras` file) and trace
            it there. Defaults to `None`: only when the Keras backend is not
            TensorFlow.
        safe_mode: bool. `safe_mode` for loading the `.keras` file in the
            child process. Defaults to `True`.
        verbose: int. `1` prints each step as it starts (the rebuild in
            a child process and the check take seconds to minutes on large
            networks), then where the SavedModel went and its signatures.
            Defaults to `0`.

    Returns:
        The path of the SavedModel, as a str.

    Raises:
        FileExistsError: `path` exists and `overwrite` is `False`, or is
            not an export of this package, or holds a warm-up file for
            another image size.
        ValueError: the explainer cannot be exported as given (not a
            `PTAME`, unknown image size, NaN or infinite weights or
            outputs); raised before anything is written.
        OSError: the disk is full (nothing was changed at `path`).
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
    size = resolve_image_size(explainer, image_size)
    check_target(path, overwrite, size)
    # RGB where neither the explainer nor its networks say otherwise.
    explainer.ensure_built((None, *size, explainer.input_channels or 3))
    signatures = exported_signatures(explainer.input_channels)
    expected = _check_finite(explainer, size)
    if in_subprocess is None:
        in_subprocess = keras.config.backend() != "tensorflow"
    if not in_subprocess and keras.config.backend() != "tensorflow":
        raise ValueError(
            "Tracing in this process needs the TensorFlow backend. Received: "
            f"in_subprocess=False with KERAS_BACKEND={keras.config.backend()!r}"
        )
    # Built beside the target and renamed into place once verified: the
    # rename stays on one file system, so it is atomic.
    with _disk_full_is_one_error(path), atomic_path(path, directory=True) as model_dir:
        progress(verbose, _WRITE_STEPS[bool(in_subprocess)])
        _write(explainer, model_dir, size, in_subprocess, safe_mode)
        if verify:
            progress(verbose, "Checking the SavedModel against the explainer")
            verify_saved_model(explainer, model_dir, size, expected=expected)
        write_marker(model_dir, explainer, size, signatures)
        # Checked again: the path may have appeared while the export ran.
        check_target(path, overwrite, size)
        carry_user_files(path, model_dir)
    if verbose:
        print(
            f"Saved a TensorFlow SavedModel at {path!r} with signatures "
            f"{', '.join(signatures)} for images of {size[0]}x{size[1]} pixels "
            f"({explainer.input_channels} channels)."
        )
    return path


_WRITE_STEPS = {
    True: "Rebuilding the explainer under TensorFlow in a child process and tracing it",
    False: "Tracing the explainer's signatures",
}


def progress(verbose, step):
    """Prints `step...` when `verbose`: a step of an export as it starts."""
    if verbose:
        print(f"{step}...", flush=True)


def _write(explainer, model_dir, size, in_subprocess, safe_mode):
    if not in_subprocess:
        write_saved_model(explainer, model_dir, size)
        return
    with tempfile.TemporaryDirectory(dir=os.path.dirname(model_dir)) as scratch:
        keras_file = os.path.join(scratch, "explainer.keras")
        explainer.save(keras_file)
        _export_in_subprocess(keras_file, model_dir, size, safe_mode)


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
    explainer.ensure_built((None, *size, explainer.input_channels or 3))
    write_saved_model(explainer, args.output, size)
    return 0


# === Refusals and the disk ===


def _check_finite(explainer, image_size):
    """Raises `ValueError` before anything is written if the explainer gives
    non-finite values: NaN or infinite weights, or maps, scores or evidence
    on the probe images (e.g. from a negative BatchNorm variance).

    Returns its outputs on `probe_images`, which the verification reuses.
    """
    check_finite_weights(explainer, "the explainer to export")
    expected = explainer.explain_outputs(
        probe_images(image_size, channels=explainer.input_channels)
    )
    bad = [
        key
        for key in ("maps", "scores", "evidence")
        if not np.all(np.isfinite(expected[key]))
    ]
    if bad:
        raise ValueError(
            f"The explainer gives NaN or infinite {', '.join(bad)} on probe "
            "images (its weights are finite: a layer computes them, e.g. a "
            "negative BatchNorm variance); it is not exported."
        )
    return expected


@contextlib.contextmanager
def _disk_full_is_one_error(path):
    """A full disk, however it is reported (`OSError`, a TensorFlow error, the
    child process's message), becomes one `OSError` naming `path`."""
    try:
        yield
    except Exception as error:
        full = getattr(error, "errno", None) == errno.ENOSPC
        if not (full or "No space left on device" in str(error)):
            raise
        message = (
            f"No space left on the device to export to {path!r}; nothing was "
            "changed there. Free some space and export again."
        )
        raise _DiskFullError(errno.ENOSPC, message) from error


class _DiskFullError(OSError):
    def __str__(self):
        return self.strerror


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
