"""The ImageNet statistics that torchvision's classifiers are normalised with."""

# Per-channel (RGB) mean and standard deviation, on a [0, 1] pixel scale.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
