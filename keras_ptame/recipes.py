"""The authors' training settings for the classifiers of the paper, by name.

```python
import keras_ptame as kp

recipe = kp.recipes.get("resnet_50_imagenet")
explainer.compile(
    optimizer=recipe.optimizer(steps_per_epoch=len(train_batches)),
    loss=recipe.loss(),
)
explainer.fit(train_batches, epochs=recipe.epochs)
```

`one_cycle` is the learning-rate schedule of every recipe, and `one_cycle_adamw`
the optimiser (the authors': PyTorch's `AdamW` under `OneCycleLR`), also the demo's.

Any other keras-hub classifier trains with the package's defaults, the ones
`compile()` takes given nothing: `for_classifier` gives the recipe when there
is one and a `DefaultRecipe` otherwise, with the same methods.

```python
recipe = kp.recipes.for_classifier("efficientnet_b0_ra_imagenet")
```
"""

import dataclasses
import json

from keras_ptame.losses.default import default_loss
from keras_ptame.losses.perturbation_loss import PerturbationLoss
from keras_ptame.optimizers.cycling_adamw import EPSILON, CyclingAdamW
from keras_ptame.optimizers.default import default_optimizer
from keras_ptame.optimizers.one_cycle import OneCycle
from keras_ptame.utils.validation import check_float, check_positive_int

# The checks of a recipe's numbers, by field: each finite (no NaN or Inf).
_AT_LEAST_ZERO = (
    "weight_decay",
    "ce_coeff",
    "area_coeff",
    "smoothness_coeff",
    "border",
)
_POSITIVE = ("area_power", "smoothness_power", "learning_rate")
_COUNTS = ("epochs", "batch_size", "image_size")


def one_cycle(peak, total_steps, warmup_fraction=0.3):
    """The authors' learning rate: PyTorch's `OneCycleLR` with its defaults.

    It starts at `peak / 25` (`div_factor`), rises along half a cosine to
    `peak` at step `warmup_fraction * total_steps - 1` (`pct_start`) and falls
    along half a cosine to `peak / 25 / 1e4` (`final_div_factor`) at step
    `total_steps - 1`; step it per batch. The same values as
    `torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak,
    total_steps=total_steps, pct_start=warmup_fraction)`.

    Args:
        peak: float. The highest learning rate (`max_lr`).
        total_steps: int. Number of optimiser steps of the whole training.
        warmup_fraction: float. Share of the steps spent warming up, in
            [0, 1]. Defaults to `0.3`.

    Returns:
        A `keras_ptame.optimizers.OneCycle` schedule.

    Examples:
    ```python
    import keras
    from keras_ptame.recipes import one_cycle

    optimizer = keras.optimizers.AdamW(one_cycle(1e-3, total_steps=500))
    ```
    """
    # `OneCycle` checks the arguments.
    return OneCycle.learning_rate(peak, total_steps, warmup_fraction)


def one_cycle_adamw(peak, total_steps, weight_decay, warmup_fraction=0.3):
    """The authors' optimiser: PyTorch's `AdamW(amsgrad=True)` under `OneCycleLR`.

    A `CyclingAdamW` (PyTorch's update: epsilon `1e-8` after the bias
    correction) whose learning rate is `one_cycle(peak, total_steps,
    warmup_fraction)` and whose `beta_1` cycles as `OneCycleLR` cycles it
    (`0.95` down to `0.85` over the warm-up, back to `0.95`).

    Args:
        peak: float. The highest learning rate.
        total_steps: int. Number of optimiser steps of the whole training.
        weight_decay: float. Decoupled weight decay (PyTorch's, multiplied by
            the learning rate).
        warmup_fraction: float. Share of the steps spent warming up.
            Defaults to `0.3`.

    Returns:
        A `keras_ptame.optimizers.CyclingAdamW`.
    """
    return CyclingAdamW(
        learning_rate=one_cycle(peak, total_steps, warmup_fraction),
        beta_1=OneCycle.beta_1(int(total_steps), warmup_fraction),
        weight_decay=weight_decay,
        epsilon=EPSILON,
        amsgrad=True,
    )


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Loss coefficients and optimiser settings for one classifier.

    Training, as the authors' code trains: PyTorch's `AdamW` with amsgrad
    and epsilon `1e-8` (`CyclingAdamW`), PyTorch's `OneCycleLR` stepped per
    batch with its defaults (cosine warm-up over the first 30% of the steps
    from `learning_rate / 25` to `learning_rate`, cosine decay to
    `learning_rate / 25 / 1e4`, `beta_1` cycled 0.95 -> 0.85 -> 0.95),
    `epochs` epochs of batches of `batch_size` images of `image_size` pixels
    a side. The authors also train in bfloat16 mixed precision (Lightning's
    `bf16-mixed`); here that is the explainer's choice:
    `PTAME(..., dtype="mixed_bfloat16")`.
    """

    name: str
    weight_decay: float
    ce_coeff: float
    area_coeff: float
    smoothness_coeff: float
    border: float
    area_power: float
    smoothness_power: float = 2.0
    learning_rate: float = 1e-4
    epochs: int = 1
    batch_size: int = 32
    image_size: int = 224
    warmup_fraction: float = 0.3

    def __post_init__(self):
        # A NaN coefficient or rate would train a NaN explainer without a
        # word, and a string count ("2") would multiply as a string.
        if not isinstance(self.name, str):
            raise ValueError(f"`name` must be a string. Received: name={self.name!r}")
        for field in _AT_LEAST_ZERO:
            check_float(field, getattr(self, field), minimum=0)
        for field in _POSITIVE:
            check_float(field, getattr(self, field), above=0)
        for field in _COUNTS:
            check_positive_int(field, getattr(self, field))
        check_float("warmup_fraction", self.warmup_fraction, minimum=0, maximum=1)

    def loss(self):
        """The `PerturbationLoss` with this recipe's coefficients."""
        return PerturbationLoss(
            ce_coeff=self.ce_coeff,
            area_coeff=self.area_coeff,
            smoothness_coeff=self.smoothness_coeff,
            smoothness_power=self.smoothness_power,
            border=self.border,
            area_power=self.area_power,
        )

    def schedule(self, steps_per_epoch):
        """`one_cycle` to `learning_rate` over `epochs * steps_per_epoch` steps."""
        return one_cycle(
            self.learning_rate,
            self._total_steps(steps_per_epoch),
            warmup_fraction=self.warmup_fraction,
        )

    def _total_steps(self, steps_per_epoch):
        if steps_per_epoch is None or int(steps_per_epoch) <= 0:
            raise ValueError(
                "`steps_per_epoch` must be a positive integer. "
                f"Received: steps_per_epoch={steps_per_epoch!r}"
            )
        return int(steps_per_epoch) * self.epochs

    def optimizer(self, steps_per_epoch):
        """The authors' optimiser (`one_cycle_adamw`) with this recipe's
        learning rate, weight decay and warm-up over `epochs * steps_per_epoch`
        steps."""
        return one_cycle_adamw(
            self.learning_rate,
            self._total_steps(steps_per_epoch),
            weight_decay=self.weight_decay,
            warmup_fraction=self.warmup_fraction,
        )

    def to_json(self):
        """This recipe as JSON text (what `kp.tune` writes); `load` reads it."""
        return json.dumps(dataclasses.asdict(self), indent=2)


@dataclasses.dataclass(frozen=True)
class DefaultRecipe:
    """The package's training settings, for a classifier without a recipe.

    What `PTAME.compile()` uses given no optimizer and no loss
    (`keras_ptame/optimizers/default.py`: Keras' `AdamW(1e-3, amsgrad=True,
    epsilon=1e-8)` at a constant rate; `keras_ptame/losses/default.py`:
    `PerturbationLoss(smoothness_coeff=0.001)`; the README's "The method"
    says why), with a `Recipe`'s methods and run settings (one epoch, batch
    32, 224 pixels), so that code written for a recipe runs unchanged.
    """

    name: str
    epochs: int = 1
    batch_size: int = 32
    image_size: int = 224

    def loss(self):
        """`keras_ptame.losses.default.default_loss()`."""
        return default_loss()

    def optimizer(self, steps_per_epoch=None):
        """`keras_ptame.optimizers.default.default_optimizer()`: a constant
        rate, so `steps_per_epoch` (a `Recipe`'s argument) is not needed."""
        del steps_per_epoch
        return default_optimizer()


_RECIPES = {
    "vgg_16_imagenet": Recipe(
        name="vgg_16_imagenet",
        weight_decay=0.13324,
        ce_coeff=0.07278,
        area_coeff=0.977712,
        smoothness_coeff=0.0001,
        border=0.3,
        area_power=0.3,
    ),
    "resnet_50_imagenet": Recipe(
        name="resnet_50_imagenet",
        weight_decay=0.000242666,
        ce_coeff=0.161429,
        area_coeff=0.838571,
        smoothness_coeff=0.0,
        border=0.3,
        area_power=0.3,
    ),
    "vit_base_patch16_224_imagenet": Recipe(
        name="vit_base_patch16_224_imagenet",
        weight_decay=0.000133090,
        ce_coeff=0.131292,
        area_coeff=0.838571,
        smoothness_coeff=0.0,
        border=0.0,
        area_power=0.5,
    ),
}


def names():
    """The names of the known recipes."""
    return sorted(_RECIPES)


def load(path):
    """The `Recipe` in a JSON file written with `Recipe.to_json` (or `kp.tune`)."""
    with open(path) as file:
        try:
            fields = json.load(file)
        except ValueError as error:  # not JSON, or not UTF-8
            raise ValueError(
                f"The recipe {path!r} is not valid JSON: {error}"
            ) from None
    known = {field.name for field in dataclasses.fields(Recipe)}
    if not isinstance(fields, dict) or not set(fields) <= known:
        raise ValueError(
            f"{path!r} is not a recipe: expected a JSON object with fields of "
            f"{sorted(known)}."
        )
    required = [
        field.name
        for field in dataclasses.fields(Recipe)
        if field.default is dataclasses.MISSING and field.name not in fields
    ]
    if required:
        raise ValueError(f"The recipe {path!r} lacks the fields {required}.")
    try:
        return Recipe(**fields)
    except ValueError as error:
        raise ValueError(f"The recipe {path!r} is not valid: {error}") from None


def get(name):
    """The `Recipe` for a classifier preset name, e.g. `"resnet_50_imagenet"`,
    or in a `.json` file written by `kp.tune` (see `load`)."""
    if name.endswith(".json"):
        return load(name)
    if name not in _RECIPES:
        raise ValueError(
            f"Unknown recipe. Received: name={name!r}. Known recipes: {names()}"
        )
    return _RECIPES[name]


def for_classifier(name):
    """The `Recipe` of a classifier when there is one, else a `DefaultRecipe`.

    Args:
        name: str. A keras-hub preset name (`"resnet_50_imagenet"`), a
            preset folder, or a recipe's `.json` file (see `load`).

    Returns:
        `get(name)` for a known name or a `.json` file; otherwise
        `DefaultRecipe(name)`, the package's defaults, for any other
        classifier.

    Examples:
    ```python
    import keras_ptame as kp

    recipe = kp.recipes.for_classifier("efficientnet_b0_ra_imagenet")
    explainer.compile(
        optimizer=recipe.optimizer(steps_per_epoch=len(train_batches)),
        loss=recipe.loss(),
    )
    ```
    """
    if not isinstance(name, str):
        raise ValueError(f"`name` must be a string. Received: name={name!r}")
    if name.endswith(".json") or name in _RECIPES:
        return get(name)
    return DefaultRecipe(name)
