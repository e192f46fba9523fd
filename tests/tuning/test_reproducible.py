"""Issue 28: a search depends on its seed alone, and a resumed search ends
where an uninterrupted one does.

Four trials: trial 0 the starting recipe, trial 1 drawn at random, trials 2
and 3 steered by the Gaussian process, whose starting points come from the
oracle's random state. The classifier's logits follow the
images' mean red and green (`two_patch_classifier`), so that the objective,
`"adic"`, differs from trial to trial (with `tiny_classifier`'s nearly
uniform probabilities every trial scores the same) and the Gaussian process
has something to fit.
"""

import json
import random

import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.tuning.space import SEARCH_SPACE, default_recipe
from tests.helpers import tiny_feature_model
from tests.helpers.known_classifiers import two_patch_classifier
from tests.tuning.test_tune import CountFits, run_search, search

pytest.importorskip("keras_tuner")
pytest.importorskip("sklearn")
# The slow tests run about 20 trials in all, each a compiled training step:
# minutes per backend.

OPTIONS = {"max_trials": 4, "initial_trials": 2, "objective": "adic"}


# `explainer`, for the search script (`run_search`).
EXPLAINER = "tests.tuning.test_reproducible:explainer"


def explainer():
    return kp.PTAME(
        kp.Backbone(two_patch_classifier()), kp.AuxiliaryExtractor(tiny_feature_model())
    )


def trials_of(directory):
    """Trial id -> (status, settings, scores), as the trials' files hold them."""
    trials = {}
    for path in sorted(directory.glob("trial_*/trial.json")):
        state = json.loads(path.read_text())
        scores = {
            name: [observation["value"] for observation in history["observations"]]
            for name, history in state["metrics"]["metrics"].items()
            if name != "seconds"
        }
        trials[state["trial_id"]] = (
            state["status"],
            state["hyperparameters"]["values"],
            state["score"],
            scores,
        )
    return trials


def recipe_of(directory):
    return json.loads((directory / "recipe.json").read_text())


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted search's trials and recipe."""
    directory = tmp_path_factory.mktemp("straight")
    search(directory, explainer(), **OPTIONS)
    trials = trials_of(directory)
    assert list(trials) == ["0", "1", "2", "3"]
    assert all(status == "COMPLETED" for status, *_ in trials.values())
    # Distinct scores: the Gaussian process fits, and a difference would show.
    assert len({score for _, _, score, _ in trials.values()}) == 4
    return trials, recipe_of(directory)


# Issue 28: the same search twice, whatever Python's global random state
@pytest.mark.slow
def test_the_same_search_twice_gives_the_same_trials_and_recipe(tmp_path, straight):
    template = explainer()
    # Another process, or a notebook, holds another state.
    random.seed(12345)
    search(tmp_path, template, **OPTIONS)
    assert trials_of(tmp_path) == straight[0]
    assert recipe_of(tmp_path) == straight[1]


# Issue 28: interrupted in trial 2 (the Gaussian process drew it), then resumed
@pytest.mark.slow
def test_a_search_interrupted_in_a_trial_ends_where_a_straight_one_does(
    tmp_path, straight
):
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, explainer(), callbacks=[CountFits(interrupt_at=3)], **OPTIONS)
    assert trials_of(tmp_path)["2"][0] == "RUNNING"
    search(tmp_path, explainer(), **OPTIONS)
    assert trials_of(tmp_path) == straight[0]
    assert recipe_of(tmp_path) == straight[1]


# Issue 28: stopped between trials (after trial 2), then resumed
@pytest.mark.slow
def test_a_search_stopped_between_trials_ends_where_a_straight_one_does(
    tmp_path, straight
):
    search(tmp_path, explainer(), **{**OPTIONS, "max_trials": 3})
    assert list(trials_of(tmp_path)) == ["0", "1", "2"]
    search(tmp_path, explainer(), **OPTIONS)
    assert trials_of(tmp_path) == straight[0]
    assert recipe_of(tmp_path) == straight[1]


# Issue 28: a real Ctrl-C in trial 2, each run in its own process
@pytest.mark.slow
def test_ctrl_c_in_a_trial_then_resuming_ends_where_a_straight_search_does(
    tmp_path, straight
):
    directory = tmp_path / "tuning"
    code, err = run_search(
        directory, ready=tmp_path / "ready", trial=2, **OPTIONS, explainer=EXPLAINER
    )
    assert code == 130, err[-3000:]
    assert trials_of(directory)["2"][0] == "RUNNING"
    code, err = run_search(directory, **OPTIONS, explainer=EXPLAINER)
    assert code == 0, err[-3000:]
    assert trials_of(directory) == straight[0]
    assert recipe_of(directory) == straight[1]


# Issue 28: seed 0 kept, the random state through oracle.json (or from the seed)
def test_the_oracle_state_carries_its_random_state_through_json():
    from keras_ptame.tuning.tuner import _make_oracle

    def oracle():
        budget = {"max_trials": 4, "initial_trials": 2}
        return _make_oracle(SEARCH_SPACE, default_recipe(), budget, seed=0)

    searched = oracle()
    assert searched.seed == 0
    searched._random_state.uniform(size=7)  # the draws of a steered trial
    state = json.loads(json.dumps(searched.get_state()))
    resumed = oracle()
    resumed.set_state(state)
    assert np.array_equal(
        resumed._random_state.uniform(size=5), searched._random_state.uniform(size=5)
    )
    del state["random_state"]
    resumed.set_state(state)
    expected = np.random.RandomState(0).uniform(size=5)
    assert np.array_equal(resumed._random_state.uniform(size=5), expected)
