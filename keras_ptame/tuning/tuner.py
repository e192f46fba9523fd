"""KerasTuner's Bayesian optimisation over P-TAME trials.

A `keras_tuner.Tuner` whose `run_trial` trains and scores one explainer
(`TrialJob.run`) and returns the scores, the objective among them; the
oracle is KerasTuner's `BayesianOptimizationOracle` (a Gaussian process, upper
confidence bound), which starts from the base recipe and stops drawing new
trials at the time budget. KerasTuner saves the oracle and every trial in the
tuning directory as it goes; built again on that directory it reloads them,
reruns the trial that was interrupted and goes on as an uninterrupted search
would (`_Oracle`). `overwrite` removes a former search's files, and refuses a
directory that holds anything else.
"""

import copy
import dataclasses
import fnmatch
import json
import os
import shutil
import time

import keras
import keras_tuner
import numpy as np
from keras_tuner.engine.trial import TrialStatus

from keras_ptame.tuning import table
from keras_ptame.tuning.objectives import describe
from keras_ptame.utils.files import read_json_object, write_text

SETTINGS_FILE = "settings.json"
# What a search writes in its directory: the package's settings, table and
# recipe, and KerasTuner's oracle, tuner state and trial folders.
OWN_FILES = (SETTINGS_FILE, *table.TABLE_FILES, table.RECIPE_FILE, "oracle.json")
TUNER_FILES = "tuner*.json"
TRIAL_FOLDERS = "trial_*"
TRIAL_FILES = ("trial.json",)


class _Oracle(keras_tuner.oracles.BayesianOptimizationOracle):
    """Trial 0 scores the base recipe; no trial starts after `deadline`.

    A search depends on its seed alone, and a resumed one draws what an
    uninterrupted one would, where KerasTuner's own oracle does not:
    - it takes seed 0 for no seed, drawing one from Python's global `random`
      (so the random trials changed from process to process): 0 is kept;
    - on reload it restarts the random state that draws the Gaussian
      process' starting points (`_random_state`) from the seed: the state is
      saved with the oracle and restored;
    - it reloads the trials in the order the file system lists their
      folders, the order the Gaussian process is then fitted in (which
      changes its fit in the last bits): they are put back in the order
      they started.
    """

    deadline = None

    def __init__(self, seed, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.seed = self._seed_state = seed
        self._random_state = np.random.RandomState(seed)
        self.gpr = self._make_gpr()

    def get_state(self):
        state = super().get_state()
        random_state = self._random_state.get_state(legacy=False)
        random_state["state"]["key"] = random_state["state"]["key"].tolist()
        return {**state, "random_state": random_state}

    def set_state(self, state):
        super().set_state(state)
        self._random_state = np.random.RandomState(self.seed)
        # A search saved before the state was: its points restart from the seed.
        if "random_state" in state:
            random_state = copy.deepcopy(state["random_state"])
            key = np.asarray(random_state["state"]["key"], dtype="uint32")
            random_state["state"]["key"] = key
            self._random_state.set_state(random_state)

    def reload(self):
        super().reload()
        # KerasTuner's own record of the order the trials started in.
        started = {trial_id: index for index, trial_id in enumerate(self.start_order)}
        self.trials = dict(
            sorted(
                self.trials.items(),
                key=lambda item: (started.get(item[0], len(started)), item[0]),
            )
        )

    def populate_space(self, trial_id):
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return {"status": TrialStatus.STOPPED, "values": None}
        if not self.trials:
            defaults = {hp.name: hp.default for hp in self.hyperparameters.space}
            return {"status": TrialStatus.RUNNING, "values": defaults}
        return super().populate_space(trial_id)


class _Tuner(keras_tuner.Tuner):
    """Runs `job` on each trial's settings; rewrites the table after each."""

    def __init__(self, job, notes, max_seconds=None, **kwargs):
        self.job = job
        self.notes = notes
        self.max_seconds = max_seconds
        super().__init__(**kwargs)

    def on_search_begin(self):
        super().on_search_begin()
        if self.max_seconds is not None:
            self.oracle.deadline = time.monotonic() + self.max_seconds

    def run_trial(self, trial, *args, **kwargs):
        try:
            return self.job.run(trial.hyperparameters.values)
        except Exception as error:
            # KerasTuner records a trial that raised an error as FAILED and
            # never runs it again; an interrupt leaves it to the next run.
            # An error raised on the way out of an interrupt is the interrupt.
            if _caused_by_interrupt(error):
                raise KeyboardInterrupt from error
            raise

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self.write_table()

    def write_table(self):
        names = [hp.name for hp in self.oracle.hyperparameters.space]
        rows = table.trial_rows(self.oracle.trials.values(), names)
        columns = table.columns_of(rows, names)
        return table.write(self.project_dir, rows, columns, self.notes)


def search(job, ranges, settings, directory, overwrite, budget, verbose):
    """Runs (or resumes) the search in `directory`; returns the best trial.

    Args:
        job: the `TrialJob`.
        ranges: dict name -> `Range`, the searched settings.
        settings: dict, what the search depends on (objective, space, data);
            a search resumes only with the same.
        directory: str, the tuning directory.
        overwrite: bool. Whether to start afresh.
        budget: dict with `max_trials`, `max_seconds`, `initial_trials`.
        verbose: int. KerasTuner's progress output.

    Returns:
        The best completed KerasTuner `Trial`.
    """
    directory = os.path.abspath(os.fspath(directory))
    if overwrite:
        _remove_search(directory)
    else:
        _check_resumable(directory, settings)
    tuner = _Tuner(
        job=job,
        notes=_notes(job, settings),
        max_seconds=budget["max_seconds"],
        oracle=_make_oracle(ranges, job.base, budget, job.seed),
        directory=os.path.dirname(directory),
        project_name=os.path.basename(directory),
        # KerasTuner's own `overwrite` deletes the whole folder, whatever it
        # holds: the former search is gone already (`_remove_search`).
        overwrite=False,
    )
    write_text(os.path.join(directory, SETTINGS_FILE), json.dumps(settings, indent=2))
    tuner.search(verbose=verbose)
    tuner.write_table()
    # The table's order, not the oracle's: on a tie the two could differ.
    completed = [
        trial
        for trial in tuner.oracle.trials.values()
        if trial.status == TrialStatus.COMPLETED
    ]
    best = sorted(completed, key=lambda trial: table.rank(trial.score, trial.trial_id))
    if not best:
        messages = [t.message for t in tuner.oracle.trials.values() if t.message]
        if not messages and budget["max_seconds"] is not None:
            # A user's choice, not a failure: no trial had time to start.
            raise ValueError(
                f"No trial finished in {directory!r} within the time budget of "
                f"{budget['max_seconds']} s (`max_seconds`, --max-seconds): "
                "give the search more time."
            )
        raise RuntimeError(
            f"No trial completed in {directory!r} (time budget "
            f"{budget['max_seconds']} s).{' Last error: ' if messages else ''}"
            f"{messages[-1] if messages else ''}"
        )
    return best[0]


def _make_oracle(ranges, base, budget, seed):
    space = keras_tuner.HyperParameters()
    for name, value in ranges.items():
        space.Float(
            name,
            value.low,
            value.high,
            sampling="log" if value.log else "linear",
            default=value.clip(getattr(base, name)),
        )
    initial = budget["initial_trials"] or min(
        3 * len(ranges), max(2, budget["max_trials"] // 2)
    )
    return _Oracle(
        objective=keras_tuner.Objective("objective", direction="max"),
        max_trials=budget["max_trials"],
        num_initial_points=initial,
        seed=seed,
        hyperparameters=space,
        tune_new_entries=False,
        allow_new_entries=False,
    )


def _remove_search(directory):
    """Removes a former search's files from `directory`, and nothing else.

    Raises a `FileExistsError` naming a file or folder the search did not
    write, before anything is removed.
    """
    if not os.path.isdir(directory):
        return
    entries = [os.path.join(directory, name) for name in sorted(os.listdir(directory))]
    for path in entries:
        foreign = _foreign_part(path)
        if foreign is not None:
            raise FileExistsError(
                f"{foreign!r} is not a search's: overwriting a tuning directory "
                "removes only a search's own files (trials, oracle, settings, "
                "results, recipe). Move it out, or choose another directory."
            )
    for path in entries:
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def _foreign_part(path):
    """`path`, or a file inside it, if the search did not write it; else `None`."""
    name = os.path.basename(path)
    if os.path.islink(path):
        return path
    if name in OWN_FILES or fnmatch.fnmatch(name, TUNER_FILES):
        return None if os.path.isfile(path) else path
    # A write of the package's own files cut short (`atomic_path`).
    if any(name.startswith(f".{own}.tmp-") for own in OWN_FILES):
        return None if os.path.isdir(path) else path
    if not (fnmatch.fnmatch(name, TRIAL_FOLDERS) and os.path.isdir(path)):
        return path
    others = sorted(set(os.listdir(path)) - set(TRIAL_FILES))
    return os.path.join(path, others[0]) if others else None


def _check_resumable(directory, settings):
    """Raises unless `directory` is empty of a search's files or holds one
    search, with `settings`, whose files are all a search's."""
    if not os.path.isdir(directory):
        return
    names = sorted(name for name in os.listdir(directory) if _search_name(name))
    path = os.path.join(directory, SETTINGS_FILE)
    if names and SETTINGS_FILE not in names:
        raise FileExistsError(
            f"{os.path.join(directory, names[0])!r} exists, but no search was "
            f"started in {directory!r} (it has no {SETTINGS_FILE}): a new search "
            "would replace it. Move it out or choose another directory "
            "(`overwrite=True` deletes a search's files, that one included)."
        )
    for name in names:
        kind = os.path.isdir if fnmatch.fnmatch(name, TRIAL_FOLDERS) else os.path.isfile
        entry = os.path.join(directory, name)
        if os.path.islink(entry) or not kind(entry):
            raise FileExistsError(
                f"{entry!r} is not a search's: a search writes no "
                f"{'link' if os.path.islink(entry) else 'such entry'} there. "
                "Move it out, or choose another directory."
            )
    if names:
        _check_settings(path, settings)


def _search_name(name):
    """Whether a search writes an entry `name` in its directory."""
    return name in OWN_FILES or any(
        fnmatch.fnmatch(name, pattern) for pattern in (TUNER_FILES, TRIAL_FOLDERS)
    )


def _check_settings(path, settings):
    directory = os.path.dirname(path)
    try:
        saved = read_json_object(path)
    except ValueError:
        saved = {}
    if "objective" not in saved:
        raise FileExistsError(
            f"{path!r} is not a search's settings (not the JSON a search "
            "writes). Move it out, or choose another directory."
        )
    changed = sorted(
        key for key in {**saved, **settings} if saved.get(key) != settings.get(key)
    )
    if changed:
        raise ValueError(
            f"The tuning directory {directory!r} holds a search with other "
            f"settings ({', '.join(changed)} differ), whose scores this one "
            "cannot be compared with. Pass `overwrite=True` to start afresh, or "
            "choose another directory."
        )


def _notes(job, settings):
    images = job.objective.scorer.images
    return [
        f"Objective: {describe(job.objective.weights)}, on {len(images)} held-out "
        f"images of {images.shape[1]}x{images.shape[2]}; Keras backend "
        f"`{keras.config.backend()}`.",
        f"Each trial trains a fresh decoder for {job.epochs} epoch(s) of "
        f"{job.steps} step(s) (batch size {job.batch_size}, seed {job.seed}); "
        f"trial 0 is the starting recipe `{job.base.name}`.",
        "Search: KerasTuner BayesianOptimization over "
        + ", ".join(f"`{name}`" for name in settings["space"])
        + ".",
    ]


def settings_of(job, ranges, digest):
    """What a search depends on, as JSON-ready values (see `search`)."""
    return {
        "objective": job.objective.weights,
        "imputation": job.objective.scorer.imputation,
        "space": {name: dataclasses.asdict(value) for name, value in ranges.items()},
        "base": dataclasses.asdict(job.base),
        "epochs": job.epochs,
        "batch_size": job.batch_size,
        "seed": job.seed,
        "validation_images": digest,
    }


def _caused_by_interrupt(error):
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__context__
    return False
