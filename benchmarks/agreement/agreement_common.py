"""What the agreement script and its test share: the inputs, the rows, the table.

Everyone gets the same classifier, images and maps:

- the demo's small CNN (`keras_ptame.demo.build_classifier`): seeded random
  convolutions under a head fitted in closed form (ridge regression of the
  one-hot labels on 400 other shapes' features, `fit_head`): seconds, where
  training the CNN costs CI a minute, and its predictions turn as pixels are
  removed, so ROAD's accuracies are not all 1 (with random weights alone
  every image kept its class at every step);
- synthetic shapes (`keras_ptame.datasets.make_shapes`) with their object
  masks, explained for the classifier's own prediction;
- gradient maps (`keras_ptame.baselines.GradientSaliency`, one value per
  pixel, no ties) and uniform random maps.

pytorch-grad-cam and Quantus call the classifier as a `torch.nn.Module` on
NCHW tensors: under the PyTorch backend a Keras model is one, and
`channels_first_module` wraps it to permute to NHWC. So this runs only with
`KERAS_BACKEND=torch`, in `.venv-agreement` (`make agreement-env`).
"""

import dataclasses

import keras
import numpy as np

import keras_ptame.baselines as baselines
import keras_ptame.datasets as datasets
import keras_ptame.demo as demo
from keras_ptame.models.classifier_scores import as_backbone, probabilities

IMAGE_SIZE = 36  # H * W = 1296, divisible by the 12 deletion steps
NUM_CLASSES = 4
COUNT = 8
STEPS = 12
PERCENTAGES = (10, 30, 50, 70)
ORDERS = ("morf", "lerf")
TAGS = {"morf": "MoRF", "lerf": "LeRF"}


@dataclasses.dataclass
class Inputs:
    """The classifier, images, masks, explained classes and maps everyone uses."""

    classifier: keras.Model
    images: np.ndarray  # uint8 (N, H, W, 3)
    masks: np.ndarray  # bool (N, H, W)
    classes: np.ndarray  # int (N,), the classifier's predictions
    probs: np.ndarray  # float32 (N,), softmax probability of `classes`
    maps: dict  # name -> float32 (N, H, W)


def make_inputs(count=COUNT, image_size=IMAGE_SIZE, seed=0):
    """The shared inputs: same seed, same arrays and weights."""
    keras.utils.set_random_seed(seed)
    classifier = demo.build_classifier(image_size, NUM_CLASSES)
    fit_head(
        classifier, *datasets.make_shapes(400, image_size, NUM_CLASSES, seed + 2)[:2]
    )
    images, _, masks = datasets.make_shapes(
        count, image_size, NUM_CLASSES, seed=seed + 1
    )
    scores = probabilities(as_backbone(classifier), images)
    classes = scores.argmax(axis=-1)
    gradient = baselines.GradientSaliency(classifier).explain(images, classes)
    random = np.random.default_rng(seed).random(masks.shape, dtype=np.float32)
    return Inputs(
        classifier=classifier,
        images=images,
        masks=masks,
        classes=classes,
        probs=scores[np.arange(count), classes],
        maps={"gradient": np.asarray(gradient, np.float32), "random": random},
    )


def fit_head(classifier, images, labels, ridge=1.0, scale=10.0):
    """Sets the `"logits"` layer to a ridge regression on the features below it.

    The features are standardised, the centred one-hot labels regressed on
    them in closed form, and the logits scaled by `scale` so that softmax
    probabilities are not all near 1 / classes.
    """
    features = keras.Model(classifier.inputs, classifier.get_layer("logits").input)
    f = np.asarray(features.predict(images.astype("float32"), verbose=0), np.float64)
    mean, std = f.mean(axis=0), f.std(axis=0) + 1e-6
    z = np.hstack([(f - mean) / std, np.ones((len(f), 1))])
    targets = np.eye(NUM_CLASSES)[labels] - 1 / NUM_CLASSES
    w = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ targets)
    kernel = w[:-1] / std[:, None] * scale
    bias = (w[-1] - (mean / std) @ w[:-1]) * scale
    classifier.get_layer("logits").set_weights(
        [kernel.astype("float32"), bias.astype("float32")]
    )


def channels_first_module(classifier, gray=False):
    """The classifier as a `torch.nn.Module` on NCHW float tensors, in eval mode.

    With `gray=True` it takes one channel `(N, 1, H, W)` and repeats it three
    times: the classifier on gray images, for Quantus's ROAD, which handles
    one channel only (see `agreement_quantus.py`).
    """
    import torch

    class ChannelsFirst(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            if gray:
                x = x.expand(-1, 3, -1, -1)
            return self.model(x.permute(0, 2, 3, 1))

    return ChannelsFirst(classifier).eval()


def to_nchw(images):
    """float32 `(N, C, H, W)` from `(N, H, W, C)`."""
    return np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 3, 1, 2))


def collect_rows(inputs):
    """Every row: grad-cam's ROAD, then Quantus's metrics and similarities."""
    # Imported here: both modules import this one.
    import agreement_gradcam
    import agreement_quantus

    module = channels_first_module(inputs.classifier)
    return [
        *agreement_gradcam.gradcam_rows(inputs, module),
        *agreement_quantus.pixel_flipping_rows(inputs, module),
        *agreement_quantus.localisation_rows(inputs),
        *agreement_quantus.road_rows(inputs),
        *agreement_quantus.similarity_rows(inputs),
    ]


@dataclasses.dataclass
class Row:
    """One line of the table: a quantity from both sides and what explains a gap.

    `tolerance` is set for a quantity that must agree (its verdict is "agrees
    within ..."); otherwise `why` names the definitional difference.
    `ours` and `theirs` keep the numbers for the test.
    """

    key: str
    metric: str
    ours: object
    theirs: object
    difference: float
    why: str
    tolerance: float = None
    # Per-image values behind a row, for the test's pins.
    detail: dict = dataclasses.field(default_factory=dict)

    @property
    def agrees(self):
        return self.tolerance is not None and self.difference <= self.tolerance

    def verdict(self):
        if self.tolerance is None:
            if self.difference == 0:
                return f"equal on these inputs; {self.why}"
            return self.why
        if self.agrees:
            text = f"agrees within {self.tolerance:g}"
            return f"{text}; {self.why}" if self.why else text
        return f"DISAGREES (over {self.tolerance:g}): {self.why}"


def cell(value):
    """A table cell: numbers to 4 significant digits, sequences joined by '/'."""
    if isinstance(value, str):
        return value
    value = np.asarray(value)
    if value.ndim == 0:
        return _number(value.item())
    return " / ".join(_number(v) for v in value.ravel().tolist())


def _number(value):
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def markdown(rows):
    """The table: metric, keras_ptame, other library, difference, why."""
    lines = [
        "| metric | keras_ptame | other library | difference | why |",
        "|---|---|---|---:|---|",
    ]
    for row in rows:
        difference = "—" if row.difference is None else cell(row.difference)
        if isinstance(row.difference, float) and 0 < abs(row.difference) < 1e-3:
            difference = f"{row.difference:.2e}"
        cells = (
            row.metric,
            cell(row.ours),
            cell(row.theirs),
            difference,
            row.verdict(),
        )
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def max_abs(a, b):
    """Largest absolute difference; NaN where only one side is NaN somewhere."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    both = np.isnan(a) & np.isnan(b)
    if (np.isnan(a) ^ np.isnan(b)).any():
        return float("nan")
    gap = np.where(both, 0.0, np.abs(np.where(both, 0.0, a - b)))
    return float(gap.max()) if gap.size else 0.0
