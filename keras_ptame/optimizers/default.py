"""The optimizer that `PTAME.compile` (and `ptame train` without a recipe) uses
when given none.

Keras' `AdamW` with the authors' AMSGrad and epsilon, at a constant rate: a
schedule needs the length of the run, which `compile` does not know. The rate
is Keras' own default, not the paper's 1e-4: that is the peak of a one-cycle
schedule over a whole ImageNet epoch (about 40,000 steps), and held constant
it under-trains a short run. On `benchmarks/object_maps.py` (470 steps, 5
seeds, three backends) 1e-4 left 18 classes of 25 runs under-trained
(pointing game 0.54 to just under 0.9); 1e-3 none of 30 runs with the default
loss (`keras_ptame.losses.default`), one with the authors' (0.88).
The paper's optimiser is a recipe's (`kp.recipes`).
"""

import keras

from keras_ptame.optimizers.cycling_adamw import EPSILON

DEFAULT_LEARNING_RATE = 1e-3


def default_optimizer(learning_rate=None):
    """Keras' `AdamW(learning_rate, amsgrad=True, epsilon=1e-8)`, held constant.

    Args:
        learning_rate: float, or `None` for `DEFAULT_LEARNING_RATE` (1e-3).
    """
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATE
    return keras.optimizers.AdamW(learning_rate, amsgrad=True, epsilon=EPSILON)
