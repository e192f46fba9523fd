"""Pictures of explanations: overlays, grids, map beside masked image, PNG files.

numpy in, numpy (uint8 RGB) or a matplotlib `Figure` out; no Keras needed.
matplotlib (colormaps, figures) and Pillow (resizing, PNG files) are imported
only when a function needs them, and figures never touch pyplot's global
state, so these functions are safe in scripts, servers and notebooks alike.

```python
import keras_ptame as kp
from keras_ptame import visualize

out = explainer.explain_outputs(images)
figure = visualize.grid(images, out["maps"], classes=out["classes"],
                        scores=out["scores"], class_names=names)
visualize.save_png(figure, "explanations.png")
```
"""

import os

import numpy as np

from keras_ptame.utils.files import atomic_path


def overlay(image, saliency_map, cmap="jet", alpha=0.5):
    """Blends a colour-mapped saliency map onto its image.

    Args:
        image: array `(H, W, 3)` RGB (or `(H, W)` / `(H, W, 1)` grayscale),
            uint8 or float in [0, 255].
        saliency_map: float array `(h, w)` in [0, 1]; resized bilinearly to
            `(H, W)` if its size differs. Values outside [0, 1] are clipped,
            NaN counts as 0.
        cmap: str. A matplotlib colormap name. Defaults to `"jet"`.
        alpha: float in [0, 1]. Weight of the colour-mapped map. Defaults to
            `0.5`.

    Returns:
        uint8 array `(H, W, 3)`.

    Examples:
    ```python
    import numpy as np
    from keras_ptame import visualize

    image = np.zeros((64, 64, 3), "uint8")
    picture = visualize.overlay(image, np.random.rand(16, 16), alpha=0.4)
    picture.shape, picture.dtype   # (64, 64, 3) uint8
    ```
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}")
    image = _rgb(image)
    heat = colorize(resize_map(saliency_map, image.shape[:2]), cmap=cmap)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * heat
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def label(picture, text):
    """Writes `text` in white on a dark band across the top of `picture`.

    Args:
        picture: uint8 array `(H, W, 3)`.
        text: str, one short line.

    Returns:
        uint8 array `(H, W, 3)`, a copy.
    """
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.asarray(picture, np.uint8))
    draw = ImageDraw.Draw(canvas)
    box = draw.textbbox((2, 1), text)
    draw.rectangle((0, 0, canvas.width, box[3] + 2), fill=(0, 0, 0))
    draw.text((2, 1), text, fill=(255, 255, 255))
    return np.asarray(canvas)


def colorize(saliency_map, cmap="jet"):
    """A saliency map `(h, w)` in [0, 1] as a uint8 RGB picture `(h, w, 3)`.

    Args:
        saliency_map: float array `(h, w)`. Clipped to [0, 1]; NaN counts as 0.
        cmap: str. A matplotlib colormap name. Defaults to `"jet"`.

    Returns:
        uint8 array `(h, w, 3)`.
    """
    values = _map(saliency_map)
    colormap = _colormap(cmap)
    return (colormap(values)[..., :3] * 255).round().astype(np.uint8)


def resize_map(saliency_map, size):
    """Resizes a map `(h, w)` bilinearly to `size` `(H, W)`, as float32."""
    values = _map(saliency_map)
    size = tuple(int(s) for s in size)
    if values.shape == size:
        return values
    from PIL import Image

    resized = Image.fromarray(values).resize((size[1], size[0]), Image.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def masked_image(image, saliency_map):
    """The image multiplied by its map (a black baseline), as uint8 RGB."""
    image = _rgb(image)
    values = resize_map(saliency_map, image.shape[:2])
    return np.rint(image.astype(np.float32) * values[..., None]).astype(np.uint8)


def side_by_side(image, saliency_map, masked=None, cmap="jet", gap=4, scale=1):
    """The image, its map at input resolution and the masked image in a row.

    Args:
        image: array `(H, W, 3)` or grayscale, uint8 or float in [0, 255].
        saliency_map: float array `(h, w)` in [0, 1], resized to `(H, W)`.
        masked: optional array `(H, W, 3)`: the masked image to show. Defaults
            to `None` (the image multiplied by the map).
        cmap: str. Colormap of the map. Defaults to `"jet"`.
        gap: int. White pixels between the panels. Defaults to `4`.
        scale: int. Nearest-neighbour enlargement of the result, for small
            images. Defaults to `1`.

    Returns:
        uint8 array `(H * scale, (3 * W + 2 * gap) * scale, 3)`.

    Examples:
    ```python
    import numpy as np
    from keras_ptame import visualize

    row = visualize.side_by_side(np.zeros((32, 32, 3), "uint8"), np.random.rand(8, 8))
    row.shape   # (32, 104, 3)
    ```
    """
    image = _rgb(image)
    height, width = image.shape[:2]
    heat = colorize(resize_map(saliency_map, (height, width)), cmap=cmap)
    if masked is None:
        masked = masked_image(image, saliency_map)
    masked = _rgb(masked)
    if masked.shape != image.shape:
        raise ValueError(
            "`masked` must have the image's shape. "
            f"Received: masked {masked.shape}, image {image.shape}"
        )
    spacer = np.full((height, int(gap), 3), 255, np.uint8)
    row = np.concatenate([image, spacer, heat, spacer, masked], axis=1)
    return _enlarge(row, scale)


def grid(
    images,
    maps,
    titles=None,
    classes=None,
    scores=None,
    class_names=None,
    true_classes=None,
    flat=None,
    columns=8,
    cmap="jet",
    alpha=0.5,
    panel_inches=1.6,
    as_array=False,
):
    """Overlays of a batch of explanations in a grid, with titles.

    Without `titles`, each panel is titled from what is given: the true
    class, the explained (predicted) class and its score, named by
    `class_names` when given (e.g. `"true disc / pred disc 0.98"`). Maps
    flagged `flat` (`explain_outputs(...)["flat"]`: no evidence found, the
    map all zeros) are marked: "FLAT" in the title and a red frame, so that
    an empty overlay is not read as a map that points nowhere.

    Args:
        images: array `(N, H, W, 3)`, uint8 or float in [0, 255].
        maps: float array `(N, h, w)` in [0, 1].
        titles: optional list of `N` str. Defaults to `None` (built from the
            arguments below, or no titles).
        classes: optional int array `(N,)`: the explained classes.
        scores: optional float array `(N,)`: their scores.
        class_names: optional list of str, index = class.
        true_classes: optional int array `(N,)`: the dataset labels.
        flat: optional bool array `(N,)`: the maps flagged flat.
        columns: int. Panels per row. Defaults to `8`.
        cmap: str. Colormap of the maps. Defaults to `"jet"`.
        alpha: float. Weight of the maps in the overlays. Defaults to `0.5`.
        panel_inches: float. Width of one panel in inches. Defaults to `1.6`.
        as_array: bool. Return the rendered figure as a uint8 RGB array
            instead of the `Figure`. Defaults to `False`.

    Returns:
        A matplotlib `Figure`, or a uint8 array `(height, width, 3)` with
        `as_array=True`.

    Examples:
    ```python
    import numpy as np
    from keras_ptame import visualize

    images = np.zeros((4, 32, 32, 3), "uint8")
    figure = visualize.grid(images, np.random.rand(4, 8, 8), classes=[0, 1, 0, 1],
                            scores=[0.9, 0.8, 0.7, 0.6], class_names=["cat", "dog"])
    visualize.save_png(figure, "/tmp/grid.png")
    ```
    """
    images = np.asarray(images)
    maps = np.asarray(maps)
    if images.ndim != 4 or maps.ndim != 3 or len(images) != len(maps):
        raise ValueError(
            "`images` (N, H, W, 3) and `maps` (N, h, w) must hold the same "
            f"number of items. Received: images {images.shape}, maps {maps.shape}"
        )
    count = len(images)
    if count == 0:
        raise ValueError("`images` is empty. Received: 0 images")
    if titles is None:
        titles = _titles(count, classes, scores, class_names, true_classes)
    elif len(titles) != count:
        raise ValueError(
            f"`titles` must hold one title per image. Received: {len(titles)} "
            f"titles for {count} images"
        )
    flat = np.zeros(count, bool) if flat is None else np.asarray(flat, bool)
    if flat.shape != (count,):
        raise ValueError(
            f"`flat` must hold one flag per image. Received: shape {flat.shape} "
            f"for {count} images"
        )
    titles = [
        "\n".join(filter(None, [title, "FLAT"])) if is_flat else title
        for title, is_flat in zip(titles, flat, strict=True)
    ]
    columns = max(1, min(int(columns), count))
    rows = -(-count // columns)
    from matplotlib.figure import Figure

    # Room above each panel for its title's lines (7-point type).
    lines = max((title.count("\n") + 1 for title in titles if title), default=0)
    figure = Figure(
        figsize=(
            columns * panel_inches,
            rows * (panel_inches + (0.13 * lines + 0.1 if lines else 0)),
        ),
        # Laid out when drawn, titles included, whatever the canvas.
        layout="constrained",
    )
    for index in range(count):
        axis = figure.add_subplot(rows, columns, index + 1)
        axis.imshow(overlay(images[index], maps[index], cmap=cmap, alpha=alpha))
        _frame(axis, flat[index])
        if titles[index]:
            color = "red" if flat[index] else "black"
            axis.set_title(titles[index], fontsize=7, color=color)
    if as_array:
        return figure_to_array(figure)
    return figure


def figure_to_array(figure):
    """Renders a matplotlib `Figure` (Agg) to a uint8 RGB array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(picture, path):
    """Writes a uint8 array or a matplotlib `Figure` to a PNG file.

    The file is written next to its target and renamed into place, so an
    interrupted write never leaves a half-written PNG at `path`. Parent
    folders are created.

    Args:
        picture: uint8 array `(H, W, 3)`, `(H, W, 4)` or `(H, W)`, float
            arrays in [0, 255], or a matplotlib `Figure`.
        path: str or path-like, the PNG file.

    Returns:
        The path written, as a str.

    Examples:
    ```python
    import numpy as np
    from keras_ptame import visualize

    visualize.save_png(np.zeros((8, 8, 3), "uint8"), "/tmp/black.png")
    ```
    """
    if hasattr(picture, "savefig"):
        picture = figure_to_array(picture)
    array = np.asarray(picture)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(
            "`picture` must be an image (H, W), (H, W, 3) or (H, W, 4). "
            f"Received: shape {array.shape}"
        )
    if array.dtype != np.uint8:
        array = _displayable_uint8(array)
    from PIL import Image

    path = os.fspath(path)
    with atomic_path(path) as temporary:
        Image.fromarray(array).save(temporary, format="PNG")
    return path


# === Helpers ===


def _titles(count, classes, scores, class_names, true_classes):
    def name(value):
        value = int(value)
        if class_names is not None and 0 <= value < len(class_names):
            return str(class_names[value])
        return str(value)

    titles = []
    for index in range(count):
        parts = []
        if true_classes is not None:
            parts.append(f"true {name(true_classes[index])}")
        if classes is not None:
            predicted = f"pred {name(classes[index])}"
            if scores is not None:
                predicted += f" {float(scores[index]):.2f}"
            parts.append(predicted)
        elif scores is not None:
            parts.append(f"{float(scores[index]):.2f}")
        titles.append("\n".join(parts))
    return titles


def _frame(axis, flat):
    """No axis; a red frame around a flat map."""
    if not flat:
        axis.set_axis_off()
        return
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_color("red")
        spine.set_linewidth(2)


def _rgb(image):
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(
            "`image` must be (H, W, 3) RGB or (H, W) grayscale. "
            f"Received: shape {array.shape}"
        )
    array = array[..., :3]
    if array.dtype == np.uint8:
        return array
    return _displayable_uint8(array)


def _displayable_uint8(array):
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"Pixels must be numbers. Received: dtype {array.dtype}")
    array = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _map(saliency_map):
    values = np.asarray(saliency_map, dtype=np.float32)
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim != 2:
        raise ValueError(
            f"`saliency_map` must be 2-D (h, w). Received: shape {values.shape}"
        )
    values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(values, 0.0, 1.0)


def _colormap(name):
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError as error:
        raise ValueError(
            f"Unknown colormap. Received: cmap={name!r}. Try 'jet', 'viridis', "
            "'inferno' or 'magma'."
        ) from error


def _enlarge(array, scale):
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"`scale` must be >= 1. Received: scale={scale}")
    if scale == 1:
        return array
    return np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)
