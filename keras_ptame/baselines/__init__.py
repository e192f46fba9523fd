"""Baseline explainers to compare P-TAME against.

Each has `explain(images, classes=None)` returning numpy `(N, H, W)` maps in
[0, 1], like `keras_ptame.PTAME.explain`.
"""

from keras_ptame.baselines.centre_maps import CentreMaps
from keras_ptame.baselines.grad_cam import GradCAM
from keras_ptame.baselines.gradient_saliency import GradientSaliency
from keras_ptame.baselines.random_maps import RandomMaps
from keras_ptame.baselines.rise import RISE

__all__ = ["CentreMaps", "GradCAM", "GradientSaliency", "RISE", "RandomMaps"]
