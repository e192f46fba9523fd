"""What `kp.tune` searches: ranges of a `Recipe`'s loss and optimiser values.

The default ranges hold the paper's defaults (`PerturbationLoss()`, AdamW at
1e-4) and the authors' tuned recipes (`kp.recipes`), with room on both
sides. Under AdamW only the ratios of the loss coefficients matter much (Adam
divides the gradient by its own scale), so `ce_coeff` and `area_coeff` are
searched together on log scales: what the search learns is their ratio and
how strong the smoothness term is next to them.
"""

import dataclasses
import inspect
import math
import numbers

import keras

from keras_ptame.losses.perturbation_loss import PerturbationLoss
from keras_ptame.recipes import Recipe
from keras_ptame.recipes import get as get_recipe


@dataclasses.dataclass(frozen=True)
class Range:
    """A searched interval of one setting.

    Args:
        low: float. The smallest value tried.
        high: float. The largest value tried.
        log: bool. Whether values are drawn on a log scale (for rates and
            coefficients spanning decades). Defaults to `True`.
    """

    low: float
    high: float
    log: bool = True

    def __post_init__(self):
        finite = math.isfinite(self.low) and math.isfinite(self.high)
        if not (finite and 0 <= self.low < self.high) or (self.log and self.low <= 0):
            raise ValueError(
                "A range needs finite 0 <= low < high (and low > 0 on a log scale). "
                f"Received: low={self.low}, high={self.high}, log={self.log}"
            )

    def clip(self, value):
        """`value` moved into the range."""
        return min(max(float(value), self.low), self.high)


# Rates, decays and coefficients span decades: log scales. The area power is
# an exponent in (0, 1]: a linear one.
SEARCH_SPACE = {
    "ce_coeff": Range(0.03, 3.0),
    "area_coeff": Range(0.1, 3.0),
    "smoothness_coeff": Range(1e-5, 0.03),
    "area_power": Range(0.2, 1.0, log=False),
    "learning_rate": Range(1e-5, 1e-2),
    "weight_decay": Range(1e-5, 0.3),
}


def tunable_names():
    """The `Recipe` fields a search may cover: its float settings."""
    return sorted(
        field.name for field in dataclasses.fields(Recipe) if field.type is float
    )


def default_recipe():
    """The paper's defaults as a `Recipe`: `kp.tune`'s starting point.

    `PerturbationLoss()`'s coefficients (the authors' class defaults) and AdamW
    at the paper's 1e-4 with Keras' default weight decay. (`PTAME.compile`'s
    own defaults differ: `keras_ptame.optimizers.default`,
    `keras_ptame.losses.default`.)
    """
    fields = {field.name for field in dataclasses.fields(Recipe)}
    loss = {
        key: value
        for key, value in PerturbationLoss().get_config().items()
        if key in fields
    }
    decay = inspect.signature(keras.optimizers.AdamW).parameters["weight_decay"]
    return Recipe(
        name="defaults", weight_decay=decay.default, learning_rate=1e-4, **loss
    )


def as_recipe(recipe):
    """`recipe` as a `Recipe`: itself, a known name, or `None` for the defaults."""
    if recipe is None:
        return default_recipe()
    if isinstance(recipe, str):
        return get_recipe(recipe)
    if not isinstance(recipe, Recipe):
        raise ValueError(
            "`recipe` must be a `keras_ptame.recipes.Recipe`, a recipe name or "
            f"None. Received: recipe={recipe!r}"
        )
    return recipe


def resolve_space(space, base):
    """Splits the searched settings from the fixed ones.

    Args:
        space: optional dict name -> `Range`, `(low, high)`,
            `(low, high, "linear")` or a number (fixed), overriding
            `SEARCH_SPACE` name by name; `None` keeps `SEARCH_SPACE`.
        base: the `Recipe` the unsearched settings come from.

    Returns:
        A tuple `(ranges, base)`: dict name -> `Range`, and `base` with the
        fixed values written in.
    """
    if space is not None and not isinstance(space, dict):
        raise ValueError(f"`space` must be a dict or None. Received: space={space!r}")
    space = space or {}
    ranges, fixed = {}, {}
    for name, value in {**SEARCH_SPACE, **space}.items():
        checked = check_setting(name, value, base) if name in space else value
        if isinstance(checked, Range):
            ranges[name] = checked
        else:
            fixed[name] = checked
    if not ranges:
        raise ValueError("`space` fixes every setting: nothing is left to search.")
    return ranges, dataclasses.replace(base, **fixed)


def check_setting(name, value, base):
    """One entry of `space`, checked: a `Range`, or a float (fixed).

    The name must be a float field of `Recipe`; a fixed value, and both ends
    of a range, finite, not negative and accepted by `base`'s loss and
    optimiser, so that no trial fails on them.
    """
    known = tunable_names()
    if name not in known:
        raise ValueError(
            f"Unknown setting in `space`. Received: {name!r}. Known: {known}"
        )
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        checked = float(value)
        values = (checked,)
    else:
        checked = _as_range(name, value)
        values = (checked.low, checked.high)
    for each in values:
        _check_value(name, each, base)
    return checked


def _check_value(name, value, base):
    problem = None
    if not (math.isfinite(value) and value >= 0):
        problem = "a setting must be a finite number >= 0"
    else:
        try:
            recipe = dataclasses.replace(base, **{name: value})
            recipe.loss()
            recipe.optimizer(steps_per_epoch=1)
        except ValueError as error:
            problem = str(error)
    if problem:
        raise ValueError(f"`space[{name!r}]` cannot hold {value!r}: {problem}")


def _as_range(name, value):
    if isinstance(value, Range):
        return value
    if isinstance(value, (tuple, list)) and len(value) in (2, 3):
        scale = value[2] if len(value) == 3 else "log"
        if scale not in ("log", "linear"):
            raise ValueError(
                f"The scale of `{name}` must be 'log' or 'linear'. Received: {scale!r}"
            )
        try:
            return Range(float(value[0]), float(value[1]), log=scale == "log")
        except (TypeError, ValueError) as error:
            raise ValueError(f"`space[{name!r}]`: {error}") from None
    raise ValueError(
        f"`space[{name!r}]` must be a Range, (low, high), (low, high, 'linear') "
        f"or a number. Received: {value!r}"
    )


def parse_space(text):
    """One `NAME=LOW:HIGH[:linear]` or `NAME=VALUE` (the CLI's `--space`).

    Returns:
        A tuple `(name, value)`: a `(low, high[, scale])` tuple or a float.
    """
    name, _, value = text.partition("=")
    parts = value.split(":")
    try:
        numbers_ = [float(part) for part in parts[:2]]
    except ValueError:
        numbers_ = []
    if (
        not name
        or not numbers_
        or len(parts) > 3
        or not all(map(math.isfinite, numbers_))
    ):
        raise ValueError(
            "A space entry reads NAME=LOW:HIGH, NAME=LOW:HIGH:linear or "
            f"NAME=VALUE. Received: {text!r}"
        )
    if len(parts) == 1:
        return name.strip(), numbers_[0]
    return name.strip(), (*numbers_, *parts[2:])


def trial_recipe(values, base, epochs, batch_size, image_size=None, name=None):
    """The `Recipe` one trial trains with: `base` with `values` written in."""
    settings = {key: float(value) for key, value in values.items()}
    if image_size is not None:
        settings["image_size"] = int(image_size)
    return dataclasses.replace(
        base,
        name=name or base.name,
        epochs=int(epochs),
        batch_size=int(batch_size),
        **settings,
    )
