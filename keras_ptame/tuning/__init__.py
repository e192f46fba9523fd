"""Tuning an explainer's recipe for a classifier: `kp.tune`.

The authors of P-TAME did not train with the paper's default loss weights:
they searched the loss coefficients and the weight decay per classifier with a
Bayesian sweep scored on faithfulness, which is where `kp.recipes` come from.
`tune` does the same for any classifier: each trial trains a fresh decoder
for a short `fit` on the training data, explains held-out images and scores
the maps (`keras_ptame.tuning.objectives`); the best settings come back as a
`Recipe` for `compile` and `fit`.

```python
import keras_ptame as kp

recipe = kp.tune(
    explainer, train_images, held_out_images, max_trials=20, directory="tuning"
)
explainer.compile(
    optimizer=recipe.optimizer(steps_per_epoch=len(train_images) // 32),
    loss=recipe.loss(),
)
explainer.fit(train_images, epochs=recipe.epochs, batch_size=recipe.batch_size)
```

Why KerasTuner rather than Optuna: it is Keras' own, runs wherever Keras 3
runs (TensorFlow, JAX and PyTorch alike, without importing TensorFlow on the
other two), and its directory is the resume mechanism: every trial and the
oracle's state are saved as they finish, and a tuner built again on the same
directory (`overwrite=False`) reruns the trial that was interrupted and goes
on. Its `BayesianOptimization` oracle (a Gaussian process) is the kind of
search the authors ran. Optuna's samplers are richer (TPE, pruning) and it has
a time budget of its own, but it would add a second framework's storage and
callbacks for what this search needs; the time budget here is a small
override of the oracle.
"""

import glob
import hashlib
import os

import numpy as np

from keras_ptame.evaluation.scorer import Scorer
from keras_ptame.models.classifier_scores import check_batch_size, explained_classes
from keras_ptame.models.ptame import PTAME
from keras_ptame.tuning.objectives import (
    DEFAULT_OBJECTIVE,
    OBJECTIVES,
    Objective,
    parse_objective,
)
from keras_ptame.tuning.space import (
    SEARCH_SPACE,
    Range,
    as_recipe,
    default_recipe,
    resolve_space,
)
from keras_ptame.tuning.table import RECIPE_FILE
from keras_ptame.tuning.trial import TrialJob
from keras_ptame.utils.files import read_json_object, write_text
from keras_ptame.utils.install import install_hint
from keras_ptame.utils.validation import check_images, check_positive_int

__all__ = [
    "DEFAULT_OBJECTIVE",
    "OBJECTIVES",
    "SEARCH_SPACE",
    "Range",
    "default_recipe",
    "tune",
]


def tune(
    explainer,
    train_data,
    validation_images,
    objective=DEFAULT_OBJECTIVE,
    max_trials=20,
    max_seconds=None,
    directory="ptame_tuning",
    overwrite=False,
    recipe=None,
    space=None,
    epochs=1,
    batch_size=32,
    initial_trials=None,
    imputation="linear",
    callbacks=None,
    seed=0,
    verbose=1,
):
    """Searches loss coefficients and optimiser settings for faithful maps.

    Each trial builds a fresh explainer from `explainer`'s classifier,
    auxiliary network and options (`explainer`'s own decoder is left as it
    is), compiles it with the trial's `Recipe`, trains it for `epochs` on
    `train_data`, explains `validation_images` and scores the maps by
    `objective`. KerasTuner's Bayesian optimisation picks the settings; trial
    0 is the starting `recipe`, so the table shows what the search gained.
    The search stops after `max_trials` trials in `directory` or when
    `max_seconds` have passed (the running trial finishes; no new one
    starts). Called again on the same `directory`, it resumes: finished
    trials are kept, an interrupted one is run again, and the search goes
    on drawing what an uninterrupted one would. After every trial
    `results.csv` and `results.md` (one row per trial, best first) are
    written to `directory`, and at the end the best recipe as `recipe.json`
    (`kp.recipes.get("<directory>/recipe.json")` and `ptame train --recipe`
    read it).

    Args:
        explainer: a `PTAME` giving the classifier, the auxiliary network,
            the fill and the decoder's options.
        train_data: the training images: an array `(N, H, W, 3)` of raw
            pixels, or a dataset `fit` takes whose length is known.
        validation_images: array `(M, H, W, 3)` of held-out raw pixels,
            none of them in `train_data`: the maps are scored on these.
        objective: str or dict. `"road"` (ROAD LeRF minus MoRF), `"adic"`
            (IC minus AD), `"deletion"` (insertion minus deletion), or a
            weighted mix such as `{"road": 1, "adic": 0.5}` or
            `"road=1,adic=0.5"`. See `keras_ptame.tuning.objectives` for why
            ROAD is the default. Defaults to `"road"`.
        max_trials: int. Trials in `directory` at most, resumed ones included.
            Defaults to `20`.
        max_seconds: optional float. No trial starts after this many seconds
            of this call. Defaults to `None` (no limit).
        directory: str. The tuning directory. Defaults to `"ptame_tuning"`.
        overwrite: bool. Whether to discard a search in `directory` and start
            afresh: only the search's own files are removed, and a directory
            holding anything else is refused (`FileExistsError`). Defaults to
            `False`: resume the search there (its settings must match), or
            start one in a directory holding no file of a search's names;
            such a file that no search wrote (a user's `results.csv`, a
            link) is refused by name (`FileExistsError`).
        recipe: optional `Recipe` or recipe name: the starting point and the
            settings not searched. Defaults to `None` (`PerturbationLoss()`'s
            coefficients, AdamW at 1e-4: see `default_recipe`).
        space: optional dict overriding `SEARCH_SPACE` name by name: a
            `Range`, `(low, high)` (log scale), `(low, high, "linear")`, or a
            number to fix that setting. Names: the float fields of `Recipe`.
            Defaults to `None` (`SEARCH_SPACE`).
        epochs: int. Training epochs of each trial. Defaults to `1`.
        batch_size: int. Images per training step (for arrays) and per
            classifier call when scoring. Defaults to `32`.
        initial_trials: optional int. Trials drawn at random before the
            Gaussian process steers. Defaults to `None` (three per searched
            setting, at most half of `max_trials`, at least 2).
        imputation: str. ROAD's fill: `"linear"` or `"telea"`. Defaults to
            `"linear"`.
        callbacks: optional list of Keras callbacks for every trial's `fit`.
        seed: int. Seed of the decoder's weights (the same in every trial),
            of the search and of ROAD's noise: the same call with the same
            seed gives the same trials and recipe on a backend's CPU, resumed
            or not. Defaults to `0`.
        verbose: int. 0 silent, 1 KerasTuner's trial summaries, 2 also
            Keras' progress bars. Defaults to `1`.

    Returns:
        The best trial's `Recipe` (named `"tuned (trial N)"`), with
        `epochs` and `batch_size` as the trials trained: train longer with
        `dataclasses.replace(recipe, epochs=...)`.

    Examples:
    ```python
    import keras_ptame as kp

    recipe = kp.tune(
        explainer, train_images, held_out_images,
        objective="road=1,adic=0.5", max_trials=30, max_seconds=3600,
        space={"area_power": 0.3},          # fixed, not searched
        directory="tuning",
    )
    ```
    """
    tuner = _import_tuner()
    budget = _check_budget(max_trials, max_seconds, initial_trials)
    if not overwrite:
        check_search_files(directory)
    job, ranges, digest = _trial_job(
        explainer,
        train_data,
        validation_images,
        objective,
        recipe,
        space,
        dict(
            epochs=epochs,
            batch_size=batch_size,
            imputation=imputation,
            callbacks=callbacks,
            seed=seed,
            verbose=verbose,
        ),
    )
    best = tuner.search(
        job,
        ranges,
        tuner.settings_of(job, ranges, digest),
        directory,
        overwrite,
        budget,
        verbose=int(verbose > 0),
    )
    tuned = job.recipe(best.hyperparameters.values, f"tuned (trial {best.trial_id})")
    write_text(os.path.join(directory, RECIPE_FILE), tuned.to_json())
    return tuned


def _trial_job(
    explainer, train_data, validation_images, objective, recipe, space, options
):
    """Checks the arguments; returns the `TrialJob`, the ranges and a digest."""
    if not isinstance(explainer, PTAME):
        raise ValueError(
            f"`explainer` must be a keras_ptame.PTAME. Received: {explainer!r}"
        )
    weights = parse_objective(objective)
    ranges, base = resolve_space(space, as_recipe(recipe))
    batch_size = check_batch_size(options["batch_size"])
    epochs = check_positive_int("epochs", options["epochs"])
    images = check_images(validation_images, name="validation_images")
    explainer.ensure_built(images.shape)
    if isinstance(train_data, np.ndarray):
        check_images(train_data, name="train_data")
    scorer = Scorer(
        backbone=explainer.backbone,
        images=images.astype("float32"),
        classes=explained_classes(explainer.backbone, images, None, batch_size),
        imputation=options["imputation"],
        batch_size=batch_size,
        seed=int(options["seed"]),
    )
    job = TrialJob(
        template=explainer,
        train_data=train_data,
        objective=Objective(weights, scorer),
        base=base,
        epochs=epochs,
        batch_size=batch_size,
        image_size=images.shape[1] if images.shape[1] == images.shape[2] else None,
        callbacks=tuple(options["callbacks"] or ()),
        seed=int(options["seed"]),
        verbose=int(options["verbose"] > 1),
    )
    job.steps  # noqa: B018 - a dataset of unknown length fails now, not in a trial
    digest = hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest()
    return job, ranges, f"{images.shape}:{digest}"


def _check_budget(max_trials, max_seconds, initial_trials):
    check_positive_int("max_trials", max_trials)
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(
            f"`max_seconds` must be positive or None. Received: {max_seconds!r}"
        )
    if initial_trials is not None:
        check_positive_int("initial_trials", initial_trials)
    return {
        "max_trials": int(max_trials),
        "max_seconds": max_seconds,
        "initial_trials": initial_trials,
    }


def check_search_files(directory):
    """Names a damaged file of the search in `directory` before it resumes.

    Each JSON file a resume reads (KerasTuner's oracle and tuner states,
    every `trial_*/trial.json`) must parse and hold what it
    should; otherwise a `ValueError` names the file, instead of a bare JSON
    or `KeyError` from deep inside KerasTuner.
    """
    # Without the settings no search was started here: the files of its
    # names are someone else's, which the search refuses by name itself.
    # The settings' own check is the search's (`tuner.search`).
    if not os.path.isfile(os.path.join(directory, "settings.json")):
        return
    names = ["oracle.json", "tuner*.json", "trial_*/trial.json"]
    paths = sorted(
        p
        for name in names
        for p in glob.glob(os.path.join(glob.escape(os.fspath(directory)), name))
    )
    if not paths:
        return
    _import_tuner()  # its message if KerasTuner is missing
    import keras_tuner

    oracle_keys = set(keras_tuner.Oracle(max_trials=1).get_state())
    for path in paths:
        try:
            state = read_json_object(path)
            if os.path.basename(path) == "oracle.json" and oracle_keys - set(state):
                raise ValueError(f"no {sorted(oracle_keys - set(state))}")
            if os.path.basename(path) == "trial.json":
                keras_tuner.engine.trial.Trial.from_state(state)
        except OSError:
            raise  # it names the file and says what is wrong
        except Exception as error:  # whatever the reading fails with
            # The way out first: a long detail may be cut on the command line.
            raise ValueError(
                "The search cannot be resumed (restore the file, or start afresh "
                f"with `overwrite=True`, --overwrite): {path!r} is damaged "
                f"({type(error).__name__}: {error})"
            ) from error


def _import_tuner():
    try:
        import sklearn  # noqa: F401 - KerasTuner's Bayesian oracle needs it

        from keras_ptame.tuning import tuner
    except ModuleNotFoundError as error:
        if error.name not in ("keras_tuner", "sklearn", "scipy"):
            raise
        raise ModuleNotFoundError(
            f"`kp.tune` needs KerasTuner with its Bayesian extra ({error}): "
            + install_hint("tune"),
            name=error.name,
        ) from error
    return tuner
