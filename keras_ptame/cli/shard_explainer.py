"""Explaining one shard of a collection: the work an engine's worker runs.

`ShardExplainer` loads the explainer once per worker and explains whole
shards: it reads the shard's image files as `ptame explain` does, runs
`explain_outputs` with `dtype="uint8"`, writes each map as a grayscale PNG
(`round(255 x map)`, the values of `ptame explain --dtype uint8`'s `.npy`),
then commits the shard's table (`keras_ptame.utils.shards`). It knows no
engine: Ray Data calls it through `map_batches` (`ray_pipeline`), a test or a
debugger calls `explain_shard` directly.
"""

import dataclasses
import os

import numpy as np

from keras_ptame.cli.explain import (
    COLUMNS,
    TOP_K_COLUMNS,
    explained_image_size,
    summary_rows,
)
from keras_ptame.cli.loading import open_explainer
from keras_ptame.utils.files import deferred_interrupts, staging_folder
from keras_ptame.utils.images import read_image
from keras_ptame.utils.shards import commit_shard, map_path, write_map_png

# The hidden folder a shard's maps are written into before they move to
# `maps/`; one left by a killed worker is removed by the next shard's.
SHARD_STAGING_PREFIX = ".ptame-shard-"


@dataclasses.dataclass(frozen=True)
class CollectionSettings:
    """What every worker needs to explain shards of one collection.

    Args:
        model: str. The explainer, as `ptame explain --model` takes it.
        output: str. The output folder (shared by all workers).
        files: tuple of str, the image files, in order.
        names: tuple of str, their output names without suffix (unique).
        safe_mode: bool. Keras' `safe_mode` when loading. Defaults to `True`.
        classifier_weights: optional str, for an authors' checkpoint.
        auxiliary_weights: optional str, for an authors' checkpoint.
        image_size: optional int, see `ptame explain --image-size`.
        batch_size: int. Images per forward pass. Defaults to `32`.
        top_k: optional int: explain each image's K highest classes.
    """

    model: str
    output: str
    files: tuple
    names: tuple
    safe_mode: bool = True
    classifier_weights: str = None
    auxiliary_weights: str = None
    image_size: int = None
    batch_size: int = 32
    top_k: int = None

    @property
    def columns(self):
        """The table's columns: those of `ptame explain`'s `summary.csv`."""
        return COLUMNS if self.top_k is None else TOP_K_COLUMNS


class ShardExplainer:
    """Explains whole shards with one explainer loaded once.

    A callable class, as Ray Data's `map_batches` takes one: each worker
    builds it once, then calls it on batches of shards, each a row
    `{"shard": index, "start": first image, "stop": end}`, and gets back
    per shard its images explained and its error (`""`, or why an image
    could not be read: that shard is left unfinished).

    Args:
        settings: a `CollectionSettings`.
    """

    def __init__(self, settings):
        self.settings = settings
        self.explainer = open_explainer(
            settings.model,
            safe_mode=settings.safe_mode,
            classifier_weights=settings.classifier_weights,
            auxiliary_weights=settings.auxiliary_weights,
            image_size=settings.image_size,
        )
        self.size = explained_image_size(self.explainer, settings.image_size)

    def __call__(self, batch):
        done, errors = [], []
        for index, start, stop in zip(batch["shard"], batch["start"], batch["stop"]):
            try:
                done.append(self.explain_shard(int(index), int(start), int(stop)))
                errors.append("")
            except ValueError as error:
                # An unreadable image: this shard stays unfinished, the
                # others go on; the driver reports it (an engine would
                # abort the whole run on an exception).
                done.append(0)
                errors.append(str(error))
        return {
            "shard": np.asarray(batch["shard"], np.int64),
            "images": np.asarray(done, np.int64),
            "error": np.asarray(errors, object),
        }

    def explain_shard(self, index, start, stop):
        """Explains images `start` to `stop` (shard `index`) and commits them.

        Returns:
            int: the number of images explained.
        """
        settings = self.settings
        files = settings.files[start:stop]
        names = settings.names[start:stop]
        channels = self.explainer.input_channels or 3
        images = np.stack(
            [read_image(path, self.size, channels=channels)[1] for path in files]
        )
        outputs = self.explainer.explain_outputs(
            images, batch_size=settings.batch_size, top_k=settings.top_k, dtype="uint8"
        )
        rows = summary_rows(outputs, files, names, settings.top_k)
        with staging_folder(settings.output, SHARD_STAGING_PREFIX) as staging:
            for row, saliency in zip(rows, _maps_in_order(outputs)):
                write_map_png(os.path.join(staging, row["output"] + ".png"), saliency)
            # The maps move into place, then the table marks the shard
            # finished: a kill in between leaves a shard to redo, whose maps
            # the rerun writes again under the same names.
            with deferred_interrupts():
                for row in rows:
                    target = map_path(settings.output, row["output"])
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    os.replace(os.path.join(staging, row["output"] + ".png"), target)
                commit_shard(settings.output, index, settings.columns, rows)
        return len(files)


def _maps_in_order(outputs):
    """The maps `(H, W)` in the order of `summary_rows`' rows."""
    maps = np.asarray(outputs["maps"])
    if maps.ndim == 3:
        return list(maps)
    return [saliency for image in maps for saliency in image]
