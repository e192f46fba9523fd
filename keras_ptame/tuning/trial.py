"""One trial of `kp.tune`: a short `fit` of a fresh explainer, then its score."""

import dataclasses
import math
import time

import keras
import numpy as np

from keras_ptame.tuning.space import trial_recipe

# What any objective gives at worst: a trial whose training diverged.
WORST = -1.0


def fresh_explainer(template):
    """A new explainer with `template`'s networks and options, a new decoder.

    The classifier and the auxiliary network are shared (they are frozen);
    the decoder is built anew, so no trial starts from another's weights.
    """
    config = template.get_config()
    config.update(backbone=template.backbone, extractor=template.extractor)
    return type(template).from_config(config)


def steps_per_epoch(data, batch_size):
    """Optimiser steps of one epoch of `fit(data, batch_size=batch_size)`."""
    if isinstance(data, np.ndarray):
        return max(1, math.ceil(len(data) / batch_size))
    try:
        steps = len(data)
    except TypeError:
        raise ValueError(
            "Cannot tell how many batches `train_data` holds (the learning-rate "
            "schedule spans the trial): pass an array, or a dataset of known "
            "length (e.g. `dataset.take(n)`)."
        ) from None
    if steps <= 0:
        raise ValueError(f"`train_data` holds no batches. Received: {data!r}")
    return int(steps)


@dataclasses.dataclass(frozen=True, eq=False)
class TrialJob:
    """Everything a trial needs but its settings.

    Attributes:
        template: the `PTAME` whose networks and options every trial uses.
        train_data: what `fit` trains on: an array of images or a dataset.
        objective: the `Objective` scoring the maps of the held-out images.
        base: the `Recipe` the unsearched settings come from.
        epochs: int. Training epochs of a trial.
        batch_size: int. Images per step (for arrays).
        image_size: optional int, the side of the training images.
        callbacks: tuple of Keras callbacks passed to every `fit`.
        seed: int. Seed of each trial's decoder weights and shuffling.
        verbose: int. Keras' verbosity of `fit`.
    """

    template: object
    train_data: object
    objective: object
    base: object
    epochs: int
    batch_size: int
    image_size: object = None
    callbacks: tuple = ()
    seed: int = 0
    verbose: int = 0

    @property
    def steps(self):
        return steps_per_epoch(self.train_data, self.batch_size)

    def recipe(self, values, name=None):
        """The `Recipe` of the settings `values` (dict name -> value)."""
        return trial_recipe(
            values, self.base, self.epochs, self.batch_size, self.image_size, name
        )

    def run(self, values):
        """Trains a fresh explainer with `values` and scores it.

        Returns:
            dict: `"objective"`, the metrics' columns, `"kept"` (the last
            epoch's share of masked images keeping their class) and
            `"seconds"`.
        """
        started = time.perf_counter()
        explainer, history = self.train(self.recipe(values))
        scorer = self.objective.scorer
        maps = explainer.explain(scorer.images, batch_size=scorer.batch_size)
        if np.all(np.isfinite(maps)):
            row = self.objective(maps)
        else:
            row = {"objective": WORST}
        kept = history.history.get("kept")
        if kept and np.isfinite(kept[-1]):
            row["kept"] = float(kept[-1])
        row["seconds"] = time.perf_counter() - started
        return row

    def train(self, recipe):
        """A fresh explainer, compiled with `recipe` and fitted, and its history."""
        # The same decoder weights and batch order for every trial: trials
        # differ by their settings only.
        keras.utils.set_random_seed(self.seed)
        explainer = fresh_explainer(self.template)
        explainer.compile(
            optimizer=recipe.optimizer(steps_per_epoch=self.steps), loss=recipe.loss()
        )
        is_array = isinstance(self.train_data, np.ndarray)
        history = explainer.fit(
            self.train_data,
            epochs=self.epochs,
            batch_size=self.batch_size if is_array else None,
            # Pipelines shuffle themselves; Keras warns if `shuffle` is left on.
            shuffle=is_array,
            callbacks=[keras.callbacks.TerminateOnNaN(), *self.callbacks],
            verbose=self.verbose,
        )
        return explainer, history
