"""The offline end-to-end demo: data, classifier, auxiliary network, explainer.

`python -m keras_ptame.demo --output demo_output` (or `ptame demo`): on
synthetic shapes with known object masks, it trains a small CNN classifier, a
separate auxiliary CNN and the P-TAME explainer of the one over the other's
features, scores held-out maps against the objects (`metrics.json`,
`metrics.md`), and writes overlays (`explanations.png`, `examples.png`) and the
trained models (`classifier.keras`, `auxiliary.keras`, `ptame.keras`).

`--no-none-class` (`DemoConfig(none_class=False)`) trains the classifier
without its "none" class, with the squares drawn dark: a black image is then
predicted a square, the explainer needs no evidence to keep that prediction,
and the demo shows those maps flagged flat (`metrics.json`'s
`flagged_classes` and `per_class`, "FLAT" in `explanations.png`). A class
whose maps fail the removal check that `fit` runs (they do not carry the
class) is shown the same way: `misranked_classes`,
`per_class`'s `misranked_share`, "MISRANKED" in `explanations.png`.
"""

from keras_ptame.demo.config import (
    DARK_CLASS,
    DEFAULTS,
    EXPLAINER_WEIGHT_DECAY,
    LOSS,
    LOSS_KEYS,
    QUICK,
    DemoConfig,
)
from keras_ptame.demo.models import AUXILIARY_LAYERS, build_auxiliary, build_classifier
from keras_ptame.demo.phases import CENTRE_SIGMA, PHASES, run

__all__ = [
    "AUXILIARY_LAYERS",
    "CENTRE_SIGMA",
    "DARK_CLASS",
    "DEFAULTS",
    "EXPLAINER_WEIGHT_DECAY",
    "LOSS",
    "LOSS_KEYS",
    "PHASES",
    "QUICK",
    "DemoConfig",
    "build_auxiliary",
    "build_classifier",
    "run",
]
