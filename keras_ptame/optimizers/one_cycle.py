import math

import keras
from keras import ops

from keras_ptame.utils.validation import check_positive_int

# PyTorch's `OneCycleLR` defaults, which the authors train with.
WARMUP_FRACTION = 0.3
DIV_FACTOR = 25.0
FINAL_DIV_FACTOR = 1e4
BASE_MOMENTUM = 0.85
MAX_MOMENTUM = 0.95


@keras.saving.register_keras_serializable(package="keras_ptame")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """PyTorch's `OneCycleLR` curve (two phases, cosine annealing), per step.

    The value goes from `initial_value` to `peak_value` over the first
    `warmup_fraction` of the steps and from there to `final_value` at step
    `total_steps - 1`, each phase along half a cosine. It is the same curve
    as `torch.optim.lr_scheduler.OneCycleLR` with `three_phase=False` and
    `anneal_strategy="cos"`, stepped once per optimiser step: its phase
    boundaries (warm-up ends at step `warmup_fraction * total_steps - 1`,
    not rounded), its annealing, and its values at step 0 (the initial
    value) and at short runs (for one step the curve is already at
    `final_value`). Past the last step the value stays at `final_value`
    (PyTorch raises there).

    One class serves both curves of the authors' training: the learning
    rate (`OneCycle.learning_rate`: `peak / 25` up to `peak`, then down to
    `peak / 25 / 1e4`) and Adam's `beta_1` (`OneCycle.beta_1`: `0.95` down to
    `0.85`, then back to `0.95`, PyTorch's momentum cycling).

    Computed in float32 from the optimiser's step counter, so that it runs
    inside compiled training steps on every backend; it differs from
    PyTorch's float64 values by a few float32 roundings (relative 1e-6 at
    most).

    Args:
        initial_value: float. The value at step 0.
        peak_value: float. The value at the end of the warm-up (the highest
            learning rate; the lowest `beta_1`).
        final_value: float. The value at step `total_steps - 1` and after.
        total_steps: int. Number of optimiser steps of the whole training
            (PyTorch's `total_steps`, i.e. `epochs * steps_per_epoch`).
        warmup_fraction: float. Share of the steps of the first phase, in
            [0, 1] (PyTorch's `pct_start`). Defaults to `0.3`.
        name: str. Name of the schedule. Defaults to `"one_cycle"`.

    Examples:
    ```python
    import keras
    import keras_ptame as kp

    learning_rate = kp.optimizers.OneCycle.learning_rate(1e-4, total_steps=500)
    beta_1 = kp.optimizers.OneCycle.beta_1(total_steps=500)
    optimizer = kp.optimizers.CyclingAdamW(learning_rate, beta_1=beta_1)
    float(learning_rate(0))                               # 4e-06
    ```
    """

    def __init__(
        self,
        initial_value,
        peak_value,
        final_value,
        total_steps,
        warmup_fraction=WARMUP_FRACTION,
        name="one_cycle",
    ):
        super().__init__()
        check_positive_int("total_steps", total_steps)
        if not 0 <= warmup_fraction <= 1:
            raise ValueError(
                "`warmup_fraction` must be in [0, 1]. "
                f"Received: warmup_fraction={warmup_fraction!r}"
            )
        for key, value in (
            ("initial_value", initial_value),
            ("peak_value", peak_value),
            ("final_value", final_value),
        ):
            if not math.isfinite(value):
                raise ValueError(f"`{key}` must be finite. Received: {key}={value!r}")
        self.initial_value = float(initial_value)
        self.peak_value = float(peak_value)
        self.final_value = float(final_value)
        self.total_steps = int(total_steps)
        self.warmup_fraction = float(warmup_fraction)
        self.name = name

    @classmethod
    def learning_rate(cls, peak, total_steps, warmup_fraction=WARMUP_FRACTION):
        """The authors' learning rate: `OneCycleLR(max_lr=peak, ...)`'s defaults.

        It starts at `peak / 25` (`div_factor`), reaches `peak` at the end of
        the warm-up and ends at `peak / 25 / 1e4` (`final_div_factor`).
        """
        if not peak > 0:
            raise ValueError(f"`peak` must be positive. Received: peak={peak!r}")
        initial = peak / DIV_FACTOR
        return cls(
            initial,
            peak,
            initial / FINAL_DIV_FACTOR,
            total_steps,
            warmup_fraction,
            name="one_cycle_learning_rate",
        )

    @classmethod
    def beta_1(cls, total_steps, warmup_fraction=WARMUP_FRACTION):
        """The authors' `beta_1`: `OneCycleLR`'s momentum cycling for Adam.

        `0.95` (`max_momentum`) down to `0.85` (`base_momentum`) over the
        warm-up, then back to `0.95`.
        """
        return cls(
            MAX_MOMENTUM,
            BASE_MOMENTUM,
            MAX_MOMENTUM,
            total_steps,
            warmup_fraction,
            name="one_cycle_beta_1",
        )

    def phases(self):
        """The last step of each phase, as PyTorch sets them (floats)."""
        return float(self.warmup_fraction * self.total_steps) - 1, self.total_steps - 1

    def __call__(self, step):
        warmup_end, end = self.phases()
        step = ops.minimum(ops.cast(step, "float32"), float(end))
        # PyTorch's test: the first phase holds its last step, and a first
        # phase that ends before step 0 is skipped.
        warming = ops.less_equal(step, warmup_end)
        start = ops.where(warming, 0.0, warmup_end)
        stop = ops.where(warming, warmup_end, float(end))
        low = ops.where(warming, self.initial_value, self.peak_value)
        high = ops.where(warming, self.peak_value, self.final_value)
        length = stop - start
        # A phase of length 0 (e.g. `warmup_fraction * total_steps == 1`,
        # where PyTorch divides by zero) is at its end.
        safe = ops.where(ops.equal(length, 0.0), 1.0, length)
        done = ops.where(ops.equal(length, 0.0), 1.0, (step - start) / safe)
        left = ops.where(ops.equal(length, 0.0), 0.0, (stop - step) / safe)
        # PyTorch's `end + (start - end) / 2 * (cos(pi * pct) + 1)`, written
        # as `start + (end - start) * sin^2(pi * pct / 2)` near the start of
        # a phase and `end + (start - end) * sin^2(pi * (1 - pct) / 2)` near
        # its end: the same values, without float32 losing the small term.
        rising = low + (high - low) * ops.square(ops.sin(math.pi / 2 * done))
        falling = high + (low - high) * ops.square(ops.sin(math.pi / 2 * left))
        return ops.where(ops.less(done, 0.5), rising, falling)

    def get_config(self):
        return {
            "initial_value": self.initial_value,
            "peak_value": self.peak_value,
            "final_value": self.final_value,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction,
            "name": self.name,
        }
