import math

import keras
from keras import ops

# PyTorch's `AdamW` epsilon, which the authors keep (Keras' default is 1e-7).
EPSILON = 1e-8


@keras.saving.register_keras_serializable(package="keras_ptame")
class CyclingAdamW(keras.optimizers.AdamW):
    """AdamW as `torch.optim.AdamW` computes it, with a `beta_1` that may cycle.

    The authors train with `torch.optim.AdamW(amsgrad=True)` under PyTorch's
    `OneCycleLR`, which cycles Adam's `beta_1` against the learning rate.
    Keras' `AdamW` can do neither exactly: it adds `epsilon` before the bias
    correction (`sqrt(v) + epsilon`, with the correction folded into the
    step size), and its `beta_1` is a constant. This optimiser keeps Keras'
    `AdamW` (weight decay, clipping, EMA, gradient accumulation, loss
    scaling, serialisation) and changes only the update, to PyTorch's: at
    step `t` (from 1), with `lr` and `beta_1` read at that step,

    ```
    variable *= 1 - lr * weight_decay
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g^2
    v_max = max(v_max, v)                     # amsgrad; v itself otherwise
    variable -= lr / (1 - beta_1^t) * m / (sqrt(v_max) / sqrt(1 - beta_2^t) + epsilon)
    ```

    The two updates differ where `sqrt(v)` is near `epsilon` (small
    gradients, early steps). The bias correction uses the current `beta_1`
    to the power `t`, as PyTorch does when a scheduler changes `beta_1`.

    Named for what it adds to Keras' `AdamW` (a `beta_1` that cycles with
    the learning rate, as in one-cycle training) rather than `AdamW`, which
    would shadow Keras' own in code that imports both.

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`
            (e.g. `OneCycle.learning_rate(...)`). Defaults to `1e-3`
            (PyTorch's).
        weight_decay: float. Decoupled weight decay, multiplied by the
            learning rate as in PyTorch. Defaults to `1e-2` (PyTorch's).
        beta_1: float or `LearningRateSchedule` of the step (e.g.
            `OneCycle.beta_1(...)`). Defaults to `0.9`.
        beta_2: float. Defaults to `0.999`.
        epsilon: float. Added after the bias correction. Defaults to `1e-8`
            (PyTorch's).
        amsgrad: bool. Whether to divide by the running maximum of `v`
            (PyTorch's `amsgrad`). Defaults to `False`.
        **kwargs: the other arguments of `keras.optimizers.AdamW`
            (`clipnorm`, `global_clipnorm`, `use_ema`, `name`, ...).

    Examples:
    ```python
    import keras_ptame as kp

    steps = 1000
    optimizer = kp.optimizers.CyclingAdamW(
        learning_rate=kp.optimizers.OneCycle.learning_rate(1e-4, steps),
        beta_1=kp.optimizers.OneCycle.beta_1(steps),
        weight_decay=2.4e-4,
        amsgrad=True,
    )
    ```
    """

    def __init__(
        self,
        learning_rate=1e-3,
        weight_decay=1e-2,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=EPSILON,
        amsgrad=False,
        **kwargs,
    ):
        if isinstance(beta_1, dict):
            beta_1 = keras.saving.deserialize_keras_object(beta_1)
        if (
            not isinstance(beta_1, keras.optimizers.schedules.LearningRateSchedule)
            and not 0 <= beta_1 < 1
        ):
            raise ValueError(
                f"`beta_1` must be in [0, 1) or a schedule. Received: beta_1={beta_1!r}"
            )
        if not 0 <= beta_2 < 1:
            raise ValueError(f"`beta_2` must be in [0, 1). Received: beta_2={beta_2!r}")
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            **kwargs,
        )

    def current_beta_1(self):
        """`beta_1` at the current step: the schedule's value, or the constant."""
        if isinstance(self.beta_1, keras.optimizers.schedules.LearningRateSchedule):
            return self.beta_1(self.iterations)
        return self.beta_1

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        current = self.current_beta_1()
        beta_1 = ops.cast(current, dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
        self.assign_add(
            v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2)
        )
        if self.amsgrad:
            v_hat = self._velocity_hats[index]
            self.assign(v_hat, ops.maximum(v_hat, v))
            v = v_hat
        # 1 - beta^t as -expm1(t log beta): exact to float32 for the small
        # corrections of the first steps, where `1 - beta ** t` in float32
        # loses digits (1 - 0.999 is 1.0e-3 only to four of them).
        correction_1 = -ops.expm1(step * ops.cast(_log(current), dtype))
        correction_2 = -ops.expm1(step * _log(self.beta_2))
        denominator = ops.sqrt(v) / ops.sqrt(correction_2) + self.epsilon
        self.assign_sub(variable, ops.divide(m, denominator) * (lr / correction_1))

    def get_config(self):
        config = super().get_config()
        if isinstance(self.beta_1, keras.optimizers.schedules.LearningRateSchedule):
            config["beta_1"] = keras.saving.serialize_keras_object(self.beta_1)
        return config


def _log(beta):
    """log(beta), in float64 for a Python number; -inf for 0 (no correction)."""
    if isinstance(beta, (int, float)):
        return math.log(beta) if beta > 0 else -math.inf
    return ops.log(ops.cast(beta, "float32"))
