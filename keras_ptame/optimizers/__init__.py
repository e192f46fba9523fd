"""The authors' optimiser in Keras: PyTorch's `AdamW` under `OneCycleLR`.

```python
import keras_ptame as kp

steps = epochs * steps_per_epoch
optimizer = kp.optimizers.CyclingAdamW(
    learning_rate=kp.optimizers.OneCycle.learning_rate(1e-4, steps),
    beta_1=kp.optimizers.OneCycle.beta_1(steps),
    weight_decay=2.4e-4,
    amsgrad=True,
)
```

`kp.recipes.Recipe.optimizer` builds exactly this for a recipe.
"""

from keras_ptame.optimizers.cycling_adamw import CyclingAdamW
from keras_ptame.optimizers.one_cycle import OneCycle

__all__ = ["CyclingAdamW", "OneCycle"]
