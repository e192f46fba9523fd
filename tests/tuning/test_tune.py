"""`kp.tune` and `ptame tune`: a resumable search that returns a usable recipe."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame import cli
from keras_ptame.evaluation.scorer import Scorer
from keras_ptame.tuning import objectives, space
from tests.helpers import (
    IMAGE_SIZE,
    random_images,
    tiny_classifier,
    tiny_explainer,
    tiny_feature_model,
)
from tests.helpers.files import snapshot

pytest.importorskip("keras_tuner")
pytest.importorskip("sklearn")


class CountFits(keras.callbacks.Callback):
    """Counts `fit` calls; raises KeyboardInterrupt at the `interrupt_at`-th."""

    def __init__(self, interrupt_at=None, sleep=0.0):
        super().__init__()
        self.fits = 0
        self.interrupt_at = interrupt_at
        self.sleep = sleep

    def on_train_begin(self, logs=None):
        self.fits += 1
        if self.fits == self.interrupt_at:
            raise KeyboardInterrupt

    def on_train_end(self, logs=None):
        time.sleep(self.sleep)


def search(directory, explainer=None, **options):
    settings = dict(max_trials=2, batch_size=4, directory=directory, verbose=0)
    return kp.tune(
        explainer if explainer is not None else tiny_explainer(),
        random_images(8, seed=1),
        random_images(4, seed=2),
        **{**settings, **options},
    )


def read_rows(directory):
    with open(directory / "results.csv") as file:
        return list(csv.DictReader(file))


def test_two_trial_search_resumes_after_an_interruption(tmp_path):
    directory = tmp_path / "tuning"
    interrupt = CountFits(interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        search(directory, callbacks=[interrupt])
    # Trial 0 finished and is in the table; trial 1 was cut short.
    rows = read_rows(directory)
    assert [(row["trial"], row["status"]) for row in rows] == [("0", "COMPLETED")]
    interrupted = json.loads((directory / "trial_1" / "trial.json").read_text())
    assert interrupted["status"] == "RUNNING"

    count = CountFits()
    recipe = search(directory, callbacks=[count])
    # Only the interrupted trial ran again, with the settings it had.
    assert count.fits == 1
    finished = json.loads((directory / "trial_1" / "trial.json").read_text())
    assert finished["status"] == "COMPLETED"
    assert (
        finished["hyperparameters"]["values"]
        == (interrupted["hyperparameters"]["values"])
    )
    rows = read_rows(directory)
    assert sorted(row["trial"] for row in rows) == ["0", "1"]
    scores = [float(row["objective"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(-1 <= score <= 1 for score in scores)
    assert {"MoRF", "LeRF", "seconds", "ce_coeff", "weight_decay"} <= set(rows[0])
    assert "| trial | status | objective |" in (directory / "results.md").read_text()

    # The best trial's settings, as a recipe, also written as recipe.json.
    assert isinstance(recipe, kp.recipes.Recipe)
    assert recipe.name == f"tuned (trial {rows[0]['trial']})"
    assert recipe.ce_coeff == pytest.approx(float(rows[0]["ce_coeff"]))
    assert (recipe.epochs, recipe.batch_size, recipe.image_size) == (1, 4, IMAGE_SIZE)
    assert kp.recipes.get(str(directory / "recipe.json")) == recipe

    # The recipe is what compile and fit take.
    explainer = tiny_explainer()
    explainer.compile(optimizer=recipe.optimizer(steps_per_epoch=1), loss=recipe.loss())
    history = explainer.fit(random_images(4, seed=3), batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    maps = explainer.explain(random_images(2, seed=4))
    assert maps.shape == (2, IMAGE_SIZE, IMAGE_SIZE)

    # Another objective cannot resume this search.
    with pytest.raises(ValueError, match="objective"):
        search(directory, objective="adic")


# A two-trial search in its own process: other options of `kp.tune` as JSON
# in the second argument (`"explainer"`: "module:function" building it). With
# a "ready" path, trial 1's (or the fourth argument's trial's) first training
# step waits there (on JAX and TensorFlow, while the step is being compiled:
# where an interrupt left JAX's variables detached) for the SIGINT.
SEARCH_SCRIPT = """
import importlib, json, pathlib, sys, time
import keras_ptame as kp
from tests.helpers import random_images

directory, options, ready = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
module, name = options.pop("explainer", "tests.helpers:tiny_explainer").split(":")
explainer = getattr(importlib.import_module(module), name)()
if ready:
    waiting_trial = int(ready[1])
    compute_loss, trials = kp.PTAME.compute_loss, []

    def wait_in_trial(self, *args, **kwargs):
        if not any(self is trial for trial in trials):
            trials.append(self)
        if len(trials) == waiting_trial + 1:
            pathlib.Path(ready[0]).touch()
            time.sleep(300)
        return compute_loss(self, *args, **kwargs)

    kp.PTAME.compute_loss = wait_in_trial
try:
    kp.tune(explainer, random_images(8, seed=1), random_images(4, seed=2),
            **{"max_trials": 2, "batch_size": 4, "verbose": 0, **options},
            directory=directory)
except KeyboardInterrupt:
    sys.exit(130)
"""


def run_search(directory, ready=None, trial=1, **options):
    """Starts the search script; with `ready`, sends it SIGINT once `trial`
    waits there."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    process = subprocess.Popen(
        [sys.executable, "-c", SEARCH_SCRIPT, str(directory), json.dumps(options)]
        + ([str(ready), str(trial)] if ready else []),
        cwd=root,
        env=dict(os.environ, PYTHONPATH=root),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 500
        while ready and not os.path.exists(ready) and process.poll() is None:
            assert time.monotonic() < deadline, "trial 1 never started"
            time.sleep(0.2)
        if ready and process.poll() is None:
            process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=500)
    finally:
        process.kill()
    return process.returncode, err


def trial_status(directory, trial):
    return json.loads((directory / f"trial_{trial}" / "trial.json").read_text())


# Issue 22, case 6
def test_ctrl_c_in_a_trial_leaves_it_to_the_resumed_search(tmp_path):
    directory = tmp_path / "tuning"
    code, err = run_search(directory, ready=tmp_path / "ready")
    assert code == 130, err[-3000:]
    assert trial_status(directory, 0)["status"] == "COMPLETED"
    interrupted = trial_status(directory, 1)
    assert interrupted["status"] == "RUNNING", interrupted["message"]

    code, err = run_search(directory)
    assert code == 0, err[-3000:]
    statuses = [row["status"] for row in read_rows(directory)]
    assert statuses == ["COMPLETED", "COMPLETED"]
    rerun = trial_status(directory, 1)
    assert rerun["hyperparameters"] == interrupted["hyperparameters"]
    assert not (directory / "trial_2").exists()


class ErrorOnTheWayOut(keras.callbacks.Callback):
    """Interrupts the second `fit`, then fails while the interrupt unwinds."""

    def __init__(self):
        super().__init__()
        self.fits = 0

    def on_train_begin(self, logs=None):
        self.fits += 1
        if self.fits == 2:
            try:
                raise KeyboardInterrupt
            finally:
                raise TypeError("a variable read on the way out")


# Issue 22, case 6
def test_an_error_caused_by_an_interrupt_counts_as_the_interrupt(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, callbacks=[ErrorOnTheWayOut()])
    assert trial_status(tmp_path, 1)["status"] == "RUNNING"
    recipe = search(tmp_path)
    assert [row["status"] for row in read_rows(tmp_path)] == ["COMPLETED"] * 2
    assert isinstance(recipe, kp.recipes.Recipe)


# Issue 22, case 6
def test_a_search_interrupted_in_a_step_resumes_with_the_same_explainer(
    tmp_path, monkeypatch
):
    explainer, fits = tiny_explainer(), []
    compute_loss = kp.PTAME.compute_loss

    def interrupt_trial_1(self, *args, **kwargs):
        if not any(self is fit for fit in fits):
            fits.append(self)
        if len(fits) == 2:
            raise KeyboardInterrupt
        return compute_loss(self, *args, **kwargs)

    monkeypatch.setattr(kp.PTAME, "compute_loss", interrupt_trial_1)
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, explainer=explainer)
    monkeypatch.undo()
    # As in a notebook: the same explainer, whose classifier every trial shares.
    search(tmp_path, explainer=explainer)
    assert [row["status"] for row in read_rows(tmp_path)] == ["COMPLETED"] * 2


def test_time_budget_stops_the_search_and_trial_0_is_the_start(tmp_path):
    count = CountFits(sleep=1.0)
    recipe = search(tmp_path, max_trials=5, max_seconds=0.5, callbacks=[count])
    assert count.fits == 1
    assert [row["trial"] for row in read_rows(tmp_path)] == ["0"]
    # Trial 0 trains with the starting recipe: the defaults.
    start = space.default_recipe()
    for name in space.SEARCH_SPACE:
        assert getattr(recipe, name) == pytest.approx(getattr(start, name))
    assert recipe.ce_coeff == kp.PerturbationLoss().ce_coeff


# Issue 22, case 1
# Slow (run once, under JAX, in `make test`): which files an overwrite removes is the same on
# every backend; the searches themselves run on every backend above.
@pytest.mark.slow
def test_overwrite_replaces_a_search_and_nothing_else(tmp_path):
    directory = tmp_path / "tuning"
    search(directory, max_trials=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept.txt").write_text("user's own")
    # Each the user's, and the path the refusal names.
    foreign = {
        "notes.txt": ("notes.txt", lambda path: path.write_text("user's own")),
        "data/cat.png": ("data", lambda path: path.write_bytes(b"user's own")),
        "trial_0/mine.txt": ("trial_0/mine.txt", lambda path: path.write_text("x")),
        "link": ("link", lambda path: os.symlink(elsewhere, path)),
    }
    for name, (named, make) in foreign.items():
        path = directory / name
        path.parent.mkdir(exist_ok=True)
        make(path)
        before = snapshot(tmp_path)
        with pytest.raises(FileExistsError, match=f"'{directory / named}' is not"):
            search(directory, max_trials=1, overwrite=True)
        assert snapshot(tmp_path) == before
        os.remove(path)
        if path.parent != directory and not any(path.parent.iterdir()):
            path.parent.rmdir()
    # A folder holding nothing but the search is replaced: trial 0 runs anew.
    count = CountFits()
    search(directory, max_trials=1, overwrite=True, callbacks=[count])
    assert count.fits == 1
    assert [row["trial"] for row in read_rows(directory)] == ["0"]


# Issue 22, case 1 (a fresh search)
@pytest.mark.parametrize("name", ["results.csv", "recipe.json", "trial_0"])
def test_a_new_search_refuses_a_user_s_file_of_its_names(tmp_path, name):
    directory = tmp_path / "tuning"
    directory.mkdir()
    (directory / "notes.txt").write_text("user's own")
    if name.startswith("trial_"):
        (directory / name).mkdir()
        (directory / name / "trial.json").write_text("user's own")
    else:
        (directory / name).write_text("user's own")
    before = snapshot(tmp_path)
    count = CountFits()
    with pytest.raises(FileExistsError, match=f"'{directory / name}' exists"):
        search(directory, max_trials=1, callbacks=[count])
    assert count.fits == 0 and snapshot(tmp_path) == before


# Issue 22, case 3 (in tune)
def test_a_resumed_search_never_writes_through_a_link(tmp_path):
    directory = tmp_path / "tuning"
    search(directory, max_trials=1)
    outside = tmp_path / "outside.csv"
    outside.write_text("user's own")
    (directory / "results.csv").unlink()
    (directory / "results.csv").symlink_to(outside)
    with pytest.raises(FileExistsError, match="results.csv' is not a search's"):
        search(directory, max_trials=2)
    assert outside.read_text() == "user's own"
    # A user's settings.json is not a search to resume either.
    other = tmp_path / "other"
    other.mkdir()
    (other / "settings.json").write_text("user's own")
    with pytest.raises(FileExistsError, match="settings.json' is not a search's"):
        search(other, max_trials=1)
    assert (other / "settings.json").read_text() == "user's own"


def test_objective_mixes_objectives_as_a_weighted_mean():
    classifier = tiny_classifier()
    images = random_images(6, seed=7).astype("float32")
    backbone = kp.Backbone(classifier)
    objective = objectives.Objective(
        weights=objectives.parse_objective("road=2,adic=1"),
        scorer=Scorer(backbone, images, np.zeros(6, dtype="int32")),
    )
    maps = np.random.default_rng(0).random((6, IMAGE_SIZE, IMAGE_SIZE))
    row = objective(maps)
    road = (row["LeRF"] - row["MoRF"]) / 100
    adic = np.mean([row[f"IC{p}"] - row[f"AD{p}"] for p in (100, 50, 15)]) / 100
    assert row["objective"] == pytest.approx((2 * road + adic) / 3)


@pytest.mark.parametrize(
    "objective, expected",
    [
        ("road", {"road": 1.0}),
        ("adic=0.5, road=1", {"road": 1.0, "adic": 0.5}),
        ({"deletion": 2}, {"deletion": 2.0}),
    ],
)
def test_objectives_parse(objective, expected):
    assert objectives.parse_objective(objective) == expected


@pytest.mark.parametrize(
    "objective, match",
    [("pointing", "Unknown objective"), ("road=x", "number"), ("road=0", "> 0")],
)
def test_bad_objectives_are_refused(objective, match):
    with pytest.raises(ValueError, match=match):
        objectives.parse_objective(objective)


def test_space_fixes_and_overrides_settings():
    base = space.default_recipe()
    ranges, fixed = space.resolve_space(
        {"area_power": 0.5, "learning_rate": (1e-3, 1e-1), "border": (0, 1, "linear")},
        base,
    )
    assert "area_power" not in ranges and fixed.area_power == 0.5
    assert ranges["learning_rate"] == space.Range(1e-3, 1e-1)
    assert ranges["border"] == space.Range(0.0, 1.0, log=False)
    assert space.parse_space("ce_coeff=0.1:2") == ("ce_coeff", (0.1, 2.0))
    assert space.parse_space("area_power=0.3") == ("area_power", 0.3)
    with pytest.raises(ValueError, match="Unknown setting"):
        space.resolve_space({"epochs": (1, 3)}, base)
    with pytest.raises(ValueError, match="nothing is left"):
        space.resolve_space(dict.fromkeys(space.SEARCH_SPACE, 0.1), base)
    with pytest.raises(ValueError, match="low < high"):
        space.Range(1.0, 0.1)


def test_bad_arguments_fail_before_any_trial(tmp_path):
    with pytest.raises(ValueError, match="PTAME"):
        kp.tune(tiny_classifier(), random_images(4), random_images(4))
    with pytest.raises(ValueError, match="max_trials"):
        search(tmp_path, max_trials=0)
    with pytest.raises(ValueError, match="max_seconds"):
        search(tmp_path, max_seconds=0)
    assert not (tmp_path / "results.csv").exists()


def test_recipe_json_round_trips(tmp_path):
    recipe = dataclasses.replace(kp.recipes.get("resnet_50_imagenet"), epochs=3)
    path = tmp_path / "recipe.json"
    path.write_text(recipe.to_json())
    assert kp.recipes.get(str(path)) == recipe
    path.write_text(json.dumps({"name": "x", "colour": "red"}))
    with pytest.raises(ValueError, match="not a recipe"):
        kp.recipes.load(path)


@pytest.fixture
def folders(tmp_path):
    image = pytest.importorskip("PIL.Image")
    tiny_classifier().save(tmp_path / "classifier.keras")
    tiny_feature_model().save(tmp_path / "auxiliary.keras")
    for name, count, seed in (("train", 8, 1), ("held_out", 4, 2)):
        (tmp_path / name).mkdir()
        for index, pixels in enumerate(random_images(count, seed=seed)):
            image.fromarray(pixels).save(tmp_path / name / f"{index}.png")
    return tmp_path


@pytest.fixture
def ptame_tune(capsys):
    """Runs `ptame ARG...`; returns the exit code and stderr."""

    def run(*argv):
        code = cli.main([str(arg) for arg in argv])
        return code, capsys.readouterr().err

    return run


def tune_argv(root, *extra):
    return [
        "tune",
        *("--classifier", root / "classifier.keras"),
        *("--auxiliary", root / "auxiliary.keras"),
        *("--data", root / "train", "--directory", root / "tuning"),
        *("--batch-size", 4, "--verbose", 0),
        *extra,
    ]


def test_ptame_tune_writes_the_table_and_a_recipe_for_train(folders, capsys):
    argv = tune_argv(
        folders, "--validation-data", folders / "held_out", "--max-trials", 1
    )
    argv += ["--space", "area_power=0.5", "--objective", "road=1,adic=1"]
    assert cli.main([str(arg) for arg in argv]) == 0, capsys.readouterr().err
    recipe = kp.recipes.get(str(folders / "tuning" / "recipe.json"))
    assert recipe.area_power == 0.5
    assert {"MoRF", "AD15", "IC15"} <= set(read_rows(folders / "tuning")[0])


def test_ptame_tune_needs_held_out_images_beside_a_folder(folders, capsys):
    assert cli.main([str(arg) for arg in tune_argv(folders)]) == 2
    assert "--validation-data" in capsys.readouterr().err
    argv = tune_argv(folders, "--validation-data", folders / "held_out")
    argv = [str(arg) for arg in argv]
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(argv + ["--space", "area_power"])
    assert cli.main(argv + ["--space", "colour=1:2"]) == 2
    assert "Unknown setting" in capsys.readouterr().err
    assert not (folders / "tuning").exists()


# Issue 22, case 1
def test_ptame_tune_overwrite_keeps_a_user_s_folder(folders, ptame_tune):
    directory = folders / "tuning"
    (directory / "photos").mkdir(parents=True)
    (directory / "photos" / "cat.png").write_bytes(b"user's own")
    code, err = ptame_tune(
        *tune_argv(folders, "--validation-data", folders / "held_out"),
        *("--max-trials", 1, "--overwrite"),
    )
    assert code == 2 and "Traceback" not in err, err
    assert f"'{directory / 'photos'}' is not a search's" in err.strip().splitlines()[-1]
    assert sorted(str(p.relative_to(directory)) for p in directory.rglob("*")) == [
        "photos",
        "photos/cat.png",
    ]


# Issue 22, case 1 (a fresh search)
def test_ptame_tune_refuses_a_user_s_results_table(folders, ptame_tune):
    directory = folders / "tuning"
    directory.mkdir()
    (directory / "results.csv").write_text("user's own")
    code, err = ptame_tune(
        *tune_argv(folders, "--validation-data", folders / "held_out"),
        *("--max-trials", 1),
    )
    assert code == 2 and "Traceback" not in err, err
    assert f"'{directory / 'results.csv'}' exists" in err.strip().splitlines()[-1]
    assert [p.name for p in directory.iterdir()] == ["results.csv"]
    assert (directory / "results.csv").read_text() == "user's own"


# Issue 22, case 4
def test_ptame_tune_never_writes_over_its_recipe(folders, ptame_tune):
    directory = folders / "tuning"
    directory.mkdir()
    recipe = directory / "recipe.json"
    recipe.write_text(kp.recipes.get("resnet_50_imagenet").to_json())
    before = recipe.read_bytes()
    code, err = ptame_tune(
        *tune_argv(folders, "--validation-data", folders / "held_out"),
        *("--recipe", recipe, "--max-trials", 1),
    )
    assert code == 2 and "--directory would write over an input" in err, err
    assert recipe.read_bytes() == before


def test_ties_go_to_the_earlier_trial_in_the_table_and_the_recipe():
    from keras_ptame.tuning.table import rank

    ids = ["2", "10", "0", "1"]
    scores = {"2": 0.5, "10": 0.9, "0": 0.9, "1": None}
    ordered = sorted(ids, key=lambda trial: rank(scores[trial], trial))
    # Trial 0 (the starting recipe) wins its tie; ids compare as numbers.
    assert ordered == ["0", "10", "2", "1"]


def no_data_argv(root, *extra):
    """`tune_argv` whose --data does not exist: an option checked only after
    the data loads would be reported as the missing data instead."""
    argv = tune_argv(root, "--validation-data", root / "held_out", *extra)
    argv[argv.index("--data") + 1] = root / "nowhere"
    return [str(arg) for arg in argv]


# Issue 22, cases 11 and 12
@pytest.mark.parametrize(
    "option, match",
    [
        (["--space", "ce_coeff=-1"], "--space: `space['ce_coeff']` cannot hold -1.0"),
        (["--space", "ce_coeff=-1:2"], "--space: `space['ce_coeff']`"),
        (
            ["--space", "area_power=0:1:linear"],
            "`area_power` must be a finite number > 0",
        ),
        (["--max-seconds", "inf"], "--max-seconds must be a positive finite"),
        (["--objective", "road=nan"], "--objective"),
    ],
)
def test_ptame_tune_checks_its_options_before_loading_anything(
    folders, capsys, option, match
):
    assert cli.main(no_data_argv(folders, *option)) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("ptame tune: error:") and match in last, last
    assert not (folders / "tuning").exists()


# Issue 22, case 11
def test_a_time_budget_too_short_for_any_trial_is_a_user_error(folders, capsys):
    argv = tune_argv(folders, "--validation-data", folders / "held_out")
    argv += ["--max-seconds", "1e-6", "--max-trials", 1]
    assert cli.main([str(arg) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "--max-seconds" in err.strip().splitlines()[-1]


# Issue 22, case 12
@pytest.mark.parametrize("name", ["oracle.json", "trial_0/trial.json", "tuner0.json"])
@pytest.mark.parametrize("content", ['{"trial_id": "0", "hyperpa', "[1]"])
def test_a_damaged_file_of_a_search_is_named_before_anything_loads(
    folders, capsys, name, content
):
    damaged = folders / "tuning" / name
    damaged.parent.mkdir(parents=True)
    damaged.write_text(content)
    (folders / "tuning" / "settings.json").write_text('{"objective": "road"}')
    with pytest.raises(ValueError, match="cannot be resumed") as error:
        search(folders / "tuning")
    assert str(damaged) in str(error.value)
    # The command says so before it loads the networks or the data.
    assert cli.main(no_data_argv(folders)) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(damaged) in last and "--overwrite" in last, last


# Issue 22, case 12
@pytest.mark.parametrize("name", ["oracle.json", "trial_0/trial.json"])
def test_a_search_file_without_its_fields_is_named(tmp_path, name):
    damaged = tmp_path / name
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_text("{}")
    (tmp_path / "settings.json").write_text('{"objective": "road"}')
    with pytest.raises(ValueError, match="cannot be resumed") as error:
        search(tmp_path)
    assert str(damaged) in str(error.value)
