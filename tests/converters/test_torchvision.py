"""Torchvision weights in keras-hub networks (`keras_ptame/converters/torchvision.py`).

Tiny torch networks in torchvision's layout (its module names, so its
state-dict keys) are ported and must give torch's outputs, on every backend.
"""

import numpy as np
import pytest

from keras_ptame.converters import torchvision as checkpoints
from keras_ptame.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD
from tests.helpers import keras_hub_before, to_numpy

torch = pytest.importorskip("torch", reason="the reference networks are torch's")
pytest.importorskip("keras_hub", reason="the ported networks are keras-hub's")
nn = torch.nn

SIZE = 32
NUM_CLASSES = 5


class BasicBlock(nn.Module):
    """torchvision's ResNet `BasicBlock`, with its attribute names."""

    def __init__(self, inputs, filters, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, filters, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)
        self.downsample = None
        if stride != 1 or inputs != filters:
            self.downsample = nn.Sequential(
                nn.Conv2d(inputs, filters, 1, stride, bias=False),
                nn.BatchNorm2d(filters),
            )

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class ResNet(nn.Module):
    """torchvision's `ResNet` with one basic block per stage, narrow stages."""

    def __init__(self, widths=(64, 8, 8, 8)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        inputs = 64
        for stage, (width, stride) in enumerate(zip(widths, (1, 2, 2, 2)), 1):
            setattr(
                self, f"layer{stage}", nn.Sequential(BasicBlock(inputs, width, stride))
            )
            inputs = width
        self.fc = nn.Linear(inputs, NUM_CLASSES)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class VGG(nn.Module):
    """torchvision's `VGG` (`features`, `classifier`) with blocks of 1 and 2 convolutions."""

    def __init__(self, hidden=6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = SIZE // 4
        self.classifier = nn.Sequential(
            nn.Linear(8 * side * side, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, NUM_CLASSES),
        )

    def forward(self, x):
        # torchvision pools to 7x7 here: at the size the network is made for,
        # a no-op; flattened channels first.
        return self.classifier(torch.flatten(self.features(x), 1))


def _random(module, seed):
    """`module` in eval mode with random weights, BatchNorm statistics included."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=generator) * 0.3
                if name.endswith("running_var"):
                    values = 0.5 + values.abs()
                tensor.copy_(values)
    return module.eval()


def _state_dict(module):
    return {key: value.numpy() for key, value in module.state_dict().items()}


def _images(count=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (count, SIZE, SIZE, 3)).astype("float32")


def _normalised(images):
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    return ((images / 255.0 - mean) / std).astype("float32")


@pytest.mark.parametrize("network", [ResNet, VGG], ids=["resnet", "vgg"])
def test_a_ported_network_gives_torch_s_logits(network):
    if network is VGG and keras_hub_before((0, 27)):
        pytest.skip("keras-hub before 0.27 has no torchvision-like VGG head")
    module = _random(network(), seed=1)
    weights = checkpoints.StateDict(_state_dict(module))
    model = checkpoints.torchvision_classifier(weights, image_size=SIZE)
    weights.check_all_used()
    x = _normalised(_images())
    with torch.no_grad():
        expected = module(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(to_numpy(model(x)), expected, rtol=1e-4, atol=1e-4)


def test_the_converter_is_torchvision_s_normalisation():
    images = _images()
    converter = checkpoints.imagenet_converter()
    np.testing.assert_allclose(
        to_numpy(converter(images)), _normalised(images), rtol=1e-5, atol=1e-5
    )


def test_a_key_no_part_of_the_network_took_is_named():
    state = _state_dict(_random(ResNet(), seed=2))
    state["layer1.0.extra.weight"] = np.zeros(3, "float32")
    weights = checkpoints.StateDict(state, source="resnet.pth")
    checkpoints.torchvision_classifier(weights, image_size=SIZE)
    with pytest.raises(ValueError, match=r"'layer1\.0\.extra\.weight' of resnet\.pth"):
        weights.check_all_used()


def test_a_wrong_shape_or_a_missing_key_is_named():
    state = _state_dict(_random(ResNet(), seed=3))
    state["conv1.weight"] = np.zeros((64, 3, 3, 3), "float32")
    with pytest.raises(ValueError, match=r"'conv1\.weight'.*\(64, 3, 3, 3\)"):
        checkpoints.torchvision_classifier(checkpoints.StateDict(state), SIZE)
    state = _state_dict(_random(ResNet(), seed=3))
    del state["layer2.0.downsample.1.running_mean"]
    with pytest.raises(ValueError, match=r"layer2\.0\.downsample\.1\.running_mean"):
        checkpoints.torchvision_classifier(checkpoints.StateDict(state), SIZE)


def test_an_unknown_layout_is_refused_by_key():
    weights = checkpoints.StateDict({"stem.weight": np.zeros((8, 3, 3, 3))})
    with pytest.raises(ValueError, match="not a torchvision ResNet, VGG or ViT.*stem"):
        checkpoints.torchvision_classifier(weights)
