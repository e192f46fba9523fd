"""Training in bfloat16 mixed precision, as the authors do (Lightning's
`bf16-mixed`): an option here, chosen by the explainer's dtype policy or by
Keras' global one. The decoder computes in bfloat16 and keeps float32 weights.
"""

import keras
import numpy as np
import pytest

import keras_ptame as kp
from tests.helpers import random_images, tiny_explainer, to_numpy, weights_of


@pytest.fixture
def global_mixed_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _train_one_step(explainer):
    images = random_images(4, seed=2)
    explainer.ensure_built(images.shape)
    before = weights_of(explainer.decoder)
    explainer.compile(
        optimizer=kp.recipes.one_cycle_adamw(1e-2, total_steps=1, weight_decay=0.01)
    )
    history = explainer.fit(images, epochs=1, batch_size=4, verbose=0)
    return before, history.history


def _assert_trained_in_mixed_precision(explainer, before, logs):
    decoder = explainer.decoder
    assert decoder.compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in decoder.weights)
    assert all(np.isfinite(value[-1]) for value in logs.values())
    after = weights_of(decoder)
    assert all(np.isfinite(w).all() for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    maps = to_numpy(explainer.explain(random_images(2, seed=5)))
    assert np.isfinite(maps).all()


def test_a_mixed_bfloat16_explainer_trains_a_step():
    explainer = tiny_explainer(dtype="mixed_bfloat16")
    before, logs = _train_one_step(explainer)
    _assert_trained_in_mixed_precision(explainer, before, logs)


def test_the_global_mixed_bfloat16_policy_trains_a_step(global_mixed_policy):
    explainer = tiny_explainer()
    assert explainer.dtype_policy.name == "mixed_bfloat16"
    before, logs = _train_one_step(explainer)
    _assert_trained_in_mixed_precision(explainer, before, logs)
