"""Importing the authors' checkpoints, checked against a torch reference.

The checkpoints are made here, with random weights, in the authors' layout
(`net.backbone.*`, `net.attention.attention.*`, `net.attention.{convs, bns,
fuser}`), and as the authors publish them: their saver keeps the decoder
alone, and the networks come as torchvision's weight files. The reference is
a functional torch forward pass written from the description of the
authors' model (torchvision ResNet/VGG/ViT, the decoder with repeated x2
bilinear upsampling, ImageNet normalisation).
"""

import math

import numpy as np
import pytest

import keras_ptame as kp
from tests.helpers import keras_hub_before, to_numpy

torch = pytest.importorskip("torch")
F = torch.nn.functional

MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)


# === Random weights in torchvision's layout ===


class _Maker:
    def __init__(self, seed):
        self.generator = torch.Generator().manual_seed(seed)
        self.weights = {}

    def normal(self, *shape, std=1.0):
        return torch.randn(*shape, generator=self.generator) * std

    def uniform(self, low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=self.generator)

    def conv(self, name, out, inp, k, bias=False):
        self.weights[f"{name}.weight"] = self.normal(
            out, inp, k, k, std=math.sqrt(2 / (inp * k * k))
        )
        if bias:
            self.weights[f"{name}.bias"] = self.normal(out, std=0.1)

    def linear(self, name, out, inp):
        self.weights[f"{name}.weight"] = self.normal(out, inp, std=math.sqrt(1 / inp))
        self.weights[f"{name}.bias"] = self.normal(out, std=0.1)

    def bn(self, name, channels, scale=1.0):
        self.weights[f"{name}.weight"] = self.uniform(0.5, 1.0, channels) * scale
        self.weights[f"{name}.bias"] = self.normal(channels, std=0.1)
        self.weights[f"{name}.running_mean"] = self.normal(channels, std=0.1)
        self.weights[f"{name}.running_var"] = self.uniform(0.5, 1.5, channels)
        self.weights[f"{name}.num_batches_tracked"] = torch.tensor(100)

    def layer_norm(self, name, channels):
        self.weights[f"{name}.weight"] = self.uniform(0.5, 1.5, channels)
        self.weights[f"{name}.bias"] = self.normal(channels, std=0.1)


def resnet_weights(blocks=(2, 2, 2, 2), bottleneck=False, num_classes=10, seed=0):
    """A torchvision ResNet state dict (ResNet-18 by default)."""
    make = _Maker(seed)
    make.conv("conv1", 64, 3, 7)
    make.bn("bn1", 64)
    inplanes = 64
    for stage, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
        out = 4 * width if bottleneck else width
        for index in range(count):
            name = f"layer{stage + 1}.{index}"
            cin = inplanes if index == 0 else out
            if bottleneck:
                shapes = [(width, cin, 1), (width, width, 3), (out, width, 1)]
            else:
                shapes = [(width, cin, 3), (out, width, 3)]
            for i, shape in enumerate(shapes, 1):
                make.conv(f"{name}.conv{i}", *shape)
                # The residual branch's last BN is damped, as trained nets do.
                make.bn(f"{name}.bn{i}", shape[0], 0.3 if i == len(shapes) else 1)
            if index == 0 and (stage > 0 or bottleneck):
                make.conv(f"{name}.downsample.0", out, cin, 1)
                make.bn(f"{name}.downsample.1", out)
        inplanes = out
    make.linear("fc", num_classes, inplanes)
    return make.weights


def vgg_weights(repeats=(1, 1, 2, 2, 2), widths=(8, 8, 16, 16, 16), side=2, seed=1):
    """A torchvision VGG state dict (narrow; `side` x `side` last features)."""
    make = _Maker(seed)
    index, inp = 0, 3
    for count, width in zip(repeats, widths):
        for _ in range(count):
            make.conv(f"features.{index}", width, inp, 3, bias=True)
            index, inp = index + 2, width
        index += 1
    make.linear("classifier.0", 32, inp * side * side)
    make.linear("classifier.3", 32, 32)
    make.linear("classifier.6", 10, 32)
    return make.weights


def vit_weights(layers=1, hidden=768, mlp=64, patch=16, grid=2, seed=2):
    """A torchvision ViT state dict (one narrow-MLP block by default)."""
    make = _Maker(seed)
    make.conv("conv_proj", hidden, 3, patch, bias=True)
    make.weights["class_token"] = make.normal(1, 1, hidden, std=0.5)
    make.weights["encoder.pos_embedding"] = make.normal(
        1, grid * grid + 1, hidden, std=0.5
    )
    for index in range(layers):
        name = f"encoder.layers.encoder_layer_{index}"
        make.layer_norm(f"{name}.ln_1", hidden)
        attention = f"{name}.self_attention"
        make.linear(f"{attention}.in_proj", 3 * hidden, hidden)
        # torch's MultiheadAttention names its packed projection this way.
        for part in ("weight", "bias"):
            make.weights[f"{attention}.in_proj_{part}"] = make.weights.pop(
                f"{attention}.in_proj.{part}"
            )
        make.linear(f"{name}.self_attention.out_proj", hidden, hidden)
        make.layer_norm(f"{name}.ln_2", hidden)
        make.linear(f"{name}.mlp.0", mlp, hidden)
        make.linear(f"{name}.mlp.3", hidden, mlp)
    make.layer_norm("encoder.ln", hidden)
    make.linear("heads.head", 10, hidden)
    return make.weights


def authors_checkpoint(classifier=None, num_classes=10, seed=3):
    """A state dict in the authors' layout around `classifier`'s weights."""
    classifier = (
        resnet_weights(num_classes=num_classes) if classifier is None else classifier
    )
    make = _Maker(seed)
    for index, channels in enumerate((64, 128, 256, 512)):
        make.conv(f"convs.{index}", channels, channels, 1, bias=True)
        make.bn(f"bns.{index}", channels)
    make.conv("fuser", num_classes, 960, 1)
    state = {f"net.backbone.{k}": v for k, v in classifier.items()}
    auxiliary = resnet_weights(num_classes=1000, seed=seed + 1)
    state.update({f"net.attention.attention.{k}": v for k, v in auxiliary.items()})
    state.update({f"net.attention.{k}": v for k, v in make.weights.items()})
    return state


# === The reference forward pass ===


def _conv(x, w, name, stride=1, padding=0):
    return F.conv2d(x, w[f"{name}.weight"], w.get(f"{name}.bias"), stride, padding)


def _bn(x, w, name):
    return F.batch_norm(
        x,
        w[f"{name}.running_mean"],
        w[f"{name}.running_var"],
        w[f"{name}.weight"],
        w[f"{name}.bias"],
        False,
        0.0,
        1e-5,
    )


def _resnet_block(x, w, name, stride, bottleneck):
    if bottleneck:
        out = F.relu(_bn(_conv(x, w, f"{name}.conv1"), w, f"{name}.bn1"))
        out = F.relu(_bn(_conv(out, w, f"{name}.conv2", stride, 1), w, f"{name}.bn2"))
        out = _bn(_conv(out, w, f"{name}.conv3"), w, f"{name}.bn3")
    else:
        out = F.relu(_bn(_conv(x, w, f"{name}.conv1", stride, 1), w, f"{name}.bn1"))
        out = _bn(_conv(out, w, f"{name}.conv2", 1, 1), w, f"{name}.bn2")
    if f"{name}.downsample.0.weight" in w:
        x = _bn(_conv(x, w, f"{name}.downsample.0", stride), w, f"{name}.downsample.1")
    return F.relu(out + x)


def resnet_stages(w, x):
    """The outputs of `layer1..layer4` of a torchvision ResNet."""
    bottleneck = "layer1.0.conv3.weight" in w
    x = F.relu(_bn(_conv(x, w, "conv1", 2, 3), w, "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    stages = []
    for stage in range(1, 5):
        index = 0
        while f"layer{stage}.{index}.conv1.weight" in w:
            stride = 2 if stage > 1 and index == 0 else 1
            x = _resnet_block(x, w, f"layer{stage}.{index}", stride, bottleneck)
            index += 1
        stages.append(x)
    return stages


def resnet_logits(w, x):
    return F.linear(resnet_stages(w, x)[-1].mean((2, 3)), w["fc.weight"], w["fc.bias"])


def vgg_logits(w, x):
    convs = sorted(
        int(k.split(".")[1])
        for k in w
        if k.startswith("features.") and k.endswith("weight")
    )
    for index, following in zip(convs, convs[1:] + [None]):
        x = F.relu(_conv(x, w, f"features.{index}", 1, 1))
        if following is None or following - index == 3:  # conv, ReLU, pool
            x = F.max_pool2d(x, 2, 2)
    # torchvision's adaptive pooling to the last features' own size: a no-op.
    x = torch.flatten(x, 1)
    x = F.relu(F.linear(x, w["classifier.0.weight"], w["classifier.0.bias"]))
    x = F.relu(F.linear(x, w["classifier.3.weight"], w["classifier.3.bias"]))
    return F.linear(x, w["classifier.6.weight"], w["classifier.6.bias"])


def _attention(x, w, name, heads):
    batch, tokens, hidden = x.shape
    qkv = F.linear(x, w[f"{name}.in_proj_weight"], w[f"{name}.in_proj_bias"])
    q, k, v = (
        t.reshape(batch, tokens, heads, -1).transpose(1, 2) for t in qkv.chunk(3, -1)
    )
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
    out = (weights @ v).transpose(1, 2).reshape(batch, tokens, hidden)
    return F.linear(out, w[f"{name}.out_proj.weight"], w[f"{name}.out_proj.bias"])


def vit_logits(w, x, heads=12):
    x = _conv(x, w, "conv_proj", w["conv_proj.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([w["class_token"].expand(len(x), -1, -1), x], 1)
    x = x + w["encoder.pos_embedding"]
    index = 0
    while f"encoder.layers.encoder_layer_{index}.ln_1.weight" in w:
        name = f"encoder.layers.encoder_layer_{index}"

        def norm(t, part, name=name):
            shape = (t.shape[-1],)
            return F.layer_norm(
                t, shape, w[f"{name}.{part}.weight"], w[f"{name}.{part}.bias"], 1e-6
            )

        x = x + _attention(norm(x, "ln_1"), w, f"{name}.self_attention", heads)
        y = F.gelu(
            F.linear(
                norm(x, "ln_2"), w[f"{name}.mlp.0.weight"], w[f"{name}.mlp.0.bias"]
            )
        )
        x = x + F.linear(y, w[f"{name}.mlp.3.weight"], w[f"{name}.mlp.3.bias"])
        index += 1
    x = F.layer_norm(
        x, (x.shape[-1],), w["encoder.ln.weight"], w["encoder.ln.bias"], 1e-6
    )
    return F.linear(x[:, 0], w["heads.head.weight"], w["heads.head.bias"])


def reference_maps(state, images):
    """Raw and min-max maps `(B, h, w, K)` of the authors' decoder, in torch."""
    under = "net.attention."
    w = {k[len(under) :]: v for k, v in state.items() if k.startswith(under)}
    aux = {
        k[len("attention.") :]: v for k, v in w.items() if k.startswith("attention.")
    }
    x = normalise(images)
    features = resnet_stages(aux, x)
    finest = features[0].shape[-1]
    scales = []
    for index, f in enumerate(features):
        g = F.relu(_bn(_conv(f, w, f"convs.{index}"), w, f"bns.{index}") + f)
        for _ in range(int(math.log2(finest // g.shape[-1]))):
            g = F.interpolate(g, scale_factor=2, mode="bilinear", align_corners=False)
        scales.append(g)
    raw = _conv(torch.cat(scales, 1), w, "fuser")
    low = raw.amin((2, 3), keepdim=True)
    high = raw.amax((2, 3), keepdim=True)
    normalised = (raw - low) / torch.clamp(high - low, min=1e-8)
    return (t.permute(0, 2, 3, 1).numpy() for t in (raw, normalised))


def normalise(images):
    x = torch.from_numpy(np.asarray(images, "float32")).permute(0, 3, 1, 2)
    return (x / 255 - MEAN) / STD


def _images(count=3, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, size, size, 3)).astype("uint8")


# === Tests ===


@pytest.fixture(scope="module")
def imported():
    """A random-weight checkpoint (ResNet-18 classifier, 10 classes) and its import."""
    state = authors_checkpoint()
    return state, kp.PTAME.from_official_checkpoint(state, image_size=64)


def _close(actual, expected):
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)


def test_imported_maps_equal_the_reference_at_the_decoder_resolution(imported):
    state, explainer = imported
    images = _images()
    classes = np.array([3, 0, 9], "int32")
    features = explainer.extractor(images)
    raw = to_numpy(explainer.decoder(features, classes=classes[:, None]))
    expected_raw, expected = reference_maps(state, images)
    pick = classes[:, None, None, None]
    assert raw.shape == (3, 16, 16, 1)
    _close(raw, np.take_along_axis(expected_raw, pick, -1))
    maps = to_numpy(explainer.decoder.normalize(raw))
    np.testing.assert_allclose(maps, np.take_along_axis(expected, pick, -1), atol=1e-4)
    # Every class at once, too.
    _close(to_numpy(explainer.decoder(features)), expected_raw)


def test_explanations_are_for_the_imported_classifier_s_predictions(imported):
    state, explainer = imported
    images = _images(count=4, seed=2)
    prefix = "net.backbone."
    classifier = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    logits = resnet_logits(classifier, normalise(images)).numpy()
    _close(to_numpy(explainer.backbone(images)), logits)
    outputs = explainer.explain_outputs(images)
    np.testing.assert_array_equal(outputs["classes"], logits.argmax(-1))
    probabilities = torch.softmax(torch.from_numpy(logits), -1).numpy()
    np.testing.assert_allclose(
        outputs["scores"], probabilities.max(-1), rtol=1e-4, atol=1e-5
    )
    assert outputs["maps"].shape == (4, 64, 64)
    assert outputs["maps"].min() >= 0 and outputs["maps"].max() <= 1


def test_the_imported_decoder_has_the_authors_numerics(imported):
    _, explainer = imported
    decoder = explainer.decoder
    assert decoder.upsampling == "doubling"
    assert [n.epsilon for n in decoder.norms] == [1e-5] * 4
    assert [n.momentum for n in decoder.norms] == [0.9] * 4
    assert explainer.num_classes == 10
    assert explainer.input_size == (64, 64)


def test_a_lightning_checkpoint_file_is_read(tmp_path):
    path = tmp_path / "explainer.ckpt"
    state = authors_checkpoint()
    torch.save({"state_dict": state, "epoch": 0, "global_step": 10}, path)
    images = _images(count=2, seed=4)
    explainer = kp.PTAME.from_official_checkpoint(str(path), image_size=64)
    expected_raw, _ = reference_maps(state, images)
    _close(to_numpy(explainer.decoder(explainer.extractor(images))), expected_raw)


@pytest.mark.slow
def test_an_authors_sized_resnet_50_explainer_equals_the_reference_at_224():
    classifier = resnet_weights((3, 4, 6, 3), bottleneck=True, num_classes=1000)
    state = authors_checkpoint(classifier, num_classes=1000)
    explainer = kp.PTAME.from_official_checkpoint(state)
    images = _images(count=2, size=224, seed=8)
    raw = to_numpy(explainer.decoder(explainer.extractor(images)))
    expected_raw, expected = reference_maps(state, images)
    assert raw.shape == (2, 56, 56, 1000)
    _close(raw, expected_raw)
    np.testing.assert_allclose(
        to_numpy(explainer.decoder.normalize(raw)), expected, atol=1e-4
    )
    _close(
        to_numpy(explainer.backbone(images)),
        resnet_logits(classifier, normalise(images)).numpy(),
    )


# (architecture, its torchvision-layout weights, their torch forward, size)
CLASSIFIERS = {
    "resnet_50": (
        lambda: resnet_weights(blocks=(3, 4, 6, 3), bottleneck=True, num_classes=10),
        resnet_logits,
        64,
    ),
    "vgg": (vgg_weights, vgg_logits, 64),
    "vit": (vit_weights, vit_logits, 32),
}


@pytest.mark.slow
@pytest.mark.parametrize("architecture", sorted(CLASSIFIERS))
def test_classifier_equals_torchvision_s_forward(architecture):
    if architecture == "vgg" and keras_hub_before((0, 27)):
        pytest.skip("keras-hub before 0.27 has no torchvision-like VGG head")
    make_weights, torch_logits, size = CLASSIFIERS[architecture]
    weights = make_weights()
    explainer = kp.PTAME.from_official_checkpoint(
        authors_checkpoint(weights), image_size=size
    )
    images = _images(count=2, size=size, seed=5)
    expected = torch_logits(weights, normalise(images)).numpy()
    actual = to_numpy(explainer.backbone(images))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_a_stray_key_is_refused_by_name():
    state = authors_checkpoint()
    state["net.attention.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="net.attention.extra.weight"):
        kp.PTAME.from_official_checkpoint(state, image_size=64)
    state = authors_checkpoint()
    state["net.backbone.layer5.0.conv1.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="layer"):
        kp.PTAME.from_official_checkpoint(state, image_size=64)


def test_a_key_that_fits_no_part_of_the_network_is_refused_by_name():
    state = authors_checkpoint()
    state["net.backbone.layer1.0.conv9.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="net.backbone.layer1.0.conv9.weight"):
        kp.PTAME.from_official_checkpoint(state, image_size=64)


def test_a_network_weight_the_checkpoint_lacks_is_refused():
    state = authors_checkpoint()
    for key in [k for k in state if k.startswith("net.backbone.layer2.0.downsample")]:
        del state[key]
    with pytest.raises(ValueError, match="stack1_block0_0"):
        kp.PTAME.from_official_checkpoint(state, image_size=64)


def test_an_unknown_classifier_is_refused_by_key():
    state = authors_checkpoint({"stem.weight": torch.zeros(8, 3, 3, 3)})
    with pytest.raises(ValueError, match="net.backbone.stem.weight"):
        kp.PTAME.from_official_checkpoint(state, image_size=64)


def test_a_wrong_shape_is_refused_by_key():
    state = authors_checkpoint()
    state["net.attention.fuser.weight"] = torch.zeros(10, 900, 1, 1)
    with pytest.raises(ValueError, match="net.attention.fuser"):
        kp.PTAME.from_official_checkpoint(state, image_size=64)


def test_fuser_and_classifier_must_agree_on_the_classes():
    state = authors_checkpoint()
    state["net.attention.fuser.weight"] = torch.zeros(7, 960, 1, 1)
    with pytest.raises(ValueError, match="7 class maps"):
        kp.PTAME.from_official_checkpoint(state, image_size=64)


def test_a_state_dict_not_in_the_authors_layout_is_refused():
    with pytest.raises(ValueError, match="conv1.weight"):
        kp.PTAME.from_official_checkpoint(resnet_weights(), image_size=64)


def test_the_input_size_a_classifier_needs_is_checked():
    state = authors_checkpoint(vgg_weights())
    with pytest.raises(ValueError, match="64x64"):
        kp.PTAME.from_official_checkpoint(state, image_size=96)


def test_a_vit_of_unknown_width_is_refused():
    state = authors_checkpoint(vit_weights(hidden=96))
    with pytest.raises(ValueError, match="heads"):
        kp.PTAME.from_official_checkpoint(state, image_size=32)


def test_a_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        kp.PTAME.from_official_checkpoint(str(tmp_path / "missing.ckpt"))


# === The files the authors publish: the decoder, and torchvision's weights ===


def authors_saver(state):
    """`state` as the authors' `on_save_checkpoint` leaves it: the decoder."""
    dropped = ("backbone", "_orig_mod", "net.attention.attention")
    return {k: v for k, v in state.items() if not any(d in k for d in dropped)}


def network(state, prefix):
    """A network's torchvision state dict, taken out of a whole checkpoint."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def write_published(state, folder):
    """Writes `state` as the authors' files: a Lightning checkpoint of the
    decoder, and the two networks' torchvision `.pth` files (bare state
    dicts, as torchvision's own). Returns the paths."""
    paths = [folder / name for name in ("explainer.ckpt", "net.pth", "aux.pth")]
    lightning = {
        "state_dict": authors_saver(state),
        "epoch": 7,
        "global_step": 8000,
        "pytorch-lightning_version": "2.4.0",
        "hyper_parameters": {"compile": False, "feature_contribution": False},
    }
    torch.save(lightning, paths[0])
    torch.save(network(state, "net.backbone."), paths[1])
    torch.save(network(state, "net.attention.attention."), paths[2])
    return paths


@pytest.fixture(scope="module")
def published(imported, tmp_path_factory):
    """`imported`'s checkpoint as the authors publish it, and its import."""
    state, _ = imported
    paths = write_published(state, tmp_path_factory.mktemp("published"))
    assert sorted(torch.load(paths[0])["state_dict"]) == sorted(
        k for k in state if k.startswith(("net.attention.convs", "net.attention.bns"))
    ) + ["net.attention.fuser.weight"]
    explainer = kp.PTAME.from_official_checkpoint(
        str(paths[0]), classifier_weights=paths[1], auxiliary_weights=str(paths[2]),
        image_size=64,
    )  # fmt: skip
    return paths, explainer


def test_the_published_files_give_the_reference_s_maps_and_classes(imported, published):
    state, whole = imported
    _, explainer = published
    images = _images(count=4, seed=7)
    raw = to_numpy(explainer.decoder(explainer.extractor(images)))
    expected_raw, expected = reference_maps(state, images)
    assert raw.shape == (4, 16, 16, 10)
    _close(raw, expected_raw)
    np.testing.assert_allclose(
        to_numpy(explainer.decoder.normalize(raw)), expected, atol=1e-4
    )
    logits = resnet_logits(network(state, "net.backbone."), normalise(images))
    outputs = explainer.explain_outputs(images)
    np.testing.assert_array_equal(outputs["classes"], logits.numpy().argmax(-1))
    expected_outputs = whole.explain_outputs(images)
    np.testing.assert_array_equal(outputs["classes"], expected_outputs["classes"])
    np.testing.assert_allclose(outputs["maps"], expected_outputs["maps"], atol=1e-5)
    assert explainer.decoder.upsampling == "doubling"
    assert [n.epsilon for n in explainer.decoder.norms] == [1e-5] * 4
    assert explainer.is_trained


def test_the_networks_weights_may_be_state_dicts(imported):
    state, _ = imported
    explainer = kp.PTAME.from_official_checkpoint(
        authors_saver(state),
        classifier_weights=network(state, "net.backbone."),
        auxiliary_weights={
            k: v.numpy() for k, v in network(state, "net.attention.attention.").items()
        },
        image_size=64,
    )
    images = _images(count=2, seed=9)
    expected_raw, _ = reference_maps(state, images)
    _close(to_numpy(explainer.decoder(explainer.extractor(images))), expected_raw)


def test_keys_of_compiled_networks_are_read(imported):
    state, _ = imported
    # The authors' module, compiled: `compiled_net` holds `net` a second time.
    compiled = dict(state)
    compiled.update({"compiled_net._orig_mod." + k[4:]: v for k, v in state.items()})
    images = _images(count=2, seed=10)
    expected_raw, _ = reference_maps(state, images)
    explainer = kp.PTAME.from_official_checkpoint(compiled, image_size=64)
    _close(to_numpy(explainer.decoder(explainer.extractor(images))), expected_raw)
    # torchvision networks compiled before their state dict was taken.
    explainer = kp.PTAME.from_official_checkpoint(
        {k.replace("net.attention.", "net.attention._orig_mod."): v
         for k, v in authors_saver(state).items()},
        classifier_weights={
            "_orig_mod." + k: v for k, v in network(state, "net.backbone.").items()
        },
        auxiliary_weights={
            "_orig_mod." + k: v
            for k, v in network(state, "net.attention.attention.").items()
        },
        image_size=64,
    )  # fmt: skip
    _close(to_numpy(explainer.decoder(explainer.extractor(images))), expected_raw)


def test_a_compiled_copy_that_differs_is_refused_by_name(imported):
    state, _ = imported
    compiled = dict(state)
    compiled["compiled_net._orig_mod.attention.fuser.weight"] = torch.zeros(
        10, 960, 1, 1
    )
    with pytest.raises(ValueError, match="compiled_net._orig_mod.attention.fuser"):
        kp.PTAME.from_official_checkpoint(compiled, image_size=64)


def test_the_published_checkpoint_alone_says_which_weights_to_pass(published):
    paths, _ = published
    with pytest.raises(ValueError) as caught:
        kp.PTAME.from_official_checkpoint(str(paths[0]), image_size=64)
    message = str(caught.value)
    for part in (
        str(paths[0]),
        "decoder alone",
        "IMAGENET1K_V1",
        "ResNet-50 resnet50-0676ba61.pth",
        "VGG-16 vgg16-397923af.pth",
        "ViT-B/16 vit_b_16-c867db91.pth",
        "(resnet18-f37072fd.pth)",
        "~/.cache/torch/hub/checkpoints/",
        'torch.save(torchvision.models.resnet18(weights="IMAGENET1K_V1")',
        "the classifier with `classifier_weights`",
        "ResNet-18 with `auxiliary_weights`",
    ):
        assert part in message, part
    assert caught.value.missing == ("classifier", "auxiliary")
    with pytest.raises(ValueError) as caught:
        kp.PTAME.from_official_checkpoint(
            paths[0], classifier_weights=paths[1], image_size=64
        )
    assert caught.value.missing == ("auxiliary",)
    assert "`auxiliary_weights`" in str(caught.value)
    assert "classifier_weights" not in str(caught.value)


def test_a_network_given_twice_is_refused_naming_both(imported, published):
    state, _ = imported
    paths, _ = published
    with pytest.raises(ValueError, match="net.backbone.") as caught:
        kp.PTAME.from_official_checkpoint(
            state, classifier_weights=paths[1], image_size=64
        )
    assert str(paths[1]) in str(caught.value)
    with pytest.raises(ValueError, match="net.attention.attention."):
        kp.PTAME.from_official_checkpoint(
            state, auxiliary_weights=network(state, "net.attention.attention.")
        )


def test_an_auxiliary_network_the_decoder_cannot_read_is_refused(imported, tmp_path):
    state, _ = imported
    decoder = authors_saver(state)
    classifier = network(state, "net.backbone.")
    path = tmp_path / "resnet50.pth"
    torch.save(resnet_weights((1, 1, 1, 1), bottleneck=True, num_classes=5), path)
    with pytest.raises(ValueError, match="resnet50.pth") as caught:
        kp.PTAME.from_official_checkpoint(
            decoder, classifier_weights=classifier, auxiliary_weights=path
        )
    message = str(caught.value)
    assert "(256, 512, 1024, 2048)" in message and "(64, 128, 256, 512)" in message
    assert "net.attention.convs" in message
    with pytest.raises(ValueError, match="features.0.weight"):
        kp.PTAME.from_official_checkpoint(
            decoder, classifier_weights=classifier, auxiliary_weights=vgg_weights()
        )


def test_a_classifier_of_other_classes_is_refused(imported, tmp_path):
    state, _ = imported
    path = tmp_path / "seven_classes.pth"
    torch.save(resnet_weights(num_classes=7), path)
    with pytest.raises(ValueError, match="10 class maps") as caught:
        kp.PTAME.from_official_checkpoint(
            authors_saver(state),
            classifier_weights=path,
            auxiliary_weights=network(state, "net.attention.attention."),
            image_size=64,
        )
    assert "seven_classes.pth" in str(caught.value)
    assert "7 classes" in str(caught.value)


def test_a_weights_key_that_fits_nothing_is_refused_by_name(imported, tmp_path):
    state, _ = imported
    auxiliary = network(state, "net.attention.attention.")
    assert "fc.weight" in auxiliary  # torchvision's, unused: accepted
    classifier = network(state, "net.backbone.")
    classifier["layer1.0.conv9.weight"] = torch.zeros(3)
    path = tmp_path / "classifier.pth"
    torch.save(classifier, path)
    with pytest.raises(ValueError, match="'layer1.0.conv9.weight' of the classifier"):
        kp.PTAME.from_official_checkpoint(
            authors_saver(state),
            classifier_weights=path,
            auxiliary_weights=auxiliary,
            image_size=64,
        )
    auxiliary["layer4.0.conv9.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="'layer4.0.conv9.weight' of the auxiliary"):
        kp.PTAME.from_official_checkpoint(
            authors_saver(state),
            classifier_weights=network(state, "net.backbone."),
            auxiliary_weights=auxiliary,
            image_size=64,
        )


def test_a_missing_weights_file_is_reported(imported, tmp_path, monkeypatch):
    state, _ = imported
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="classifier weights file") as caught:
        kp.PTAME.from_official_checkpoint(
            authors_saver(state), classifier_weights="~/nowhere.pth"
        )
    assert str(tmp_path / "nowhere.pth") in str(caught.value)  # `~` expanded


# Issue 22, case 8
@pytest.mark.parametrize(
    "key, value, message",
    [
        ("net.attention.fuser.weight", np.nan, "holds NaN or Inf values"),
        ("net.backbone.conv1.weight", np.inf, "holds NaN or Inf values"),
        ("net.attention.bns.1.running_var", -1.0, "variance .* is negative"),
    ],
)
def test_a_checkpoint_with_nan_weights_or_a_negative_variance_is_refused_by_key(
    key, value, message
):
    state = authors_checkpoint()
    state[key] = state[key].clone()
    state[key].view(-1)[0] = value
    with pytest.raises(ValueError, match=message) as raised:
        kp.PTAME.from_official_checkpoint(state, image_size=64)
    assert f"{key!r} of the checkpoint" in str(raised.value)


# Issue 22, case 12
@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_file_that_is_not_a_whole_checkpoint_is_named(tmp_path, damage):
    path = tmp_path / "explainer.ckpt"
    torch.save({"state_dict": authors_saver(authors_checkpoint())}, path)
    whole = path.read_bytes()
    damaged = {
        "truncated": whole[: len(whole) // 2],
        "empty": b"",
        "garbage": b"hello, not a checkpoint",
    }
    path.write_bytes(damaged[damage])
    with pytest.raises(ValueError, match="explainer.ckpt' is not a complete P-TAME"):
        kp.PTAME.from_official_checkpoint(str(path))
