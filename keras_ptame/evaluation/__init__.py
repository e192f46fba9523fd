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

import csv
import dataclasses
import functools
import io
import os
import sys
import time

import keras
import numpy as np

from keras_ptame.files import write_text
from keras_ptame.maps import check_maps
from keras_ptame.metrics.confidence import FRACTIONS, confidence_metrics
from keras_ptame.metrics.deletion import deletion_insertion
from keras_ptame.metrics.imputation import check_imputation
from keras_ptame.metrics.localization import (
    ground_truth_masks,
    mass_inside,
    pointing_game,
)
from keras_ptame.metrics.road import PERCENTAGES, road
from keras_ptame.scoring import as_backbone, check_batch_size, explained_classes
from keras_ptame.validation import check_images

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
        paths = []
        for extension, text in (("md", self.to_markdown()), ("csv", self.to_csv())):
            path = os.path.join(directory, f"{stem}.{extension}")
            write_text(path, text)
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
    _check_explainers(explainers)
    imputation = check_imputation(imputation)
    batch_size = check_batch_size(batch_size)
    images, truth = _images_and_truth(load_data(data, masks, boxes), box_format)
    backbone = as_backbone(classifier)
    scorer = _Scorer(
        backbone=backbone,
        images=images,
        classes=explained_classes(backbone, images, None, batch_size),
        truth=truth,
        fractions=tuple(fractions),
        percentages=tuple(percentages),
        imputation=imputation,
        noise=noise,
        curves=bool(curves),
        batch_size=batch_size,
        seed=seed,
    )
    progress = keras.utils.Progbar(
        len(explainers) * scorer.steps, verbose=verbose, unit_name="step"
    )
    rows = {
        name: scorer.score(explainer, progress)
        for name, explainer in explainers.items()
    }
    # Every row has the same columns, in the order the phases score them.
    columns = list(next(iter(rows.values())))
    table = EvaluationTable(columns, rows, _notes(scorer))
    if output_dir is not None:
        table.save(output_dir)
    return table


def _check_explainers(explainers):
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


def _images_and_truth(parts, box_format):
    """The images and their object masks `(N, H, W)` (`None` if not given)."""
    images = parts["images"]
    if "masks" not in parts and "boxes" not in parts:
        return images, None
    truth = ground_truth_masks(
        images.shape[:3], parts.get("masks"), parts.get("boxes"), box_format
    )
    return images, truth


# === Scoring one explainer ===


@dataclasses.dataclass(frozen=True, eq=False)
class _Scorer:
    """Scores explainers of one classifier on fixed images: one row each.

    Every explainer explains `classes` on `images`; each phase of `score`
    fills the row's columns of one metric, in the table's order, and the
    seconds per explanation come last.
    """

    backbone: object
    images: np.ndarray
    classes: np.ndarray
    truth: object  # bool (N, H, W) object masks, or None
    fractions: tuple
    percentages: tuple
    imputation: str
    noise: float
    curves: bool
    batch_size: int
    seed: int

    @property
    def phases(self):
        """The metrics scored on each explainer's maps, in column order."""
        phases = [
            self.confidence,
            functools.partial(self.road, order="morf"),
            functools.partial(self.road, order="lerf"),
        ]
        if self.curves:
            phases.append(self.deletion_insertion)
        if self.truth is not None:
            phases.append(self.localisation)
        return phases

    @property
    def steps(self):
        """Progress steps per explainer: explaining, then each phase."""
        return 1 + len(self.phases)

    def score(self, explainer, progress):
        """The row of one explainer: dict column -> value."""
        maps, seconds = _timed_explain(
            explainer, self.images, self.classes, self.batch_size
        )
        progress.add(1)
        row = {}
        for phase in self.phases:
            row.update(phase(maps))
            progress.add(1)
        row["seconds"] = seconds
        return row

    def confidence(self, maps):
        return confidence_metrics(
            self.backbone,
            self.images,
            maps,
            self.classes,
            self.fractions,
            self.batch_size,
        )

    def road(self, maps, order):
        result = road(
            self.backbone,
            self.images,
            maps,
            self.classes,
            order=order,
            percentages=self.percentages,
            imputation=self.imputation,
            noise=self.noise,
            batch_size=self.batch_size,
            seed=self.seed,
        )
        tag = _ROAD_TAGS[order]
        row = {
            f"{tag}{percentage:g}": 100.0 * accuracy
            for percentage, accuracy in result["accuracy"].items()
        }
        row[tag] = 100.0 * result["summary"]
        return row

    def deletion_insertion(self, maps):
        result = deletion_insertion(
            self.backbone, self.images, maps, self.classes, batch_size=self.batch_size
        )
        return {
            "deletion": float(result["deletion_auc"].mean()),
            "insertion": float(result["insertion_auc"].mean()),
        }

    def localisation(self, maps):
        return {
            "pointing_game": 100.0 * float(pointing_game(maps, self.truth).mean()),
            "mass_inside": 100.0
            * float(mass_inside(np.maximum(maps, 0), self.truth).mean()),
        }


_ROAD_TAGS = {"morf": "MoRF", "lerf": "LeRF"}


# === Table assembly ===


def _notes(scorer):
    """How the numbers were obtained, for the lines below the table."""
    count, height, width = scorer.images.shape[:3]
    fill = {
        "linear": f"noisy linear imputation (noise {scorer.noise})",
        "telea": "OpenCV Telea inpainting",
    }[scorer.imputation]
    shares = [0, *(p / 100 for p in scorer.percentages), 1]
    shares = ", ".join(_short(share) for share in shares)
    return [
        f"{count} images of {height}x{width}, "
        f"Keras backend `{keras.config.backend()}`; every method explains the "
        "classifier's prediction.",
        f"`seconds`: median over calls of {scorer.batch_size} images, the first "
        "call (set-up, compilation) not timed.",
        f"ROAD fills removed pixels by {fill}; the summary (`MoRF`, `LeRF`) is the "
        f"trapezoid area over removed shares [{shares}] with accuracy 1 at 0 and "
        "0 at 1.",
    ]


def _short(share):
    """`0.1` as `.1`, `0` and `1` as they are."""
    text = f"{share:g}"
    return text[1:] if text.startswith("0.") else text


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


if __name__ == "__main__":
    # `python -m keras_ptame.evaluation ...` is `ptame evaluate ...`.
    from keras_ptame import cli

    sys.exit(cli.main(["evaluate", *sys.argv[1:]]))
