"""The export's target: what it may replace, and what it keeps there.

Every export carries a marker, `assets.extra/keras_ptame.json` (TF Serving
ignores `assets.extra` except for its own warm-up file), listing the files
that the export wrote. `overwrite=True` replaces only a folder with that
marker, and only those files: whatever else is in it (a warm-up file
`assets.extra/tf_serving_warmup_requests`, notes) is the user's and is
copied into the new SavedModel before it is moved into place. Symbolic
links are copied as links, never followed.

A LiteRT or ONNX export is one file: `overwrite=True` replaces only a model
of its format (`check_file_target`).
"""

import json
import os
import shutil

import keras

from keras_ptame.version import __version__

MARKER = os.path.join("assets.extra", "keras_ptame.json")
# The file TF Serving replays on every load of a version to warm it up.
WARMUP = os.path.join("assets.extra", "tf_serving_warmup_requests")
# What an export wrote before its marker listed its files.
_UNLISTED_OWN = ("saved_model.pb", "fingerprint.pb", "variables", "assets")


def check_target(path, overwrite, image_size):
    """Raises `FileExistsError` unless `path` is free, or replaceable by an export.

    Args:
        path: str, the absolute path of the SavedModel to write.
        overwrite: bool, whether an earlier export at `path` may be replaced.
        image_size: `(height, width)` of the new export: a warm-up file
            carried over must have been written for the same size.
    """
    if not _replaceable(path, overwrite):
        return
    if not is_own_export(path):
        raise FileExistsError(
            f"{path!r} exists and is not a SavedModel exported by keras_ptame (no "
            f"{MARKER}); overwriting replaces only those. Choose another path, or "
            "remove it yourself."
        )
    _check_warmup(path, image_size)


def check_file_target(path, overwrite, is_model, kind):
    """Raises `FileExistsError` unless `path` is free, or a `kind` model
    (`is_model(path)`) that `overwrite` lets a one-file export replace."""
    if not _replaceable(path, overwrite):
        return
    if os.path.islink(path) or not os.path.isfile(path) or not is_model(path):
        article = "an" if kind[0] in "AEIOU" else "a"
        raise FileExistsError(
            f"{path!r} exists and is not {article} {kind} model; overwriting "
            "replaces only those. Choose another path, or remove it yourself."
        )


def _replaceable(path, overwrite):
    """Whether something is at `path`; `FileExistsError` if it is and
    `overwrite` is false."""
    if not os.path.lexists(path):
        return False
    if not overwrite:
        raise FileExistsError(
            f"The export path exists: {path!r}. Choose another path or pass "
            "`overwrite=True` (`--overwrite` on the command line)."
        )
    return True


def is_own_export(path):
    """Whether `path` is a SavedModel folder that this package wrote.

    `overwrite=True` replaces nothing else: not a folder of other files, not
    a model's base folder holding versions, not a link, and of an export
    only the files it wrote (see `user_files`).
    """
    return (
        os.path.isdir(path)
        and not os.path.islink(path)
        and not os.path.islink(os.path.dirname(os.path.join(path, MARKER)))
        and os.path.isfile(os.path.join(path, MARKER))
        and not os.path.islink(os.path.join(path, MARKER))
    )


def user_files(path):
    """The files and links in the export at `path` that the export did not write.

    Relative paths, sorted. A link (to a file or a folder) is one entry and
    is not followed.
    """
    marker = _read_marker(path) or {}
    listed = marker.get("files")
    found = []
    for relative in _entries(path):
        if isinstance(listed, list):
            own = relative in listed
        else:  # an export from before the marker listed its files
            own = relative == MARKER or relative.split(os.sep)[0] in _UNLISTED_OWN
        if not own:
            found.append(relative)
    return found


def write_marker(model_dir, explainer, image_size, signatures):
    """Writes the marker, listing every file in `model_dir` and itself."""
    folder = os.path.dirname(os.path.join(model_dir, MARKER))
    os.makedirs(folder, exist_ok=True)
    details = {
        "written_by": f"keras_ptame {__version__}",
        "keras_backend": keras.config.backend(),
        "image_size": list(image_size),
        "num_classes": int(explainer.num_classes),
        "signatures": list(signatures),
        # What `overwrite=True` may replace; anything else is kept.
        "files": sorted({*_entries(model_dir), MARKER}),
    }
    with open(os.path.join(model_dir, MARKER), "w") as file:
        json.dump(details, file, indent=2)


def carry_user_files(path, model_dir):
    """Copies the user's files of the export at `path` into `model_dir`.

    Raises `FileExistsError` naming them if the new export wrote files of
    the same names (nothing is copied then).
    """
    if not os.path.lexists(path):
        return
    carried = user_files(path)
    clashes = [f for f in carried if os.path.lexists(os.path.join(model_dir, f))]
    if clashes:
        raise FileExistsError(
            f"The export at {path!r} holds files of yours that the new export "
            f"also writes: {', '.join(clashes)}. Move them away, then export again."
        )
    for relative in carried:
        source = os.path.join(path, relative)
        target = os.path.join(model_dir, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target, follow_symlinks=False)


def _check_warmup(path, image_size):
    # TF Serving replays the warm-up requests on load and refuses a version
    # they fail on: requests for other image sizes would break the new one.
    if WARMUP not in user_files(path):
        return
    before = (_read_marker(path) or {}).get("image_size")
    if before is not None and list(before) != list(image_size):
        raise FileExistsError(
            f"{os.path.join(path, WARMUP)!r} holds TF Serving warm-up requests "
            f"for {before[0]}x{before[1]} images, and the new export takes "
            f"{image_size[0]}x{image_size[1]}: TF Serving would refuse to load it. "
            "Move the file away (and write new requests), then export again."
        )


def _entries(folder):
    """Relative paths of the files and links under `folder`, links not followed."""
    found = []
    for root, folders, files in os.walk(folder):
        for name in list(folders):
            if os.path.islink(os.path.join(root, name)):
                folders.remove(name)
                files.append(name)
        found += [os.path.relpath(os.path.join(root, f), folder) for f in files]
    return sorted(found)


def _read_marker(path):
    try:
        with open(os.path.join(path, MARKER)) as file:
            details = json.load(file)
    except (OSError, ValueError):
        return None
    return details if isinstance(details, dict) else None
