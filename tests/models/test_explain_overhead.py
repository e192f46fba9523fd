"""What `explain` does on the host around the compiled forward pass.

The training state is read off the device only until it is known; the
compiled step leaves the weights as they are; the input check reads each
pixel twice and still finds every NaN or Inf.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_ptame.models import pretrained
from tests.helpers import random_images, tiny_explainer, weights_of


@pytest.fixture
def reads(monkeypatch):
    """Counts the reads of `trained_steps` (and of any other int variable)."""
    counted = []
    read = pretrained._read_int

    def counting(variable):
        counted.append(variable.path)
        return read(variable)

    monkeypatch.setattr(pretrained, "_read_int", counting)
    return counted


def test_a_trained_explainer_is_read_as_trained_once(reads):
    explainer = tiny_explainer()
    explainer.mark_trained()
    images = random_images(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        explainer.explain(images)
        count = len(reads)
        assert count >= 1
        for _ in range(3):
            explainer.explain(images)
            explainer.explain_outputs(images, classes=[0, 1, 2])
    assert len(reads) == count


def test_an_untrained_explainer_is_read_until_it_warned(reads):
    explainer = tiny_explainer()
    with pytest.warns(UserWarning, match="never trained"):
        explainer.explain(random_images(2))
    count = len(reads)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        explainer.explain(random_images(2))
    assert len(reads) == count


def test_loading_untrained_weights_asks_again(tmp_path):
    untrained = tiny_explainer()
    untrained.ensure_built((None, 16, 16, 3))
    untrained.save_weights(tmp_path / "untrained.weights.h5")
    explainer = tiny_explainer()
    explainer.mark_trained()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        explainer.explain(random_images(2))
    explainer.load_weights(tmp_path / "untrained.weights.h5")
    assert not explainer.is_trained
    with pytest.warns(UserWarning, match="never trained"):
        explainer.explain(random_images(2))


def test_explaining_changes_no_weight_and_keeps_them_attached():
    explainer = tiny_explainer()
    explainer.mark_trained()
    images = random_images(5)
    first = explainer.explain_outputs(images, batch_size=2)
    before = weights_of(explainer)
    again = explainer.explain_outputs(images, batch_size=2)
    for want, got in zip(before, weights_of(explainer)):
        np.testing.assert_array_equal(got, want)
    for key, value in first.items():
        np.testing.assert_array_equal(again[key], value)


@pytest.mark.skipif(
    keras.config.backend() == "torch",
    reason="Keras' PyTorch backend runs one batch per step",
)
def test_several_batches_per_step_give_the_same_explanation():
    explainer = tiny_explainer()
    explainer.mark_trained()
    images = random_images(7)  # 3 batches of 2 and 1 image; steps of 2 batches
    one = explainer.explain_outputs(images, batch_size=2)
    explainer.compile(steps_per_execution=2)
    several = explainer.explain_outputs(images, batch_size=2)
    assert several["maps"].shape == (7, 16, 16)
    for key, value in one.items():
        np.testing.assert_allclose(several[key], value, atol=1e-6)


@pytest.mark.skipif(
    keras.config.backend() != "jax",
    reason="the explainer compiles its own predict step under JAX only",
)
def test_the_jax_step_matches_keras_own_and_donates_no_weight():
    explainer = tiny_explainer()
    explainer.mark_trained()
    images = random_images(5)
    ours = explainer.explain_outputs(images, batch_size=2)
    held = explainer.decoder.weights[0].value
    explainer.explain(images, batch_size=2)
    # Keras' own step donates every weight it is given: a held array would
    # be deleted; the explainer's leaves it usable.
    assert np.asarray(held).shape == tuple(explainer.decoder.weights[0].shape)
    keras.Model.make_predict_function(explainer, force=True)
    theirs = explainer.explain_outputs(images, batch_size=2)
    for key, value in ours.items():
        np.testing.assert_array_equal(theirs[key], value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nan_or_inf_pixel_anywhere_is_refused(bad):
    explainer = tiny_explainer()
    for index in [(0, 0, 0, 0), (2, 15, 15, 2), (1, 7, 3, 1)]:
        images = random_images(3).astype("float32")
        images[index] = bad
        with pytest.raises(ValueError, match="must be finite.*1 NaN or Inf"):
            explainer.explain(images)


# Issue 27: each set of options keeps its compiled step (`fit`'s removal
# check explains with options of its own after every epoch): going back to
# earlier options compiles nothing, and gives the same maps.
def test_going_back_to_earlier_options_reuses_their_step():
    explainer = tiny_explainer()
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    images = random_images(8)
    maps = explainer.explain(images)
    step = explainer.predict_function
    sigmoid = explainer.explain(images, normalize="sigmoid", zero_flat=False)
    assert explainer.predict_function is not step
    np.testing.assert_array_equal(explainer.explain(images), maps)
    assert explainer.predict_function is step
    # The same misranked classes again (as each epoch's check sets them)
    # keep the step too.
    explainer.misranked_classes = explainer.misranked_classes
    np.testing.assert_array_equal(
        explainer.explain(images, normalize="sigmoid", zero_flat=False), sigmoid
    )
    np.testing.assert_array_equal(explainer.explain(images), maps)
    assert explainer.predict_function is step


# Issue 27: a kept step is dropped when what it compiled in has changed.
def test_a_kept_step_is_not_used_after_the_threshold_changed():
    explainer = tiny_explainer(evidence_threshold=0.0)
    images = random_images(3)
    assert not explainer.explain_outputs(images)["flat"].any()
    explainer.explain_outputs(images, normalize="sigmoid")
    explainer.evidence_threshold = 1.0
    assert explainer.explain_outputs(images)["flat"].all()
    step = explainer.predict_function
    explainer.explain(images, resolution="decoder")
    explainer.compile()
    explainer.explain(images)
    assert explainer.predict_function is not step
