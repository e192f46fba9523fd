"""The demo's settings: one frozen `DemoConfig`."""

import dataclasses
import os

import numpy as np

from keras_ptame.callbacks import LOGGED_COUNT
from keras_ptame.datasets import synthetic
from keras_ptame.losses.perturbation_loss import PerturbationLoss
from keras_ptame.models.fills import FILL_NAMES, check_fill

# Without a "none" class, the shape drawn near black (class 0, "square"): a
# black fill then looks like a square whose object was removed.
DARK_CLASS = 0

# The held-out images' seed offset: a stream that shares no draw with training.
HELD_OUT_SEED_OFFSET = 10_000

# The explainer's decoupled weight decay under the authors' optimiser
# (`one_cycle_adamw`): Keras' `AdamW` default, which the demo trained with
# before.
EXPLAINER_WEIGHT_DECAY = 0.004

# Tiny sizes for a pipeline check in seconds; its figures mean nothing.
QUICK = {
    **dict(image_size=32, train_count=64, test_count=16, batch_size=16, grid_count=8),
    **dict.fromkeys(("classifier_epochs", "auxiliary_epochs", "explainer_epochs"), 1),
}


def _setting(default, help, loss=False):
    return dataclasses.field(default=default, metadata={"help": help, "loss": loss})


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The demo's settings: data, training, the explainer's loss, the seed.

    The defaults reach a pointing game above 0.9 in a few minutes on two CPU
    cores. Each field's one-line description is its `metadata["help"]` (see
    `dataclasses.fields(DemoConfig)`); the fields with `metadata["loss"]` are
    the `PerturbationLoss` arguments. Bad values raise a `ValueError` here,
    before anything is trained or written.

    Examples:
    ```python
    from keras_ptame import demo

    demo.run("demo_output", config=demo.DemoConfig(train_count=600))
    demo.DemoConfig.quick()   # tiny sizes, for a check in seconds
    ```
    """

    image_size: int = _setting(64, "height and width of the images, in pixels")
    num_classes: int = _setting(6, "shape classes, 2 to 8 (a 'none' class is added)")
    none_class: bool = _setting(
        True,
        "give the classifier a 'none' class of blank images; without it "
        "(--no-none-class) the squares are drawn dark, a black image is "
        "predicted a square, and the squares' maps come back flagged flat",
    )
    train_count: int = _setting(5000, "number of training images")
    test_count: int = _setting(1000, "number of held-out images scored")
    classifier_epochs: int = _setting(5, "training epochs of the classifier")
    auxiliary_epochs: int = _setting(4, "training epochs of the auxiliary network")
    explainer_epochs: int = _setting(3, "training epochs of the explainer")
    batch_size: int = _setting(32, "images per training batch")
    # Higher than the paper's 1e-4: the explainer trains for ~470 steps here,
    # not a whole ImageNet epoch.
    explainer_learning_rate: float = _setting(2e-3, "explainer's peak learning rate")
    fill: str = _setting("black", f"what replaces masked pixels, one of {FILL_NAMES}")
    grid_count: int = _setting(24, "held-out images drawn in explanations.png")
    ce_coeff: float = _setting(1.5, "weight of the cross-entropy term", True)
    area_coeff: float = _setting(2.0, "weight of the area term", True)
    # A tenth of the paper's: on 16x16 maps of small objects, 0.01 made the
    # smoothness term the largest part of the loss and flattened the maps
    # (pointing game 0.62-0.80 on two seeds against 0.82-0.84 with 0.001 or 0).
    smoothness_coeff: float = _setting(0.001, "weight of the smoothness term", True)
    smoothness_power: float = _setting(2.0, "power of the smoothness term", True)
    border: float = _setting(0.3, "border of the smoothness term", True)
    area_power: float = _setting(0.3, "power of the area term", True)
    seed: int = _setting(0, "seed of the data and of the weights")
    log_maps: str = _setting(
        None,
        f"folder for the explainer's maps of the first {LOGGED_COUNT} held-out "
        "images after every epoch of its training (maps_epoch_001.png and "
        ".csv, TensorBoard summaries if TensorBoard is installed; "
        "kp.callbacks.MapsLogger)",
    )

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, minimum = getattr(self, field.name), int(field.name != "seed")
            if field.type is int and (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or value < minimum
            ):
                raise ValueError(
                    f"`{field.name}` must be an integer >= {minimum}. "
                    f"Received: {field.name}={value!r}"
                )
        if not isinstance(self.none_class, bool):
            raise ValueError(
                f"`none_class` must be True or False. Received: {self.none_class!r}"
            )
        if self.train_count < self.batch_size:
            raise ValueError(
                "`train_count` must be at least `batch_size`. Received: "
                f"train_count={self.train_count}, batch_size={self.batch_size}"
            )
        check_fill(self.fill)
        if self.log_maps is not None and not isinstance(
            self.log_maps, (str, os.PathLike)
        ):
            raise ValueError(
                f"`log_maps` must be a folder path. Received: {self.log_maps!r}"
            )
        if not self.explainer_learning_rate > 0:
            rate = self.explainer_learning_rate
            raise ValueError(f"`explainer_learning_rate` must be > 0. Received: {rate}")
        # The generator's and the loss' own checks, before anything runs.
        synthetic.make_shapes(
            0, image_size=self.image_size, num_classes=self.num_classes
        )
        PerturbationLoss(**self.loss_settings())

    @classmethod
    def quick(cls, **settings):
        """Tiny sizes and one epoch each (`QUICK`), to check the pipeline in seconds."""
        return cls().replace(**{**QUICK, **settings})

    def replace(self, **settings):
        """A copy with `settings` changed."""
        known = [field.name for field in dataclasses.fields(self)]
        for key, value in settings.items():
            if key not in known:
                raise ValueError(
                    f"Unknown demo setting. Received: {key}={value!r}. Known: {known}"
                )
        return dataclasses.replace(self, **settings)

    def draw_shapes(self, held_out=False):
        """The demo's images of shapes, with their labels and object masks.

        Args:
            held_out: bool. The held-out images (`test_count` of them, seed
                `seed + HELD_OUT_SEED_OFFSET`) rather than the training images
                (`train_count`, seed `seed`). Defaults to `False`.

        Returns:
            `(images, labels, masks)` as `synthetic.make_shapes` returns them;
            without a "none" class, the squares (`DARK_CLASS`) drawn dark.
        """
        count, seed = self.train_count, self.seed
        if held_out:
            count, seed = self.test_count, self.seed + HELD_OUT_SEED_OFFSET
        return synthetic.make_shapes(
            count,
            seed=seed,
            image_size=self.image_size,
            num_classes=self.num_classes,
            dark_classes=() if self.none_class else (DARK_CLASS,),
        )

    def settings(self):
        """The data and training settings, as a dict (no loss, no seed, no
        `log_maps` folder)."""
        fields = dataclasses.asdict(self)
        left_out = (*LOSS_KEYS, "seed", "log_maps")
        return {k: v for k, v in fields.items() if k not in left_out}

    def loss_settings(self):
        """The `PerturbationLoss` arguments, as a dict."""
        return {key: getattr(self, key) for key in LOSS_KEYS}


LOSS_KEYS = tuple(f.name for f in dataclasses.fields(DemoConfig) if f.metadata["loss"])
# The defaults as dicts, for code written before `DemoConfig`.
DEFAULTS = DemoConfig().settings()
LOSS = DemoConfig().loss_settings()
