"""Pretrained weights from PyTorch, converted into Keras networks.

One converter per source, as keras-hub keeps one per architecture under
`utils/`: `torchvision` rebuilds torchvision classifiers (ResNet, VGG, ViT)
as keras-hub architectures with their weights; `ptame_checkpoint` imports
the explainers the P-TAME authors published. Between the layers, which they
build, and the models, whose `from_official_checkpoint` calls them.
"""
