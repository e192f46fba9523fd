"""The P-TAME authors' own package computes the reference numbers for parity.

Runs in the reference environment only (`make parity-env` installs the
authors' `ptame==1.0.2` there, with torch and torchvision), never in
keras_ptame's: their code is under a non-commercial licence, so keras_ptame
neither ships nor imports it. This script drives their classes as their Hydra
configuration builds them (`model/net/ptame_pipeline.yaml`,
`model/net/attention/ptame.yaml`, `model/default.yaml`) and writes, to
`--output`:

- `classifier.pth`, `auxiliary.pth`: torchvision ResNet-50 and ResNet-18 with
  random weights (BatchNorm statistics calibrated on random images), in
  torchvision's file format;
- `initial.ckpt`, `trained.ckpt`: the explainer before and after
  `--steps` training steps, each written through their
  `PTAMELitModule.on_save_checkpoint` (the decoder alone, as they publish);
- `reference.npz`: the batch, the classifier's logits, the decoder's raw
  maps, the inference maps, the loss terms, the learning rate and beta1 of
  every step, AD/IC and ROAD (Telea and noise-free linear imputation);
- `settings.json`: what `check.py` needs to repeat the run in Keras.

torchvision would download ResNet-18 when their attention module is imported
(a default argument); the random ResNet-18 is put where torchvision looks
for it first, so nothing is downloaded.
"""

import argparse
import copy
import itertools
import json
import os
import pathlib
from functools import partial

import numpy as np

AUXILIARY_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1
LAYERS = ["layer1", "layer2", "layer3", "layer4"]
# The authors' `ClassicLoss` defaults (model/loss/classic.yaml).
LOSS = {
    "ce_coeff": 1.5,
    "area_coeff": 2.0,
    "smoothness_coeff": 0.01,
    "smoothness_power": 2.0,
    "smoothness_border_penalty": 0.3,
    "area_loss_power": 0.3,
}
ROAD_PERCENTAGES = [0.1, 0.3, 0.5, 0.7]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, type=pathlib.Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=224)
    # The recipes' rate (the authors').
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=0.000242666)
    parser.add_argument("--schedule-steps", type=int, default=100)
    return parser.parse_args()


def smooth_images(rng, count, size):
    """Random images with some structure: coarse noise, bicubically enlarged."""
    import torch
    import torch.nn.functional as F

    coarse = torch.tensor(rng.uniform(0, 255, (count, 3, 7, 7)), dtype=torch.float32)
    images = F.interpolate(coarse, size=(size, size), mode="bicubic")
    return images.clamp(0, 255).round()  # whole pixel values, channels first


def calibrated(network, rng, size):
    """`network` with BatchNorm statistics of random images, in eval mode."""
    import torch

    network.train()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the batches
    with torch.no_grad():
        for _ in range(2):
            network(normalize(smooth_images(rng, 8, size)))
    return network.eval().requires_grad_(False)


def centre_scores(classifier, rng, size):
    """Centres the random head's scores, so that images differ in their class.

    A random head scores the (non-negative) pooled features mostly by their
    common part, which names the same class for every image.
    """
    import torch

    pooled = []
    hook = classifier.avgpool.register_forward_hook(
        lambda module, inputs, output: pooled.append(output.flatten(1))
    )
    with torch.no_grad():
        classifier(normalize(smooth_images(rng, 8, size)))
        hook.remove()
        head = classifier.fc
        head.weight.mul_(4.0)
        head.bias.copy_(-head.weight @ pooled[0].mean(dim=0))


def normalize(pixels):
    from ptame.data.imagenet_datamodule import norm

    return norm(pixels / 255.0)


def build_networks(args, rng):
    import torch
    import torchvision

    torch.manual_seed(args.seed)
    classifier = calibrated(torchvision.models.resnet50(), rng, args.image_size)
    centre_scores(classifier, rng, args.image_size)
    auxiliary = calibrated(torchvision.models.resnet18(), rng, args.image_size)
    torch.save(classifier.state_dict(), args.output / "classifier.pth")
    torch.save(auxiliary.state_dict(), args.output / "auxiliary.pth")
    cache = args.output / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(auxiliary.state_dict(), cache / AUXILIARY_FILE)
    os.environ["TORCH_HOME"] = str(args.output / "torch_home")
    return classifier, auxiliary


def build_module(args, classifier, auxiliary):
    """Their Lightning module, configured as their Hydra files configure it."""
    import torch
    from ptame.models.components.attention.ptame_attention import PTAMEAttention
    from ptame.models.components.loss import ClassicLoss
    from ptame.models.components.ptame_pipeline import PtamePipeline
    from ptame.models.ptame_module import PTAMELitModule
    from ptame.utils import masking_utils

    torch.manual_seed(args.seed + 1)
    size = args.image_size
    attention = PTAMEAttention(
        model={"model": auxiliary, "layers": LAYERS},
        input_dim=[2, 3, size, size],
        fuser_bias=False,
        num_classes=1000,
        normalizers=[torch.sigmoid, masking_utils.minmax_4d],
    )
    net = PtamePipeline(
        backbone=classifier,
        attention=attention,
        masking_procedure=masking_utils.norm_resize_mask(),
        train_map_select=masking_utils.random_map_select,
        matching_map_select=masking_utils.single_map_select,
        backbone_eval=True,
    )
    return PTAMELitModule(
        net=net,
        loss=ClassicLoss(**LOSS),
        optimizer=partial(
            torch.optim.AdamW,
            lr=args.learning_rate,
            weight_decay=args.weight_decay,
            amsgrad=True,
        ),
        scheduler={
            "name": "OneCycleLR",
            "scheduler": partial(
                torch.optim.lr_scheduler.OneCycleLR,
                max_lr=args.learning_rate,
                epochs=1,
            ),
            "params": {"interval": "step", "name": "LR", "frequency": 1},
        },
        val_measures=None,
        test_measures=None,
    )


def save_decoder_checkpoint(module, path, trainer=None):
    """The checkpoint as the authors' saver writes it: the decoder alone."""
    import torch

    if trainer is not None:
        trainer.save_checkpoint(path)  # Lightning calls `on_save_checkpoint`
        return
    checkpoint = {"state_dict": module.state_dict(), "epoch": 0, "global_step": 0}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)


def explain(module, images):
    """Logits, classes, raw maps and inference maps, in eval mode."""
    import torch
    from ptame.utils import masking_utils

    net = module.net.eval()
    with torch.no_grad():
        logits = net.get_predictions(images)
        targets = logits.argmax(dim=1)
        _, raw = net.attention(images, with_outputs=True)
        maps = net.attention(images)  # min-max maps of every class
        own = masking_utils.single_map_select(maps, targets)
        upsampled = masking_utils.basic_resize(own, images.size())
    index = torch.arange(len(targets))
    return {
        "logits": logits.numpy(),
        "classes": targets.numpy(),
        "raw_own": raw[index, targets].numpy(),
        "raw_first": raw[:, :8].numpy(),
        "maps_decoder": own[:, 0].numpy(),
        "maps_input": upsampled[:, 0].numpy(),
    }, own


def as_built(module):
    """`module` in its modes as built: the decoder training, both networks
    in eval mode."""
    module.train()
    module.net.backbone.eval()
    module.net.attention.attention.eval()
    return module


def loss_terms(module, images):
    """The training forward pass and `ClassicLoss`; BN statistics restored."""
    import torch

    saved = copy.deepcopy(module.state_dict())
    net = as_built(module).net
    with torch.no_grad():
        out = net(images)
        terms = module.criterion(**out)
    module.load_state_dict(saved)
    return {
        "loss_terms": np.array([float(t) for t in terms]),  # loss, ce, area, smooth
        "train_maps": out["masks"].numpy(),  # (B, B, h, w): every batch class
        "masked_logits": out["logits_masked"].numpy(),
    }


def gradients(module, images):
    """The loss's gradient for every decoder weight on one batch, by name."""
    saved = copy.deepcopy(module.state_dict())
    net = as_built(module).net
    module.zero_grad()
    loss = module.criterion(**net(images))[0]
    loss.backward()
    found = {
        f"grad_{name}": parameter.grad.numpy().copy()
        for name, parameter in net.attention.named_parameters()
        if parameter.grad is not None
    }
    module.zero_grad()
    module.load_state_dict(saved)
    return found


def float64_gradients(module, images):
    """`gradients` in float64: how far their own float32 gradient is off."""
    saved = copy.deepcopy(module.state_dict())
    found = gradients(module.double(), images.double())
    module.float()
    module.load_state_dict(saved)
    return {f"float64_{key}": value for key, value in found.items()}


def telea_alone(images, kept):
    """Their Telea imputer on the exact [0, 1] image (pixels / 255), without
    the round trip through ImageNet normalisation that their ROAD makes."""
    from ptame.utils.noisy_linear_imputation import InpaintingImputer

    pixels = (images_in_pixels(images) / 255.0).float()
    painted = InpaintingImputer().batched_call(pixels, kept.float())
    return (painted * 255).round().permute(0, 2, 3, 1).numpy()


def images_in_pixels(images):
    """Normalised images back to whole pixel values (0-255), in float64."""
    from ptame.data.imagenet_datamodule import norm

    return (norm(images.double(), reverse=True) * 255).round()


def metrics(module, images, maps):
    """AD/IC and ROAD as their measures compute them, on the same maps.

    Returns the scores (ROAD as accuracy, their default, and as the mean
    probability of the class) and the images ROAD gave the classifier at 30%
    removed, in pixels (0-255), for each imputation and order.
    """
    import torch
    from ptame.data.imagenet_datamodule import norm
    from ptame.utils.measures import ADIC, ROAD, ModifiedNoisyLinearImputer

    net = module.net.eval()
    with torch.no_grad():
        logits = net.get_predictions(images)
    targets = logits.argmax(dim=1)
    found, imputed = {}, {}
    adic = ADIC()
    adic.register_net(net)
    adic.update(images, logits, targets, maps)
    found.update({k: float(v) for k, v in adic.compute().items()})
    for name, legacy in (("telea", False), ("linear", True)):
        imputer = ModifiedNoisyLinearImputer(legacy=legacy)
        if legacy:
            imputer.imputer.noise = 0.0  # deterministic, so comparable
        for morf, accuracy in itertools.product((True, False), (True, False)):
            road = ROAD(
                imputer=imputer,
                MoRF=morf,
                percentages=ROAD_PERCENTAGES,
                accuracy=accuracy,
            )
            road.register_net(net)
            road.update(images, logits, targets, maps)
            for key, value in road.compute().items():
                found[f"{name} {key}"] = float(value)
            if accuracy:
                with torch.no_grad():
                    kept = road.thresholding_procedure(maps, 0.3)
                    shown = norm(road.masking_procedure(images, kept), reverse=True)
                order = "MoRF" if morf else "LeRF"
                imputed[f"road_{name}_{order}_30"] = (
                    (shown * 255).permute(0, 2, 3, 1).numpy()
                )
                imputed[f"road_kept_{order}_30"] = kept[:, 0].numpy()
                if not legacy:
                    imputed[f"telea_alone_{order}_30"] = telea_alone(images, kept)
    return found, imputed


def train(args, module, images, precision="32-true", checkpoint=None):
    """`--steps` steps of their Lightning training, recording lr and beta1;
    the decoder's learned weights after them, by name."""
    import lightning
    import torch

    class Batches(lightning.LightningDataModule):
        num_classes = 1000

        def train_dataloader(self):
            labels = torch.zeros(len(images), dtype=torch.long)
            data = torch.utils.data.TensorDataset(images, labels)
            return torch.utils.data.DataLoader(data, batch_size=args.batch_size)

    class Record(lightning.Callback):
        def __init__(self):
            self.lr, self.beta1, self.loss = [], [], []

        def on_train_batch_start(self, trainer, module, batch, index):
            group = trainer.optimizers[0].param_groups[0]
            self.lr.append(group["lr"])
            self.beta1.append(group["betas"][0])

        def on_train_batch_end(self, trainer, module, outputs, batch, index):
            self.loss.append(float(outputs["loss"]))

    # Lightning keeps the modules' modes as they are.
    as_built(module)
    record = Record()
    trainer = lightning.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[record],
    )
    trainer.fit(module, datamodule=Batches())
    if checkpoint is not None:
        save_decoder_checkpoint(module, checkpoint, trainer)
    learned = {
        f"learned_{name}": parameter.detach().double().numpy()
        for name, parameter in module.net.attention.named_parameters()
        if parameter.requires_grad
    }
    return {
        "train_lr": np.array(record.lr),
        "train_beta1": np.array(record.beta1),
        "train_loss": np.array(record.loss),
        **learned,
    }


def schedule(args):
    """OneCycleLR's learning rate and beta1 over a longer run, as configured."""
    import torch

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=args.learning_rate, amsgrad=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.learning_rate, total_steps=args.schedule_steps
    )
    lr, beta1 = [], []
    for _ in range(args.schedule_steps):
        lr.append(optimizer.param_groups[0]["lr"])
        beta1.append(optimizer.param_groups[0]["betas"][0])
        optimizer.step()
        scheduler.step()
    return {"schedule_lr": np.array(lr), "schedule_beta1": np.array(beta1)}


def main():
    args = parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    classifier, auxiliary = build_networks(args, rng)
    module = build_module(args, classifier, auxiliary)
    save_decoder_checkpoint(module, args.output / "initial.ckpt")
    pixels = smooth_images(rng, args.batch_size * args.steps, args.image_size)
    images = normalize(pixels)
    batch = images[: args.batch_size]
    found, maps = explain(module, batch)
    found.update(loss_terms(module, batch))
    found.update(gradients(module, batch))
    found.update(float64_gradients(module, batch))
    measured, imputed = metrics(module, batch, maps)
    found.update(imputed)
    found.update(schedule(args))
    initial = copy.deepcopy(module.state_dict())
    found.update(train(args, module, images, checkpoint=args.output / "trained.ckpt"))
    trained, _ = explain(module, batch)
    found.update({f"trained_{key}": value for key, value in trained.items()})
    # The same run in float64: how far their own float32 run is from exact.
    module.load_state_dict(initial)
    exact = train(args, module, images, precision="64-true")
    found.update({f"float64_{key}": value for key, value in exact.items()})
    pixels = pixels.permute(0, 2, 3, 1).numpy().astype(np.uint8)  # channels last
    np.savez(args.output / "reference.npz", pixels=pixels, **found)
    settings = {
        "seed": args.seed,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "image_size": args.image_size,
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        "schedule_steps": args.schedule_steps,
        "loss": LOSS,
        "road_percentages": ROAD_PERCENTAGES,
        "metrics": measured,
    }
    (args.output / "settings.json").write_text(json.dumps(settings, indent=2))
    print(f"Reference written to {args.output}")


if __name__ == "__main__":
    main()
