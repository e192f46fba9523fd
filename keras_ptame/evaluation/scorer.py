"""Scoring one explainer's maps with every metric: one row of the table."""

import dataclasses
import functools
import time

import keras
import numpy as np

from keras_ptame.evaluation.per_class import misranked_maps, no_evidence, per_class_rows
from keras_ptame.metrics.confidence import FRACTIONS, confidence_metrics
from keras_ptame.metrics.deletion import deletion_insertion
from keras_ptame.metrics.imputation import check_imputation
from keras_ptame.metrics.localization import mass_inside, pointing_game
from keras_ptame.metrics.road import PERCENTAGES, road_scores
from keras_ptame.models.classifier_scores import class_scores
from keras_ptame.utils.maps import check_maps


@dataclasses.dataclass(frozen=True, eq=False)
class Scorer:
    """Scores explainers of one classifier on fixed images: one row each.

    Every explainer explains `classes` on `images`; each phase of `score`
    fills the row's columns of one metric, in the table's order; the shares
    of flat and misranked maps (the removal check) and the seconds per
    explanation come last. The phases score given maps too: `kp.tune`'s
    objectives weigh them.
    """

    backbone: object
    images: np.ndarray
    classes: np.ndarray
    truth: object = None  # bool (N, H, W) object masks, or None
    fractions: tuple = FRACTIONS
    percentages: tuple = PERCENTAGES
    imputation: str = "linear"
    noise: float = 0.01
    curves: bool = False
    batch_size: int = 32
    seed: int = 0
    flat_maps: str = "minmax"
    selection: str = "threshold"

    def __post_init__(self):
        check_imputation(self.imputation)

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
        """Progress steps per explainer: explaining, each phase, the removal check."""
        return 2 + len(self.phases)

    @functools.cached_property
    def scores(self):
        """The explained classes' probabilities on the whole images `(N,)`."""
        scores, _ = class_scores(
            self.backbone, self.images, self.classes, self.batch_size
        )
        return scores

    def score(self, explainer, progress):
        """The rows of one explainer: dict column -> value, per class, per image.

        The row ends with `flat`, the share of maps flagged flat (an
        explainer with `explain_outputs`, such as `PTAME`) or constant (any
        other), `misranked`, the share of the others that the removal check
        finds misranked (see `misranked_maps`), and `seconds`. Each column
        but `seconds` is the mean of the images' own values, returned too:
        dict column -> array `(N,)`.
        """
        maps, flat, seconds = _timed_explain(
            explainer,
            self.images,
            self.classes,
            self.batch_size,
            zero_flat=self.flat_maps == "zeros",
        )
        progress.add(1)
        per_image = {}
        for phase in self.phases:
            per_image.update(phase(maps, per_image=True))
            progress.add(1)
        misranked = misranked_maps(
            self.backbone,
            self.images,
            maps,
            self.classes,
            flat,
            self.scores,
            self.batch_size,
        )
        progress.add(1)
        per_image["flat"] = 100.0 * flat
        per_image["misranked"] = 100.0 * np.asarray(misranked, bool)
        row = {column: float(np.mean(values)) for column, values in per_image.items()}
        row["seconds"] = seconds
        per_class = per_class_rows(
            self.backbone,
            self.images,
            maps,
            self.classes,
            self.truth,
            self.batch_size,
            flat=flat,
            selection=self.selection,
            misranked=misranked,
        )
        return row, per_class, per_image

    def confidence(self, maps, per_image=False):
        return confidence_metrics(
            self.backbone,
            self.images,
            maps,
            self.classes,
            self.fractions,
            self.batch_size,
            self.selection,
            per_image=per_image,
        )

    def road(self, maps, order, per_image=False):
        # One order per phase, so that progress moves between the two.
        return road_scores(
            self.backbone,
            self.images,
            maps,
            self.classes,
            orders=(order,),
            percentages=self.percentages,
            imputation=self.imputation,
            noise=self.noise,
            batch_size=self.batch_size,
            seed=self.seed,
            selection=self.selection,
            per_image=per_image,
        )

    def deletion_insertion(self, maps, per_image=False):
        result = deletion_insertion(
            self.backbone, self.images, maps, self.classes, batch_size=self.batch_size
        )
        columns = {
            "deletion": result["deletion_auc"],
            "insertion": result["insertion_auc"],
        }
        return _means(columns, per_image)

    def localisation(self, maps, per_image=False):
        columns = {
            "pointing_game": 100.0 * pointing_game(maps, self.truth),
            "mass_inside": 100.0 * mass_inside(np.maximum(maps, 0), self.truth),
        }
        return _means(columns, per_image)


def _means(columns, per_image):
    """The columns' images' values as float64 `(N,)`, or with `per_image`
    false their means."""
    columns = {key: np.asarray(values, np.float64) for key, values in columns.items()}
    if per_image:
        return columns
    return {key: float(np.mean(values)) for key, values in columns.items()}


# === Table assembly ===


def notes(scorer):
    """How the numbers were obtained, for the lines below the table."""
    count, height, width = scorer.images.shape[:3]
    fill = {
        "linear": f"noisy linear imputation (noise {scorer.noise})",
        "telea": "OpenCV Telea inpainting as the P-TAME authors' code does "
        "(radius 3, the whole image truncated to 8 bits)",
        "telea_exact": "OpenCV Telea inpainting, radius 5, kept pixels exact "
        "(keras_ptame's earlier fill, not the authors')",
    }[scorer.imputation]
    selection = {
        "threshold": "as the P-TAME authors' code selects them (strictly "
        "beyond the map's k-th value, k = int(share * pixels); pixels tied "
        "there go together)",
        "rank": "exactly round(share * pixels) per map, ties in raster order "
        "(not the authors' rule)",
    }[scorer.selection]
    flat = {
        "minmax": "`flat`: the share of maps flagged flat (no evidence found) "
        "or constant; flagged maps are scored as their min-max maps, as the "
        "authors score every map, not as the zeros `explain` returns",
        "zeros": "`flat`: the share of maps flagged flat (no evidence found) "
        "or constant; flagged maps are scored as the zeros `explain` returns "
        "(the authors score their min-max maps)",
    }[scorer.flat_maps]
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
        f"Pixels kept (AD/IC) and removed (ROAD) are chosen {selection}.",
        f"{flat}.",
    ]


def _short(share):
    """`0.1` as `.1`, `0` and `1` as they are."""
    text = f"{share:g}"
    return text[1:] if text.startswith("0.") else text


def _timed_explain(explainer, images, classes, batch_size, zero_flat=False):
    """Maps for all images, which of them are flat, and seconds per image.

    An explainer with `explain_outputs` (a `PTAME`) gives its own `flat`
    flags, and its maps with the flagged ones normalised as the others
    (`zero_flat=False`) or all zeros; any other explainer's maps are flat
    where they hold no evidence at all (see `no_evidence`).

    The first batch sets up and compiles, so it is not timed (a single batch
    is explained a second time, timed). The seconds are the median over the
    timed batches of full size: a smaller last batch may retrace for its new
    shape, which a long run would not pay per image.
    """
    explain = _explain_function(explainer, zero_flat)
    maps, flags, timings = [], [], []
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        clock = time.perf_counter()
        found, flat = explain(images[start:stop], classes[start:stop])
        timings.append((stop - start, (time.perf_counter() - clock) / (stop - start)))
        maps.append(found)
        flags.append(flat)
    timed = timings[1:]
    if not timed:
        clock = time.perf_counter()
        explain(images, classes)
        timed = [(len(images), (time.perf_counter() - clock) / len(images))]
    full = [seconds for size, seconds in timed if size == batch_size] or [
        seconds for _, seconds in timed
    ]
    maps = check_maps(np.concatenate(maps, axis=0), images)
    return maps, np.concatenate(flags), float(np.median(full))


def _explain_function(explainer, zero_flat):
    """`(images, classes) -> (maps, flat)` for any explainer."""
    outputs = getattr(explainer, "explain_outputs", None)
    if callable(outputs):

        def explain(images, classes):
            found = outputs(images, classes, zero_flat=zero_flat)
            return np.asarray(found["maps"]), np.asarray(found["flat"], bool)

    else:

        def explain(images, classes):
            found = np.asarray(explainer.explain(images, classes))
            return found, no_evidence(found)

    return explain
