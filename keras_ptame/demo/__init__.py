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

`save_tiny_presets` (and `save_tiny_resnet`, `save_tiny_vit`) write tiny
random keras-hub classifiers as local preset folders: offline stand-ins for
the hub's presets; `offline_stand_ins` saves them and mocks
tensorflow-datasets, what the notebooks run on offline (`OFFLINE = True`).
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
from keras_ptame.demo.offline import (
    OFFLINE_NUM_CLASSES,
    OfflineStandIns,
    offline_stand_ins,
)
from keras_ptame.demo.phases import CENTRE_SIGMA, DEMO_FILES, PHASES, run
from keras_ptame.demo.tiny_presets import (
    TINY_IMAGE_SIZE,
    TINY_NUM_CLASSES,
    save_tiny_presets,
    save_tiny_resnet,
    save_tiny_vit,
)

__all__ = [
    "AUXILIARY_LAYERS",
    "CENTRE_SIGMA",
    "DARK_CLASS",
    "DEFAULTS",
    "EXPLAINER_WEIGHT_DECAY",
    "LOSS",
    "LOSS_KEYS",
    "OFFLINE_NUM_CLASSES",
    "DEMO_FILES",
    "PHASES",
    "QUICK",
    "TINY_IMAGE_SIZE",
    "TINY_NUM_CLASSES",
    "DemoConfig",
    "OfflineStandIns",
    "build_auxiliary",
    "build_classifier",
    "offline_stand_ins",
    "run",
    "save_tiny_presets",
    "save_tiny_resnet",
    "save_tiny_vit",
]
