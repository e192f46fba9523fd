"""One comparison table of explainers on one classifier.

```
python -m keras_ptame.evaluation --classifier classifier.keras \\
    --data images.npz --method ptame=explainer.keras --method rise \\
    --method gradcam:conv5 --method random --method centre --output results
```

Rows are methods; columns are AD and IC at 100/50/15% kept, ROAD accuracy
most and least relevant first (per percentage, and the trapezoid summary),
the pointing game and the map mass inside the object (when ground truth is
given) and seconds per explanation. The table is written as Markdown and CSV.
"""

import argparse
import csv
import io
import os
import sys
import time

import numpy as np

from keras_ptame.metrics.confidence import FRACTIONS, confidence_metrics
from keras_ptame.metrics.deletion import deletion_insertion
from keras_ptame.metrics.imputation import IMPUTATIONS
from keras_ptame.metrics.localization import (
    ground_truth_masks,
    mass_inside,
    pointing_game,
)
from keras_ptame.metrics.road import PERCENTAGES, road
from keras_ptame.metrics.scoring import (
    as_backbone,
    check_batch_size,
    check_maps,
    probabilities,
)
from keras_ptame.validation import check_classes, check_images

# What each column means and which way is better, for the table's legend.
LEGEND = {
    "AD": "Average Drop, % (lower is better)",
    "IC": "Increase in Confidence, % (higher is better)",
    "MoRF": "ROAD accuracy, most relevant removed first, % (lower is better)",
    "LeRF": "ROAD accuracy, least relevant removed first, % (higher is better)",
    "pointing_game": "map peak on the object, % (higher is better)",
    "mass_inside": "share of map mass on the object, % (higher is better)",
    "deletion": "deletion curve area, probability (lower is better)",
    "insertion": "insertion curve area, probability (higher is better)",
    "seconds": "seconds per explanation, wall clock (lower is better)",
}


class EvaluationTable:
    """The result of `evaluate`: one row per method, one column per score.

    Attributes:
        columns: list of str, the column names in order.
        rows: dict method name -> dict column -> float.
        notes: list of str, how the numbers were obtained.
    """

    def __init__(self, columns, rows, notes=()):
        self.columns = list(columns)
        self.rows = dict(rows)
        self.notes = list(notes)

    def to_markdown(self, digits=2):
        """The table in Markdown, with notes and a legend below it."""
        header = ["method", *self.columns]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * len(self.columns)) + "|",
        ]
        for name, row in self.rows.items():
            cells = [name] + [
                _format(row.get(column), column, digits) for column in self.columns
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += [f"- {note}" for note in self.notes]
        used = {
            key
            for key in LEGEND
            if any(column.startswith(key) for column in self.columns)
        }
        lines += [f"- `{key}`: {LEGEND[key]}" for key in LEGEND if key in used]
        return "\n".join(lines) + "\n"

    def to_csv(self):
        """The table as CSV text, full precision."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["method", *self.columns])
        for name, row in self.rows.items():
            writer.writerow([name] + [row.get(column, "") for column in self.columns])
        return buffer.getvalue()

    def save(self, directory, stem="evaluation"):
        """Writes `<stem>.md` and `<stem>.csv` into `directory`; returns their paths."""
        os.makedirs(directory, exist_ok=True)
        paths = []
        for extension, text in (("md", self.to_markdown()), ("csv", self.to_csv())):
            path = os.path.join(directory, f"{stem}.{extension}")
            with open(path, "w") as file:
                file.write(text)
            paths.append(path)
        return paths

    def __repr__(self):
        return self.to_markdown()


def load_data(data, masks=None, boxes=None):
    """Reads images (and ground truth) from arrays, dicts, tuples or a dataset.

    Args:
        data: an array of images `(N, H, W, 3)`; a dict with `"images"` and
            optional `"masks"` or `"boxes"`; a tuple `(images,)`,
            `(images, labels)` or `(images, labels, masks)` (labels are
            ignored: the explained class is the classifier's prediction); or
            an iterable of batches in one of these forms, such as a
            `tf.data.Dataset` (read whole into memory).
        masks: optional array `(N, H, W)`, overrides what `data` holds.
        boxes: optional boxes, overrides what `data` holds.

    Returns:
        A dict with `"images"` and, when known, `"masks"` or `"boxes"`.
    """
    if hasattr(data, "as_numpy_iterator"):
        data = data.as_numpy_iterator()
    if isinstance(data, (np.ndarray, dict, tuple)) or hasattr(data, "__array__"):
        parts = _parts(data)
    else:
        batches = [_parts(batch) for batch in data]
        if not batches:
            raise ValueError("`data` is empty. Received: an iterable with no batches")
        parts = {}
        for key in batches[0]:
            values = [batch[key] for batch in batches]
            parts[key] = (
                sum((list(v) for v in values), [])
                if key == "boxes"
                else np.concatenate(values, axis=0)
            )
    if masks is not None:
        parts["masks"] = np.asarray(masks)
        parts.pop("boxes", None)
    if boxes is not None:
        parts["boxes"] = boxes
        parts.pop("masks", None)
    parts["images"] = check_images(parts["images"], name="data images")
    return parts


def evaluate(
    explainers,
    classifier,
    data,
    masks=None,
    boxes=None,
    box_format="xyxy",
    fractions=FRACTIONS,
    percentages=PERCENTAGES,
    imputation="linear",
    noise=0.01,
    curves=False,
    batch_size=32,
    output_dir=None,
    verbose=1,
    seed=0,
):
    """Scores several explainers of one classifier on the same images.

    Every explainer explains the classifier's own prediction on each image,
    `batch_size` images per call. The first call (set-up, compilation) is
    not timed; the seconds per explanation are the median over the other
    calls of `batch_size` images.

    Args:
        explainers: dict name -> object with `explain(images, classes=None)`
            returning `(N, H, W)` maps (a `PTAME`, a baseline from
            `keras_ptame.baselines`, ...). The row order follows it.
        classifier: a `Backbone` or a Keras model on raw pixels returning
            logits.
        data: images and optional ground truth; see `load_data`.
        masks: optional array `(N, H, W)` of object masks.
        boxes: optional object boxes (see `keras_ptame.metrics.boxes_to_masks`).
        box_format: str. Format of `boxes`. Defaults to `"xyxy"`.
        fractions: shares of pixels kept for AD/IC. Defaults to
            `(1.0, 0.5, 0.15)`.
        percentages: percentages removed for ROAD. Defaults to
            `(10, 30, 50, 70)`.
        imputation: str. ROAD's fill: `"linear"` (noisy linear imputation) or
            `"telea"` (OpenCV). Defaults to `"linear"`.
        noise: float. Noise of the linear imputation. Defaults to `0.01`.
        curves: bool. Whether to add deletion and insertion areas. Defaults
            to `False`.
        batch_size: int. Images per classifier call. Defaults to `32`.
        output_dir: optional folder; `evaluation.md` and `evaluation.csv` are
            written there. Defaults to `None`.
        verbose: int. 1 shows a progress bar, 0 nothing. Defaults to `1`.
        seed: int. Seed of the ROAD noise. Defaults to `0`.

    Returns:
        An `EvaluationTable`.

    Examples:
    ```python
    import keras, numpy as np
    from keras_ptame.baselines import CentreMaps, RandomMaps
    from keras_ptame.evaluation import evaluate

    classifier = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    images = np.random.randint(0, 256, (8, 16, 16, 3)).astype("uint8")
    masks = np.zeros((8, 16, 16), bool); masks[:, 4:12, 4:12] = True
    table = evaluate(
        {"random": RandomMaps(), "centre": CentreMaps()},
        classifier, images, masks=masks, verbose=0,
    )
    print(table.to_markdown())
    ```
    """
    import keras

    if not isinstance(explainers, dict) or not explainers:
        raise ValueError(
            "`explainers` must be a non-empty dict name -> explainer. "
            f"Received: explainers={explainers!r}"
        )
    for name, explainer in explainers.items():
        if not callable(getattr(explainer, "explain", None)):
            raise ValueError(
                f"Every explainer must have an `explain(images, classes)` method. "
                f"Received: {name}={explainer!r}"
            )
    if imputation not in IMPUTATIONS:
        raise ValueError(
            f"`imputation` must be one of {IMPUTATIONS}. Received: imputation={imputation!r}"
        )
    batch_size = check_batch_size(batch_size)
    parts = load_data(data, masks, boxes)
    images = parts["images"]
    truth = None
    if "masks" in parts or "boxes" in parts:
        truth = ground_truth_masks(
            images.shape[:3], parts.get("masks"), parts.get("boxes"), box_format
        )
    backbone = as_backbone(classifier)
    probs = probabilities(backbone, images, batch_size)
    classes = check_classes(probs.argmax(axis=-1), len(images), probs.shape[-1])

    stages = ["explain", "AD/IC", "ROAD MoRF", "ROAD LeRF"]
    stages += ["curves"] * bool(curves) + ["localisation"] * (truth is not None)
    progress = keras.utils.Progbar(
        len(explainers) * len(stages), verbose=verbose, unit_name="step"
    )
    rows = {}
    for name, explainer in explainers.items():
        row = {}
        maps, row["seconds"] = _timed_explain(explainer, images, classes, batch_size)
        progress.add(1)
        row.update(
            confidence_metrics(backbone, images, maps, classes, fractions, batch_size)
        )
        progress.add(1)
        for order, tag in (("morf", "MoRF"), ("lerf", "LeRF")):
            result = road(
                backbone,
                images,
                maps,
                classes,
                order=order,
                percentages=percentages,
                imputation=imputation,
                noise=noise,
                batch_size=batch_size,
                seed=seed,
            )
            for percentage, accuracy in result["accuracy"].items():
                row[f"{tag}{percentage:g}"] = 100.0 * accuracy
            row[tag] = 100.0 * result["summary"]
            progress.add(1)
        if curves:
            result = deletion_insertion(
                backbone, images, maps, classes, batch_size=batch_size
            )
            row["deletion"] = float(result["deletion_auc"].mean())
            row["insertion"] = float(result["insertion_auc"].mean())
            progress.add(1)
        if truth is not None:
            row["pointing_game"] = 100.0 * float(pointing_game(maps, truth).mean())
            row["mass_inside"] = 100.0 * float(
                mass_inside(np.maximum(maps, 0), truth).mean()
            )
            progress.add(1)
        rows[name] = row

    columns = []
    for fraction in fractions:
        columns += [f"AD{100 * fraction:g}", f"IC{100 * fraction:g}"]
    for tag in ("MoRF", "LeRF"):
        columns += [f"{tag}{p:g}" for p in percentages] + [tag]
    columns += ["deletion", "insertion"] * bool(curves)
    columns += ["pointing_game", "mass_inside"] * (truth is not None)
    columns.append("seconds")
    fill = {
        "linear": f"noisy linear imputation (noise {noise})",
        "telea": "OpenCV Telea inpainting",
    }[imputation]
    notes = [
        f"{len(images)} images of {images.shape[1]}x{images.shape[2]}, "
        f"Keras backend `{keras.config.backend()}`; every method explains the "
        "classifier's prediction.",
        f"`seconds`: median over calls of {batch_size} images, the first call "
        "(set-up, compilation) not timed.",
        f"ROAD fills removed pixels by {fill}; the summary (`MoRF`, `LeRF`) is the "
        "trapezoid area over removed shares [0, .1, .3, .5, .7, 1] with accuracy "
        "1 at 0 and 0 at 1.",
    ]
    table = EvaluationTable(columns, rows, notes)
    if output_dir is not None:
        table.save(output_dir)
    return table


def _timed_explain(explainer, images, classes, batch_size):
    """Maps for all images, and seconds per image.

    The first batch sets up and compiles, so it is not timed (a single batch
    is explained a second time, timed). The seconds are the median over the
    timed batches of full size: a smaller last batch may retrace for its new
    shape, which a long run would not pay per image.
    """
    maps, timings = [], []
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        clock = time.perf_counter()
        maps.append(
            np.asarray(explainer.explain(images[start:stop], classes[start:stop]))
        )
        timings.append((stop - start, (time.perf_counter() - clock) / (stop - start)))
    timed = timings[1:]
    if not timed:
        clock = time.perf_counter()
        explainer.explain(images, classes)
        timed = [(len(images), (time.perf_counter() - clock) / len(images))]
    full = [seconds for size, seconds in timed if size == batch_size] or [
        seconds for _, seconds in timed
    ]
    return check_maps(np.concatenate(maps, axis=0), images), float(np.median(full))


def _parts(item):
    """Splits one batch (array, dict or tuple) into images and ground truth."""
    if isinstance(item, dict):
        images = item.get("images", item.get("image"))
        if images is None:
            raise ValueError(
                "A dict of data must have an 'images' key. "
                f"Received: keys {sorted(item)}"
            )
        parts = {"images": np.asarray(images)}
        for key in ("masks", "boxes"):
            if item.get(key) is not None:
                parts[key] = item[key] if key == "boxes" else np.asarray(item[key])
        return parts
    if isinstance(item, (tuple, list)):
        if not 1 <= len(item) <= 3:
            raise ValueError(
                "Tuples of data must be (images,), (images, labels) or "
                f"(images, labels, masks). Received: a tuple of {len(item)} items"
            )
        parts = {"images": np.asarray(item[0])}
        if len(item) == 3:
            parts["masks"] = np.asarray(item[2])
        return parts
    return {"images": np.asarray(item)}


def _format(value, column, digits):
    if value is None:
        return ""
    if column == "seconds":
        # Explainers differ by orders of magnitude: keep significant digits.
        return f"{value:.2g}"
    if column in ("deletion", "insertion"):
        return f"{value:.3f}"
    return f"{value:.{digits}f}"


# === Command line ===


def make_explainer(spec, classifier, batch_size=32, seed=0):
    """Builds one explainer from a command-line spec.

    Specs: `NAME=PATH.keras` (a saved explainer such as P-TAME, named NAME),
    `rise` or `rise:MASKS`, `gradcam:LAYER`, `gradient`, `random`, `centre`.

    Returns:
        A tuple `(name, explainer)`.
    """
    from keras_ptame import baselines

    if "=" in spec:
        import keras

        name, path = spec.split("=", 1)
        return name, keras.saving.load_model(path)
    kind, _, argument = spec.partition(":")
    if kind == "rise":
        masks = int(argument) if argument else 4000
        return "RISE", baselines.RISE(classifier, num_masks=masks, seed=seed)
    if kind == "gradcam":
        if not argument:
            raise ValueError("`gradcam` needs a layer name: gradcam:LAYER")
        return "Grad-CAM", baselines.GradCAM(
            classifier, argument, batch_size=batch_size
        )
    if kind == "gradient":
        return "gradient", baselines.GradientSaliency(classifier, batch_size=batch_size)
    if kind == "random":
        return "random", baselines.RandomMaps(seed=seed)
    if kind in ("centre", "center"):
        return "centre", baselines.CentreMaps()
    raise ValueError(
        "Unknown method. Received: "
        f"{spec!r}; use NAME=PATH.keras, rise[:MASKS], gradcam:LAYER, gradient, "
        "random or centre"
    )


def main(argv=None):
    """Command-line entry point; returns the exit code (0 on success).

    Args:
        argv: list of str, the arguments (without the program name).
            Defaults to `None` (`sys.argv[1:]`).
    """
    parser = argparse.ArgumentParser(
        prog="python -m keras_ptame.evaluation",
        description=(
            "Scores explainers of one classifier (AD/IC, ROAD, pointing game, mass "
            "inside, seconds per explanation) and writes one table as Markdown and "
            "CSV. The Keras backend is chosen by KERAS_BACKEND."
        ),
    )
    parser.add_argument(
        "--classifier", required=True, help="saved Keras classifier (.keras)"
    )
    parser.add_argument(
        "--data",
        required=True,
        help=".npz file with 'images' (N, H, W, 3) and optional 'masks' (N, H, W) "
        "or 'boxes' (N, 4)",
    )
    parser.add_argument(
        "--method",
        action="append",
        required=True,
        help="NAME=PATH.keras, rise[:MASKS], gradcam:LAYER, gradient, random or "
        "centre; repeat for each row",
    )
    parser.add_argument("--output", default="evaluation", help="output folder")
    parser.add_argument("--imputation", choices=IMPUTATIONS, default="linear")
    parser.add_argument("--box-format", default="xyxy")
    parser.add_argument(
        "--limit", type=int, default=None, help="use the first N images"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--curves", action="store_true", help="add deletion/insertion")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        import keras

        classifier = keras.saving.load_model(args.classifier)
        with np.load(args.data) as archive:
            data = {key: archive[key] for key in archive.files}
        if args.limit is not None:
            data = {key: value[: args.limit] for key, value in data.items()}
        explainers = dict(
            make_explainer(spec, classifier, args.batch_size, args.seed)
            for spec in args.method
        )
        table = evaluate(
            explainers,
            classifier,
            data,
            box_format=args.box_format,
            imputation=args.imputation,
            curves=args.curves,
            batch_size=args.batch_size,
            output_dir=args.output,
            verbose=0 if args.quiet else 1,
            seed=args.seed,
        )
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(table.to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
