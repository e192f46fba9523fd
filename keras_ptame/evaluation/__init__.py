"""One comparison table of explainers on one classifier.

```
python -m keras_ptame.evaluation --classifier classifier.keras \\
    --data images.npz --method ptame=explainer.keras --method rise \\
    --method gradcam:conv5 --method random --method centre --output results
```

Rows are methods; columns are AD and IC at 100/50/15% kept, ROAD accuracy
most and least relevant first (per percentage, and the trapezoid summary),
the pointing game and the map mass inside the object (when ground truth is
given), the shares of flat and of misranked maps (the removal check, see
`keras_ptame.models.removal_check`) and seconds per explanation. The table
is written as Markdown and CSV. With `intervals=0.95` (`--intervals 0.95`)
each value has its confidence interval beside it and a column's winner is
marked only where the intervals decide it (`keras_ptame.evaluation.intervals`).
"""

import keras

from keras_ptame.evaluation.data import load_data
from keras_ptame.evaluation.intervals import check_level
from keras_ptame.evaluation.per_class import class_rows
from keras_ptame.evaluation.scorer import Scorer, notes
from keras_ptame.evaluation.table import LEGEND, EvaluationTable
from keras_ptame.metrics.confidence import FRACTIONS
from keras_ptame.metrics.imputation import check_imputation
from keras_ptame.metrics.localization import ground_truth_masks
from keras_ptame.metrics.road import PERCENTAGES
from keras_ptame.metrics.selection import check_selection
from keras_ptame.models.classifier_scores import (
    as_backbone,
    check_batch_size,
    explained_classes,
)
from keras_ptame.utils.files import check_outputs
from keras_ptame.utils.validation import check_option

__all__ = [
    "LEGEND",
    "EVALUATION_FILES",
    "EvaluationTable",
    "class_rows",
    "evaluate",
    "load_data",
]

# How `evaluate` scores the maps a `PTAME` flags flat: as their min-max maps
# (the authors'), or as the zeros `explain` returns.
FLAT_MAPS = ("minmax", "zeros")
# The files `evaluate` writes into `output_dir`.
EVALUATION_FILES = (
    "evaluation.md",
    "evaluation.csv",
    "evaluation_per_class.md",
    "evaluation_per_class.csv",
)


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
    overwrite=False,
    verbose=1,
    seed=0,
    flat_maps="minmax",
    selection="threshold",
    intervals=None,
):
    """Scores several explainers of one classifier on the same images.

    Every explainer explains the classifier's own prediction on each image,
    `batch_size` images per call. The first call (set-up, compilation) is
    not timed; the seconds per explanation are the median over the other
    calls of `batch_size` images.

    By default the maps are scored as the P-TAME authors' evaluation code
    scores them: a `PTAME`'s maps as its `explain` computes them (the
    authors' inference), flat ones included as their min-max maps
    (`flat_maps`), and the pixels AD/IC keep and ROAD removes chosen by their
    rule (`selection`). The column `flat` gives each method's share of maps
    flagged flat (a `PTAME`'s `flat` output) or constant (any other method);
    `misranked` its share of the other maps that the removal check finds
    misranked, for any method (the map does not carry its class: removing its
    top half cost the class no more than removing its bottom half; see
    `keras_ptame.models.removal_check`).

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
        imputation: str. ROAD's fill: `"linear"` (noisy linear imputation,
            ROAD's own), `"telea"` (OpenCV inpainting as the P-TAME authors'
            code does, their default) or `"telea_exact"` (keras_ptame's
            earlier Telea, kept pixels exact); see
            `keras_ptame.metrics.telea_imputation`. Defaults to `"linear"`.
        noise: float. Noise of the linear imputation. Defaults to `0.01`.
        curves: bool. Whether to add deletion and insertion areas. Defaults
            to `False`.
        batch_size: int. Images per classifier call. Defaults to `32`.
        output_dir: optional folder; `evaluation.md` and `evaluation.csv`
            (and `evaluation_per_class.md` and `.csv`) are written there.
            Defaults to `None`.
        overwrite: bool. Whether to replace those files if they exist; if
            not, an existing one is refused before any scoring
            (`FileExistsError`). Either way, nothing is written through a
            symbolic link inside `output_dir` (`ValueError`). Defaults to
            `False`.
        verbose: int. 1 shows a progress bar, 0 nothing. Defaults to `1`.
        seed: int. Seed of the ROAD noise. Defaults to `0`.
        flat_maps: str. How the maps a `PTAME` flags flat are scored:
            `"minmax"` as their min-max maps, as the authors score every map
            (`explain_outputs(..., zero_flat=False)`); `"zeros"` as the all-zero
            maps `explain` returns (AD then scores a black image, and ROAD
            removes pixels by ties). Other explainers' maps are scored as
            `explain` returns them either way. Defaults to `"minmax"`.
        selection: str. Which pixels AD/IC keep and ROAD removes:
            `"threshold"` (the authors' rule: strictly beyond a k-th value,
            ties together) or `"rank"` (exactly the share named, ties in
            raster order); see `keras_ptame.metrics.selection`. Defaults to
            `"threshold"`.
        intervals: optional float in (0, 1), e.g. `0.95`: the level of a
            confidence interval beside every column but `seconds` (exact
            binomial for shares of images, the bootstrap over images
            otherwise, drawn from `seed`), and each column's winner decided
            by them: see `keras_ptame.evaluation.intervals`. Defaults to
            `None` (no intervals; `table.per_image` holds the images' values
            either way).

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
    selection = check_selection(selection)
    check_option("flat_maps", flat_maps, FLAT_MAPS)
    check_level(intervals)
    batch_size = check_batch_size(batch_size)
    if output_dir is not None:
        check_outputs(output_dir, EVALUATION_FILES, overwrite, option="output_dir")
    images, truth = _images_and_truth(load_data(data, masks, boxes), box_format)
    backbone = as_backbone(classifier)
    scorer = Scorer(
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
        flat_maps=flat_maps,
        selection=selection,
    )
    progress = keras.utils.Progbar(
        len(explainers) * scorer.steps, verbose=verbose, unit_name="step"
    )
    scored = {
        name: scorer.score(explainer, progress)
        for name, explainer in explainers.items()
    }
    table = _tables(scored, notes(scorer))
    if intervals is not None:
        table.set_intervals(intervals, seed=seed)
    if output_dir is not None:
        table.save(output_dir, overwrite=overwrite)
    return table


def _tables(scored, notes):
    """The table of methods, with the table of methods per class attached."""
    rows = {name: row for name, (row, _, _) in scored.items()}
    per_class = {
        f"{name} / class {label}": class_row
        for name, (_, by_class, _) in scored.items()
        for label, class_row in by_class.items()
    }
    # Every row has the same columns, in the order the phases score them.
    table = EvaluationTable(list(next(iter(rows.values()))), rows, notes)
    table.per_image = {name: per_image for name, (_, _, per_image) in scored.items()}
    columns = list(dict.fromkeys(c for row in per_class.values() for c in row))
    table.per_class = EvaluationTable(
        columns,
        per_class,
        ["One row per method and explained class (the classifier's prediction)."],
    )
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
