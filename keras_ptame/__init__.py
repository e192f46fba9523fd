"""keras_ptame: P-TAME, a trained explainer for any image classifier, in Keras 3."""

from keras_ptame import (
    baselines,
    blackbox,
    callbacks,
    data,
    datasets,
    export,
    layers,
    metrics,
    optimizers,
    recipes,
    tuning,
    visualize,
)
from keras_ptame.evaluation import evaluate
from keras_ptame.layers.auxiliary_extractor import AuxiliaryExtractor
from keras_ptame.layers.backbone import Backbone
from keras_ptame.layers.mask_decoder import MaskDecoder
from keras_ptame.losses.perturbation_loss import PerturbationLoss
from keras_ptame.models.loading import load_explainer
from keras_ptame.models.ptame import PTAME
from keras_ptame.tuning import tune
from keras_ptame.version import __version__

__all__ = [
    "AuxiliaryExtractor",
    "Backbone",
    "MaskDecoder",
    "PTAME",
    "PerturbationLoss",
    "baselines",
    "blackbox",
    "callbacks",
    "data",
    "datasets",
    "evaluate",
    "export",
    "layers",
    "load_explainer",
    "metrics",
    "optimizers",
    "recipes",
    "tune",
    "tuning",
    "visualize",
    "__version__",
]
