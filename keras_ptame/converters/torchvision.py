"""Torchvision networks in Keras: keras-hub architectures, torchvision weights.

PyTorch checkpoints hold networks in torchvision's layout (`conv1`,
`layer1.0.conv1`, `features.0`, `encoder.layers.encoder_layer_0`, ...). This
module reads such a state dict and rebuilds the network as the matching
keras-hub architecture with the same weights, on any Keras backend:

- ResNet (v1.5, basic or bottleneck blocks: ResNet-18/34/50/101/152) as a
  `keras_hub.models.ResNetBackbone`, whose padding follows torchvision's;
- VGG (without batch normalisation) as a `keras_hub.models.VGGBackbone` with
  the flattening head of `VGGImageClassifier`;
- ViT (ViT-B/L/H) as a `keras_hub.models.ViTBackbone` with its token head.

The architecture is read from the key names and weight shapes; a key that
fits none of them is refused by name. The networks read ImageNet-normalised
images; `imagenet_converter()` is the matching `layers.preprocessors.ImagePreprocessor`
(raw pixels in [0, 255] in). Nothing is downloaded.
"""

import keras
import numpy as np

from keras_ptame.layers.preprocessors import ImagePreprocessor
from keras_ptame.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD

# torchvision's ViT variants: the head count is not in the weights.
_VIT_HEADS = {768: 12, 1024: 16, 1280: 16}


class StateDict:
    """Named numpy weights of a PyTorch state dict, each used at most once.

    `under(prefix)` gives a view of the keys below `prefix` that shares the
    record of used keys, so that `check_all_used()` can name a key that no
    part of a network took.

    Args:
        arrays: dict of str to numpy arrays.
        prefix: str. The prefix this view reads under. Defaults to `""`.
        source: str. What the weights came from, for the messages. Defaults
            to `"the checkpoint"`.
    """

    def __init__(self, arrays, prefix="", used=None, assigned=None, source=None):
        self.arrays = arrays
        self.prefix = prefix
        self.source = source or "the checkpoint"
        self.used = set() if used is None else used
        self.assigned = set() if assigned is None else assigned

    def under(self, prefix):
        return StateDict(
            self.arrays, self.prefix + prefix, self.used, self.assigned, self.source
        )

    def names(self):
        """The keys below this view's prefix, without it."""
        start = len(self.prefix)
        return [key[start:] for key in self.arrays if key.startswith(self.prefix)]

    def __contains__(self, name):
        return self.prefix + name in self.arrays

    def shape(self, name):
        """The shape of weight `name`, without using it."""
        return tuple(int(n) for n in self.take(name, use=False).shape)

    def take(self, name, shape=None, use=True):
        key = self.prefix + name
        if key not in self.arrays:
            raise ValueError(
                f"The key {key!r}, which this architecture needs, is not in "
                f"{self.source}. It is not in the layout expected."
            )
        value = self.arrays[key]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"The key {key!r} of {self.source} does not fit: shape "
                f"{tuple(value.shape)}, expected {tuple(shape)}."
            )
        if use:
            self.used.add(key)
        return value

    def assign(self, variable, value, name, reshape=False):
        """Sets a Keras `variable` to `value`, converted from weight `name`."""
        if reshape and np.size(value) == np.prod(variable.shape):
            value = np.reshape(value, tuple(variable.shape))
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(
                f"The key {self.prefix + name!r} of {self.source} does not fit: "
                f"shape {value.shape} after conversion, the Keras weight "
                f"{variable.path!r} has {tuple(variable.shape)}."
            )
        variable.assign(value.astype(variable.dtype))
        self.assigned.add(id(variable))

    def check_assigned(self, model):
        """Raises a `ValueError` naming a weight of `model` left unset."""
        unset = [v.path for v in model.weights if id(v) not in self.assigned]
        if unset:
            raise ValueError(
                f"There are no weights under {self.prefix!r} in {self.source} for "
                f"{len(unset)} weights of the Keras network, e.g. {unset[:3]}. It "
                "is not in the layout expected."
            )

    def check_all_used(self):
        unused = [k for k in self.arrays if k.startswith(self.prefix)]
        unused = [k for k in unused if k not in self.used]
        if unused:
            raise ValueError(
                f"The key {unused[0]!r} of {self.source} does not fit the "
                f"architecture read from it ({len(unused)} such keys: "
                f"{unused[:5]}). It is not in the layout expected."
            )


def imagenet_converter(name="imagenet_normalization"):
    """The torchvision input normalisation, as a layer that runs on the device.

    Raw pixels in [0, 255] in; `(pixels / 255 - mean) / std` out, with
    torchvision's ImageNet mean and standard deviation. No resizing. A
    `layers.preprocessors.ImagePreprocessor` rather than a keras-hub `ImageConverter`,
    which TensorFlow would run on the CPU.
    """
    return ImagePreprocessor(
        scale=[1 / (255 * s) for s in IMAGENET_STD],
        offset=[-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)],
        name=name,
    )


def torchvision_classifier(weights, image_size=224, name="classifier"):
    """Rebuilds a torchvision image classifier (ResNet, VGG or ViT).

    Args:
        weights: `StateDict` view of the classifier's keys (`conv1.weight`,
            `features.0.weight`, `conv_proj.weight`, ...).
        image_size: int. The square input size. Defaults to `224`.
        name: str. The model's name. Defaults to `"classifier"`.

    Returns:
        A functional `keras.Model`: ImageNet-normalised images
        `(B, image_size, image_size, 3)` in, logits out.
    """
    if "layer1.0.conv1.weight" in weights and "fc.weight" in weights:
        return resnet_classifier(weights, image_size, name)
    if "features.0.weight" in weights and "classifier.0.weight" in weights:
        return vgg_classifier(weights, image_size, name)
    if "conv_proj.weight" in weights and "heads.head.weight" in weights:
        return vit_classifier(weights, image_size, name)
    names = weights.names()
    key = weights.prefix + (names[0] if names else "")
    raise ValueError(
        f"The classifier's weights in {weights.source} are not a torchvision "
        f"ResNet, VGG or ViT: the key {key!r} does not fit any of them."
    )


def port_conv(layer, weights, name):
    """Copies a torch `Conv2d` (`name.weight` (O, I, kh, kw), `name.bias`)."""
    kernel = weights.take(f"{name}.weight")
    weights.assign(layer.kernel, np.transpose(kernel, (2, 3, 1, 0)), name)
    if layer.use_bias:
        weights.assign(layer.bias, weights.take(f"{name}.bias"), name)


def port_dense(layer, weights, name, kernel=None):
    """Copies a torch `Linear` (`name.weight` (O, I), `name.bias`)."""
    if kernel is None:
        kernel = weights.take(f"{name}.weight").T
    weights.assign(layer.kernel, kernel, name)
    weights.assign(layer.bias, weights.take(f"{name}.bias"), name)


def port_batch_norm(layer, weights, name):
    """Copies a torch `BatchNorm2d`; its `num_batches_tracked` is not needed."""
    pairs = (
        (layer.gamma, "weight"),
        (layer.beta, "bias"),
        (layer.moving_mean, "running_mean"),
        (layer.moving_variance, "running_var"),
    )
    for variable, suffix in pairs:
        weights.assign(variable, weights.take(f"{name}.{suffix}"), name)
    if f"{name}.num_batches_tracked" in weights:
        weights.take(f"{name}.num_batches_tracked")


def port_layer_norm(layer, weights, name):
    weights.assign(layer.gamma, weights.take(f"{name}.weight"), name)
    weights.assign(layer.beta, weights.take(f"{name}.bias"), name)


# === ResNet ===


def resnet_backbone(weights, image_size=224, name="resnet"):
    """Rebuilds a torchvision ResNet's convolutional part.

    Args:
        weights: `StateDict` view of the ResNet's keys (`conv1.weight`,
            `bn1.*`, `layer1.0.conv1.weight`, ...).
        image_size: int or `None`. The square input size, or `None` for any.
            Defaults to `224`.
        name: str. The model's name. Defaults to `"resnet"`.

    Returns:
        A `keras_hub.models.ResNetBackbone` with the weights; its
        `pyramid_outputs` `P2..P5` are torchvision's `layer1..layer4`.
    """
    import keras_hub

    stem = weights.take("conv1.weight", (64, 3, 7, 7))
    bottleneck = "layer1.0.conv3.weight" in weights
    blocks = [_count_blocks(weights, f"layer{stage}.") for stage in range(1, 5)]
    if "layer5.0.conv1.weight" in weights or 0 in blocks:
        raise ValueError(
            "A torchvision ResNet has four stages `layer1..layer4`. Received: "
            f"blocks per stage {blocks} under {weights.prefix!r}"
        )
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[stem.shape[0]],
        input_conv_kernel_sizes=[stem.shape[-1]],
        stackwise_num_filters=[
            weights.shape(f"layer{s}.0.conv1.weight")[0] for s in range(1, 5)
        ],
        stackwise_num_blocks=blocks,
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="bottleneck_block" if bottleneck else "basic_block",
        image_shape=(image_size, image_size, 3),
        data_format="channels_last",
        name=name,
    )
    _port_resnet(backbone, weights, bottleneck)
    weights.check_assigned(backbone)
    return backbone


def _count_blocks(weights, stage):
    count = 0
    while f"{stage}{count}.conv1.weight" in weights:
        count += 1
    return count


def _port_resnet(backbone, weights, bottleneck):
    def port(keras_name, conv, norm):
        port_conv(backbone.get_layer(f"{keras_name}_conv"), weights, conv)
        port_batch_norm(backbone.get_layer(f"{keras_name}_bn"), weights, norm)

    port("conv1", "conv1", "bn1")
    for stage, blocks in enumerate(backbone.stackwise_num_blocks):
        for block in range(blocks):
            keras_name = f"stack{stage}_block{block}"
            torch_name = f"layer{stage + 1}.{block}"
            if f"{torch_name}.downsample.0.weight" in weights:
                down = f"{torch_name}.downsample"
                port(f"{keras_name}_0", f"{down}.0", f"{down}.1")
            for i in range(1, 4 if bottleneck else 3):
                port(
                    f"{keras_name}_{i}", f"{torch_name}.conv{i}", f"{torch_name}.bn{i}"
                )


def resnet_classifier(weights, image_size=224, name="classifier"):
    """Rebuilds a torchvision ResNet classifier (average pooling, `fc`)."""
    import keras_hub

    backbone = resnet_backbone(weights, image_size, name=f"{name}_backbone")
    num_classes = weights.shape("fc.weight")[0]
    task = keras_hub.models.ResNetImageClassifier(
        backbone, num_classes=num_classes, activation=None
    )
    port_dense(task.output_dense, weights, "fc")
    return _functional(task, weights, name)


def _functional(task, weights, name):
    # A plain functional model over the task's layers and weights, as
    # `keras_ptame.layers.pretrained_networks` does: a deserialized keras-hub
    # task compiles itself, and a saved explainer holding one would come back
    # with the task's unbuilt metrics.
    weights.check_assigned(task)
    return keras.Model(task.inputs, task.outputs, name=name)


# === VGG ===


def vgg_classifier(weights, image_size=224, name="classifier"):
    """Rebuilds a torchvision VGG classifier (without batch normalisation).

    torchvision average-pools the last features to 7x7 before flattening;
    at the input size the classifier was made for (224 for VGG-16) that
    pooling changes nothing, and the input size is fixed to it.
    """
    import keras_hub

    # keras-hub's VGG head is torchvision's (flatten, then dense layers) from
    # 0.27 on; before, convolutions stand in its place.
    if tuple(int(part) for part in keras_hub.__version__.split(".")[:2]) < (0, 27):
        raise ImportError(
            "Porting a torchvision VGG needs keras-hub 0.27 or later, whose "
            "`VGGImageClassifier` has torchvision's dense head. Received: "
            f"keras-hub {keras_hub.__version__}. `pip install 'keras-hub>=0.27,<0.31'` "
            "keeps a TensorFlow 2.19 (keras-hub 0.31 and later need 2.20)."
        )
    convs = _vgg_convs(weights)
    filters = [weights.shape(f"features.{b[0]}.weight")[0] for b in convs]
    hidden, flat = weights.shape("classifier.0.weight")
    side = int(round((flat / filters[-1]) ** 0.5))
    if side * side * filters[-1] != flat or side * 2 ** len(convs) != image_size:
        raise ValueError(
            f"The VGG's key {weights.prefix + 'classifier.0.weight'!r} (shape "
            f"{(hidden, flat)}) needs {side * 2 ** len(convs)}x"
            f"{side * 2 ** len(convs)} images. Received: image_size={image_size}"
        )
    backbone = keras_hub.models.VGGBackbone(
        stackwise_num_repeats=[len(b) for b in convs],
        stackwise_num_filters=filters,
        image_shape=(image_size, image_size, 3),
        name=f"{name}_backbone",
    )
    num_classes = weights.shape("classifier.6.weight")[0]
    task = keras_hub.models.VGGImageClassifier(
        backbone,
        num_classes=num_classes,
        pooling="flatten",
        pooling_hidden_dim=hidden,
        activation=None,
    )
    _port_vgg(backbone, task.head, weights, convs, side)
    return _functional(task, weights, name)


def _vgg_convs(weights):
    """torchvision `features` indices of the convolutions, grouped by block."""
    names = weights.names()
    if any(n.startswith("features.") and n.endswith("running_mean") for n in names):
        bad = next(n for n in names if n.endswith("running_mean"))
        raise ValueError(
            f"The key {weights.prefix + bad!r} of {weights.source} does not fit: "
            "VGG with batch normalisation is not supported."
        )
    indices = sorted(
        {
            int(n.split(".")[1])
            for n in names
            if n.startswith("features.") and n.endswith(".weight")
        }
    )
    blocks = [[indices[0]]]
    for previous, index in zip(indices, indices[1:]):
        # conv, ReLU, conv: 2 apart within a block; conv, ReLU, pool, conv: 3.
        if index - previous == 2:
            blocks[-1].append(index)
        elif index - previous == 3:
            blocks.append([index])
        else:
            raise ValueError(
                f"The key {weights.prefix}features.{index}.weight of "
                f"{weights.source} does not fit the torchvision VGG layout."
            )
    return blocks


def _port_vgg(backbone, head, weights, convs, side):
    for block, indices in enumerate(convs):
        for repeat, index in enumerate(indices):
            layer = backbone.get_layer(f"block{block + 1}_conv{repeat + 1}")
            port_conv(layer, weights, f"features.{index}")
    # torch flattens (C, H, W), Keras (H, W, C).
    first = weights.take("classifier.0.weight")
    first = first.reshape(first.shape[0], -1, side, side).transpose(2, 3, 1, 0)
    port_dense(
        head.get_layer("fc1"),
        weights,
        "classifier.0",
        first.reshape(-1, first.shape[-1]),
    )
    port_dense(head.get_layer("fc2"), weights, "classifier.3")
    port_dense(head.get_layer("predictions"), weights, "classifier.6")


# === ViT ===


def vit_classifier(weights, image_size=224, name="classifier"):
    """Rebuilds a torchvision ViT classifier (class token, `heads.head`)."""
    import keras_hub

    backbone, mlp = _vit_backbone(weights, image_size, f"{name}_backbone")
    pre_logits = "heads.pre_logits.weight" in weights
    task = keras_hub.models.ViTImageClassifier(
        backbone,
        num_classes=weights.shape("heads.head.weight")[0],
        intermediate_dim=(
            weights.shape("heads.pre_logits.weight")[0] if pre_logits else None
        ),
        activation=None,
    )
    _port_vit(backbone, weights, mlp)
    if pre_logits:
        port_dense(task.intermediate_layer, weights, "heads.pre_logits")
    port_dense(task.output_dense, weights, "heads.head")
    return _functional(task, weights, name)


def _vit_backbone(weights, image_size, name):
    import keras_hub

    hidden, _, patch, _ = weights.shape("conv_proj.weight")
    positions = weights.shape("encoder.pos_embedding")[1]
    grid = int(round((positions - 1) ** 0.5))
    if grid * grid != positions - 1 or grid * patch != image_size:
        raise ValueError(
            f"The ViT's key {weights.prefix + 'encoder.pos_embedding'!r} needs "
            f"{grid * patch}x{grid * patch} images. Received: image_size={image_size}"
        )
    if hidden not in _VIT_HEADS:
        raise ValueError(
            f"The ViT's key {weights.prefix + 'conv_proj.weight'!r} gives width "
            f"{hidden}, not one of torchvision's ViTs {sorted(_VIT_HEADS)}: its "
            "number of attention heads is unknown."
        )
    layers = 0
    while f"{_vit_block(layers)}.ln_1.weight" in weights:
        layers += 1
    # torchvision renamed the MLP's layers; its older checkpoints say linear_1.
    old = f"{_vit_block(0)}.mlp.linear_1.weight" in weights
    mlp = "mlp.linear_1" if old else "mlp.0"
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 3),
        patch_size=patch,
        num_layers=layers,
        num_heads=_VIT_HEADS[hidden],
        hidden_dim=hidden,
        mlp_dim=weights.shape(f"{_vit_block(0)}.{mlp}.weight")[0],
        layer_norm_epsilon=1e-6,
        data_format="channels_last",
        name=name,
    )
    return backbone, mlp


def _vit_block(index):
    return f"encoder.layers.encoder_layer_{index}"


def _port_vit(backbone, weights, mlp):
    embedding = backbone.get_layer("vit_patching_and_embedding")
    port_conv(embedding.patch_embedding, weights, "conv_proj")
    token = weights.take("class_token")
    weights.assign(embedding.class_token, token, "class_token")
    positions = weights.take("encoder.pos_embedding")[0]
    table = embedding.position_embedding.embeddings
    weights.assign(table, positions, "encoder.pos_embedding")
    encoder = backbone.get_layer("vit_encoder")
    second = "mlp.linear_2" if mlp == "mlp.linear_1" else "mlp.3"
    for index, block in enumerate(encoder.encoder_layers):
        name = _vit_block(index)
        port_layer_norm(block.layer_norm_1, weights, f"{name}.ln_1")
        _port_attention(block.mha, weights, f"{name}.self_attention")
        port_layer_norm(block.layer_norm_2, weights, f"{name}.ln_2")
        port_dense(block.mlp.dense_1, weights, f"{name}.{mlp}")
        port_dense(block.mlp.dense_2, weights, f"{name}.{second}")
    port_layer_norm(encoder.layer_norm, weights, "encoder.ln")


def _port_attention(mha, weights, name):
    """torch's packed `in_proj` (3D, D) into Keras' per-head query/key/value."""
    kernels = np.split(weights.take(f"{name}.in_proj_weight"), 3, axis=0)
    biases = np.split(weights.take(f"{name}.in_proj_bias"), 3, axis=0)
    dense = (mha._query_dense, mha._key_dense, mha._value_dense)
    for layer, kernel, bias in zip(dense, kernels, biases):
        weights.assign(layer.kernel, kernel.T, f"{name}.in_proj_weight", True)
        weights.assign(layer.bias, bias, f"{name}.in_proj_bias", True)
    output = mha._output_dense
    kernel = weights.take(f"{name}.out_proj.weight").T
    weights.assign(output.kernel, kernel, f"{name}.out_proj.weight", True)
    bias = weights.take(f"{name}.out_proj.bias")
    weights.assign(output.bias, bias, f"{name}.out_proj.bias")
