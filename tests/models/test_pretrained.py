"""`Pretrained`: the training-state record kept by `fit`."""

import keras
import numpy as np
import pytest

import keras_ptame as kp
from tests.helpers import IMAGE_SIZE, random_images, tiny_explainer


def compiled_explainer():
    explainer = tiny_explainer()
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    return explainer


# Issue 22, case 6
def test_a_fit_interrupted_in_its_first_step_raises_the_interrupt(monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    # On JAX and TensorFlow the first step is being compiled then; on JAX
    # `fit` has detached the variables for the step and has nothing to put back.
    explainer = compiled_explainer()
    monkeypatch.setattr(kp.PTAME, "compute_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        explainer.fit(random_images(4), epochs=1, batch_size=2, verbose=0)
    # The explainer keeps its weights, its classifier's included (`kp.tune`
    # shares it with the next trial), and trains again.
    monkeypatch.undo()
    maps = explainer.explain(random_images(2))
    assert maps.shape == (2, IMAGE_SIZE, IMAGE_SIZE) and np.all(np.isfinite(maps))
    explainer.fit(random_images(4), epochs=1, batch_size=2, verbose=0)
    assert int(keras.ops.convert_to_numpy(explainer.trained_steps)) == 2


def test_a_fit_stopped_by_an_error_counts_the_steps_it_ran():
    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise RuntimeError("stopped")

    explainer = compiled_explainer()
    with pytest.raises(RuntimeError, match="stopped"):
        explainer.fit(
            random_images(8), epochs=1, batch_size=2, verbose=0, callbacks=[Stop()]
        )
    assert int(keras.ops.convert_to_numpy(explainer.trained_steps)) == 2
