"""Training that diverges stops with an error: `PTAME.fit`'s NaN check.

A NaN or Inf loss (a learning rate too high, a classifier whose scores
overflow) makes every later step NaN, and the decoder's weights with it; an
explainer saved after that gives NaN maps. Keras' `TerminateOnNaN` stops such
a training quietly (or with a `RuntimeError`, read as a bug); `StopOnNaN`
raises `TrainingDiverged`, a `ValueError` that says what to change, before
any epoch-end callback (a backup, a checkpoint) could keep the NaN weights.
"""

import keras
import numpy as np

from keras_ptame.utils.validation import check_finite_weights


class TrainingDiverged(ValueError):
    """The loss or the decoder's weights of a training became NaN or Inf."""


ADVICE = (
    "lower the learning rate or the loss coefficients, or check that the "
    "classifier gives finite scores on these images"
)


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """`TerminateOnNaN` that raises `TrainingDiverged`, naming the step.

    The loss is read after every batch, as `TerminateOnNaN` reads it; at the
    end of training the decoder's weights are checked too, since the last
    step's update may turn them NaN after a finite loss.

    It is `async_safe`: where the backend allows (JAX, PyTorch), Keras runs
    its check in a thread instead of waiting for every step's loss, and raises
    its error at a later batch, at the latest before the epoch's end
    callbacks run.
    """

    async_safe = True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise TrainingDiverged(
                f"Training diverged: the loss was {float(loss)} at epoch "
                f"{getattr(self, 'epoch', 0) + 1}, batch {batch + 1}, so the "
                f"decoder's weights are no longer usable; {ADVICE}."
            )

    def on_train_end(self, logs=None):
        try:
            check_finite_weights(self.model.decoder, "the decoder after training")
        except ValueError as error:
            raise TrainingDiverged(f"Training diverged: {error} ({ADVICE})") from None
