"""`kp.tune` and `ptame tune`: a resumable search that returns a usable recipe."""

import csv
import dataclasses
import json
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


def search(directory, **options):
    settings = dict(max_trials=2, batch_size=4, directory=directory, verbose=0)
    return kp.tune(
        tiny_explainer(),
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
        (["--space", "area_power=0:1:linear"], "`area_power` must be > 0"),
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
    with pytest.raises(ValueError, match="cannot be resumed") as error:
        search(tmp_path)
    assert str(damaged) in str(error.value)
