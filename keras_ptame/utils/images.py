"""Finding and reading image files: the one definition that `kp.data` and the
command line share (`kp.data.image_folder` decodes each file with
`read_image`; only the exported SavedModel decodes with `tf.io`, inside its
graph, as serving has no Python)."""

import os

import numpy as np

# The formats found in folders, which the exported SavedModel's
# `decode_image` reads too. Files named one by one may be of any format
# Pillow reads.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# The channel counts image files are read as, and Pillow's mode for each.
FILE_CHANNELS = {1: "L", 3: "RGB"}


def images_in_folder(directory):
    """The image files under `directory` (searched recursively), sorted.

    Raises:
        ValueError: `directory` is not a folder, or holds no image file.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"Not a folder: {directory!r}")
    paths = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(directory)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not paths:
        raise ValueError(
            f"No image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {directory!r}."
        )
    return paths


def find_images(inputs):
    """Image files named directly, or found under folders, in the order given.

    Args:
        inputs: iterable of str, files and folders.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: a folder holds no image file.
    """
    files = []
    for item in inputs:
        if os.path.isdir(item):
            files += images_in_folder(item)
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise FileNotFoundError(f"No such image file or folder: {item!r}")
    return files


def read_image(path, size=None, notes=None, channels=3):
    """Reads an image file as RGB (or grayscale) uint8, and a copy resized to `size`.

    Args:
        path: str, the image file.
        size: optional `(height, width)` for the resized copy. Defaults to
            `None` (the copy is the original).
        notes: optional list; a sentence is appended when the image is
            converted or resized.
        channels: int. `3` for RGB, `1` for grayscale (the luminance of a
            colour file), the explainer's channel count. Image files hold
            no other bands. Defaults to `3`.

    Returns:
        `(original, resized)`, uint8 arrays `(h, w, channels)` and
        `(*size, channels)`.

    Raises:
        ValueError: the file is not an image Pillow can read, or
            `channels` is neither 1 nor 3.
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in FILE_CHANNELS:
        raise ValueError(
            f"Image files are read as grayscale (1 channel) or RGB (3 channels). "
            f"Received: channels={channels!r}; pass images of other channel "
            "counts as arrays."
        )
    target = FILE_CHANNELS[channels]
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            image = _to_mode(image, target)
            original = _pixels(image)
            size = original.shape[:2] if size is None else tuple(size)
            resized = original
            if original.shape[:2] != size:
                resized = _pixels(
                    image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                )
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        ValueError,
        SyntaxError,
    ) as error:
        message = " ".join(str(error).split())[:300]
        raise ValueError(
            f"Cannot read {path!r} as an image ({type(error).__name__}: {message})."
        ) from error
    if notes is not None:
        notes += _changes(path, mode, original.shape[:2], size, target)
    return original, resized


def _pixels(image):
    """A Pillow image as uint8 `(h, w, channels)` (grayscale keeps its axis)."""
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _to_mode(image, target="RGB"):
    """`image` as 8-bit `target` (`"RGB"` or `"L"`): grayscale repeated or
    colour as luminance, alpha dropped, deep pixels scaled.

    Pillow's own conversion clips 16-bit and 32-bit grayscale to 255, which
    turns a 16-bit image almost all white; those are scaled to 8 bits here.
    """
    from PIL import Image

    if image.mode == target:
        return image
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            top = 65535.0
        else:
            # 32-bit integer or float: 8-bit values if they fit, else 16-bit.
            high = float(values.max()) if values.size else 0.0
            top = 1.0 if image.mode == "F" and high <= 1.0 else 255.0
            top = 65535.0 if high > 255.0 else top
            top = max(top, high)
        gray = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert(target)
    # Grayscale is repeated on the three channels (colour made luminance for
    # "L"); alpha is dropped.
    return image.convert(target)


def _changes(path, mode, original_size, size, target="RGB"):
    changes = []
    if mode != target:
        scaled = " (scaled to 8 bits)" if mode.startswith("I") or mode == "F" else ""
        changes.append(f"converted from mode {mode} to {target}{scaled}")
    if original_size != size:
        changes.append(
            f"resized from {original_size[0]}x{original_size[1]} to {size[0]}x{size[1]}"
        )
    return [f"{path}: {', '.join(changes)}"] if changes else []
