"""keras_ptame against the P-TAME authors' package: same weights and batch in.

Reads what `reference.py` wrote (in the authors' environment) and repeats each
computation with keras_ptame's public API on the active Keras backend:

1. import of the decoder-only checkpoint their saver wrote, with the
   torchvision weight files of the classifier and the auxiliary network;
2. the classifier's logits, the decoder's raw maps and the inference maps;
3. the training forward pass and the loss terms;
4. the learning rate and beta1 of every step of their OneCycleLR run;
5. `--steps` training steps from the same weights on the same batches,
   compared with their Lightning run's checkpoint;
6. AD/IC and ROAD (Telea and noise-free linear imputation) on their maps.

Prints a table of the largest differences against stated tolerances and
exits 1 if any is over; `--markdown` also writes the table to a file.

    KERAS_BACKEND=jax python benchmarks/parity/check.py --reference DIR
"""

import argparse
import dataclasses
import json
import pathlib
import sys

import keras
import numpy as np

import keras_ptame as kp

LOSS_NAMES = {
    "ce_coeff": "ce_coeff",
    "area_coeff": "area_coeff",
    "smoothness_coeff": "smoothness_coeff",
    "smoothness_power": "smoothness_power",
    "smoothness_border_penalty": "border",
    "area_loss_power": "area_power",
}


# The maps of the decoder trained here against theirs: the runs part as
# float round-off in the classifier's backward pass grows (see the README).
TRAINED_HERE = {
    "raw maps, own class (56x56)": 0.05,
    "raw maps, classes 0-7 (56x56)": 0.05,
    "explain maps at 56x56": 0.02,
}


# ROAD's orders (ours, theirs) and percentages, as `reference.py` ran them.
ORDERS = (("morf", "MoRF"), ("lerf", "LeRF"))
ROAD_PERCENTAGES = (10, 30, 50, 70)


@dataclasses.dataclass
class Row:
    quantity: str
    difference: float
    tolerance: float
    note: str = ""

    @property
    def passed(self):
        # A row without a tolerance is reported, not judged.
        return self.tolerance is None or bool(self.difference <= self.tolerance)


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, "float64") - np.asarray(b, "float64"))))


def max_rel(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def import_explainer(reference, checkpoint):
    return kp.PTAME.from_official_checkpoint(
        str(reference / checkpoint),
        classifier_weights=str(reference / "classifier.pth"),
        auxiliary_weights=str(reference / "auxiliary.pth"),
    )


def to_numpy(value):
    return keras.ops.convert_to_numpy(value)


def forward_rows(explainer, ref, prefix=""):
    """Logits, classes, raw maps and inference maps."""
    pixels = ref["pixels"][: len(ref["classes"])].astype("float32")
    logits = to_numpy(explainer.backbone(pixels))
    raw = to_numpy(explainer.decoder(explainer.extractor(pixels), training=False))
    classes = ref[prefix + "classes"]
    own = raw[np.arange(len(classes)), :, :, classes]
    at_decoder = explainer.explain(pixels, resolution="decoder")
    at_input = explainer.explain(pixels)
    label = prefix.rstrip("_") or "initial"
    return [
        Row(f"{label}: logits", max_abs(logits, ref[prefix + "logits"]), 1e-3),
        Row(
            f"{label}: predicted classes differ",
            float(np.sum(np.argmax(logits, -1) != classes)),
            0,
        ),
        Row(
            f"{label}: raw maps, own class (56x56)",
            max_abs(own, ref[prefix + "raw_own"]),
            1e-4,
        ),
        Row(
            f"{label}: raw maps, classes 0-7 (56x56)",
            max_abs(np.moveaxis(raw[..., :8], -1, 1), ref[prefix + "raw_first"]),
            1e-4,
        ),
        Row(
            f"{label}: explain maps at 56x56",
            max_abs(at_decoder, ref[prefix + "maps_decoder"]),
            1e-4,
        ),
        Row(
            f"{label}: explain maps at 224x224",
            max_abs(at_input, ref[prefix + "maps_input"]),
            0.02,
        ),
    ]


def recipe_of(settings):
    """A recipe with the reference run's coefficients, rate and decay."""
    loss = {ours: settings["loss"][theirs] for theirs, ours in LOSS_NAMES.items()}
    return dataclasses.replace(
        kp.recipes.get("resnet_50_imagenet"),
        learning_rate=settings["learning_rate"],
        weight_decay=settings["weight_decay"],
        **loss,
    )


def loss_rows(explainer, ref, settings):
    """The training forward pass (maps of every batch class) and the loss."""
    pixels = ref["pixels"][: len(ref["classes"])].astype("float32")
    out = explainer.perturb(pixels, training=True)
    terms = (
        recipe_of(settings)
        .loss()
        .terms(out["masked_logits"], out["classes"], out["maps"])
    )
    terms = [float(to_numpy(terms[k])) for k in ("loss", "ce", "area", "smoothness")]
    maps = np.moveaxis(to_numpy(out["maps"]), -1, 1)  # (B, B, h, w), theirs
    return [
        Row(
            "training maps, every batch class (sigmoid)",
            max_abs(maps, ref["train_maps"]),
            1e-5,
        ),
        Row(
            "masked logits",
            max_abs(to_numpy(out["masked_logits"]), ref["masked_logits"]),
            1e-3,
        ),
        Row(
            "loss and its terms (ce, area, smoothness), relative",
            max_rel(terms, ref["loss_terms"]),
            1e-4,
        ),
    ]


def schedule_rows(settings, ref):
    """Learning rate and beta1 of every step, against their OneCycleLR."""
    steps = settings["schedule_steps"]
    optimizer = recipe_of(settings).optimizer(steps_per_epoch=steps)
    lr, beta1 = [], []
    for step in range(steps):
        optimizer.iterations.assign(step)
        lr.append(float(to_numpy(optimizer.learning_rate)))
        beta1.append(float(to_numpy(optimizer.current_beta_1())))
    return [
        Row(
            f"learning rate, {steps} steps, relative",
            max_rel(lr, ref["schedule_lr"]),
            1e-5,
        ),
        Row(f"beta1, {steps} steps", max_abs(beta1, ref["schedule_beta1"]), 1e-6),
    ]


def spell(values):
    return " ".join(f"{v:.3f}" for v in values)


def norm_gap(a, b):
    """`||a - b|| / ||b||`: how far `a` is from `b`, as a share of `b`."""
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def is_pre_norm_bias(variable):
    # A 1x1 convolution's bias, followed by batch normalisation: its
    # gradient is zero in exact arithmetic, float noise in practice.
    return torch_name(variable).startswith("convs.") and variable.path.endswith("bias")


def weight_gaps(ours, theirs, start, ref):
    """The largest `norm_gap` of the learned weights' changes in training:
    ours and their float32 run's, each from their float64 run (exact
    arithmetic, the common yardstick); and the largest `norm_gap` of the
    BatchNorm statistics, ours from their float32 run's."""
    mine_gap, their_gap, statistics = 0.0, 0.0, 0.0
    for mine, target, first in zip(ours.decoder.weights, theirs.decoder.weights, start):
        value, expected = to_numpy(mine), to_numpy(target)
        if "moving" in mine.path:
            statistics = max(statistics, norm_gap(value, expected))
        elif not is_pre_norm_bias(mine):
            exact = ref[f"float64_learned_{torch_name(mine)}"]
            exact = np.transpose(exact, (2, 3, 1, 0)) if exact.ndim == 4 else exact
            mine_gap = max(mine_gap, norm_gap(value - first, exact - first))
            their_gap = max(their_gap, norm_gap(expected - first, exact - first))
    return mine_gap, their_gap, statistics


def torch_name(variable):
    """The authors' name of a decoder weight: `convs.0.weight`, ..."""
    layer, kind = variable.path.split("/")[-2:]
    group, index = layer.rsplit("_", 1) if "_" in layer else (layer, None)
    group = {"conv": "convs", "norm": "bns"}.get(group, group)
    kind = {"kernel": "weight", "gamma": "weight", "beta": "bias"}.get(kind, kind)
    return ".".join(part for part in (group, index, kind) if part is not None)


def gradient_rows(reference, ref, settings):
    """The loss's gradient on one batch: one SGD step of rate 1 in `fit`."""
    explainer = import_explainer(reference, "initial.ckpt")
    batch = settings["batch_size"]
    weights = explainer.decoder.trainable_weights
    start = [to_numpy(w) for w in weights]
    explainer.compile(
        optimizer=keras.optimizers.SGD(1.0), loss=recipe_of(settings).loss()
    )
    explainer.fit(
        ref["pixels"][:batch].astype("float32"), batch_size=batch, epochs=1, verbose=0
    )
    worst, noise, own = 0.0, 0.0, 0.0
    for variable, first in zip(weights, start):
        gradient = first - to_numpy(variable)
        name = torch_name(variable)
        theirs, exact = ref[f"grad_{name}"], ref[f"float64_grad_{name}"]
        if theirs.ndim == 4:
            theirs, exact = (np.transpose(t, (2, 3, 1, 0)) for t in (theirs, exact))
        if is_pre_norm_bias(variable):
            noise = max(
                noise, float(np.abs(theirs).max()), float(np.abs(gradient).max())
            )
        else:
            worst = max(worst, norm_gap(gradient, theirs))
            own = max(own, norm_gap(theirs, exact))
    return [
        Row(
            "gradient of each decoder weight on one batch, norm-wise",
            worst,
            2 * own,
            f"tolerance: twice their own float32 gradient's gap to float64, {own:.1e}",
        ),
        Row(
            "gradient of the 1x1 convolutions' biases (zero: BN follows), largest",
            noise,
            1e-4,
        ),
    ]


class StepLosses(keras.callbacks.Callback):
    """Each step's loss, from Keras' running mean over the epoch."""

    def __init__(self):
        super().__init__()
        self.means = []

    def on_train_batch_end(self, batch, logs=None):
        self.means.append(float(logs["loss"]))

    def losses(self):
        sums = np.arange(1, len(self.means) + 1) * np.asarray(self.means)
        return np.diff(sums, prepend=0.0)


def training_rows(reference, ref, settings):
    """`--steps` steps of `fit` against their Lightning run, same batches."""
    recipe = recipe_of(settings)
    explainer = import_explainer(reference, "initial.ckpt")
    start = [to_numpy(w) for w in explainer.decoder.weights]
    explainer.compile(
        optimizer=recipe.optimizer(steps_per_epoch=settings["steps"]),
        loss=recipe.loss(),
    )
    record = StepLosses()
    explainer.fit(
        ref["pixels"].astype("float32"),
        batch_size=settings["batch_size"],
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[record],
    )
    theirs = import_explainer(reference, "trained.ckpt")
    learned, own, statistics = weight_gaps(explainer, theirs, start, ref)
    exact = ref["float64_train_loss"]
    losses, own_losses = (
        norm_gap(record.losses(), exact),
        norm_gap(ref["train_loss"], exact),
    )
    steps = settings["steps"]
    yardstick = "from their float64 run; tolerance: twice their float32 run's gap, "
    return [
        Row(
            f"losses of {steps} training steps, norm-wise",
            losses,
            None,
            "from their float64 run, reported: their float32 run's gap is "
            f"{own_losses:.1e}; here {spell(record.losses())}, their float32 "
            f"{spell(ref['train_loss'])}, float64 {spell(exact)}",
        ),
        Row(
            f"change of each decoder weight in {steps} steps, norm-wise",
            learned,
            2 * own,
            f"{yardstick}{own:.1e}",
        ),
        Row(
            f"BatchNorm statistics after {steps} steps, norm-wise",
            statistics,
            1e-2,
        ),
        *forward_rows(theirs, ref, prefix="trained_"),
        *[
            dataclasses.replace(
                row,
                quantity=row.quantity.replace("trained", "trained here"),
                tolerance=max(row.tolerance, TRAINED_HERE.get(row.quantity[9:], 0)),
            )
            for row in forward_rows(explainer, ref, prefix="trained_")
        ],
    ]


def softmax(logits):
    logits = np.asarray(logits, "float64")
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def imputed(pixels, removed, imputation):
    if imputation == "telea":
        return [kp.metrics.telea_imputation(p, r) for p, r in zip(pixels, removed)]
    return [
        kp.metrics.noisy_linear_imputation(p, r, noise=0.0)
        for p, r in zip(pixels, removed)
    ]


def road_images(pixels, maps, order, imputation, percentage):
    """The pixels ROAD removes at `percentage` and the images it fills."""
    removed = kp.metrics.removal_masks(maps, percentage, order)
    return removed, np.stack(imputed(pixels, removed, imputation))


def class_probability(backbone, images, classes):
    """The mean probability of `classes` on `images` (their accuracy=False)."""
    probabilities = softmax(to_numpy(backbone(images.astype("float32"))))
    return float(np.mean(probabilities[np.arange(len(classes)), classes]))


def metric_rows(explainer, ref, settings):
    """AD/IC and ROAD on their maps (224x224), our classifier and code."""
    theirs = settings["metrics"]
    classes = ref["classes"]
    pixels = ref["pixels"][: len(classes)].astype("float32")
    maps = ref["maps_input"]
    backbone = explainer.backbone
    found = kp.metrics.confidence_metrics(backbone, pixels, maps)
    rows = [
        Row(
            "AD and IC at 100/50/15% (percent)",
            max(
                abs(found[f"{m}{p}"] - 100 * theirs[f"{m} {p}%"])
                for m in ("AD", "IC")
                for p in (100, 50, 15)
            ),
            0.1,
        )
    ]
    for imputation in ("telea", "linear"):
        rows.append(road_score_row(backbone, pixels, maps, theirs, imputation))
    # Each order and percentage filled once: the linear systems are the cost.
    linear = {
        (tag, p): road_images(pixels, maps, order, "linear", p)
        for order, tag in ORDERS
        for p in ROAD_PERCENTAGES
    }
    rows += road_image_rows(pixels, maps, ref, linear)
    rows.append(linear_probability_row(backbone, classes, theirs, linear))
    return rows


def road_score_row(backbone, pixels, maps, theirs, imputation):
    """ROAD's accuracies and summaries, both orders, against theirs."""
    scores = kp.metrics.road_scores(
        backbone, pixels, maps, imputation=imputation, noise=0.0
    )
    gap = max(
        abs(scores[f"{tag}{p}"] - 100 * theirs[f"{imputation} {tag} {p}%"])
        for _, tag in ORDERS
        for p in ROAD_PERCENTAGES
    )
    summary = max(
        abs(scores[tag] - 100 * theirs[f"{imputation} {tag}"])
        for tag in ("MoRF", "LeRF")
    )
    return Row(
        f"ROAD ({imputation}) accuracies and summaries (percent)",
        max(gap, summary),
        1e-3,
    )


def road_image_rows(pixels, maps, ref, linear_fills):
    """The pixels ROAD removes at 30% and the images both fills give."""
    removal, alone, pipeline, linear = 0, 0.0, 0.0, 0.0
    for order, tag in ORDERS:
        removed, telea = road_images(pixels, maps, order, "telea", 30)
        filled = linear_fills[tag, 30][1]
        kept = ref[f"road_kept_{tag}_30"] > 0.5
        removal = max(removal, int(np.sum(removed == kept)))
        alone = max(alone, max_abs(telea, ref[f"telea_alone_{tag}_30"]))
        pipeline = max(pipeline, max_abs(telea, ref[f"road_telea_{tag}_30"]))
        linear = max(linear, max_abs(filled, ref[f"road_linear_{tag}_30"]))
    return [
        Row("ROAD pixels removed differently at 30%", removal, 0),
        Row("ROAD (telea) imputer alone at 30% (0-255)", alone, 0),
        Row(
            "ROAD (telea) imputed pixels at 30% in their pipeline (0-255)",
            pipeline,
            8,
            "their float32 normalisation round trip lowers some levels by one "
            "before truncation; Telea spreads that",
        ),
        Row("ROAD (linear) imputed pixels at 30% (0-255)", linear, 0.01),
    ]


def linear_probability_row(backbone, classes, theirs, linear_fills):
    """The class's mean probability on ROAD's linearly filled images."""
    ours, reference = [], []
    for (tag, p), (_, filled) in linear_fills.items():
        ours.append(class_probability(backbone, filled, classes))
        reference.append(theirs[f"linear {tag}(conf) {p}%"])
    return Row(
        "ROAD (linear) class probability, relative", max_rel(ours, reference), 1e-3
    )


def table(rows, backend):
    lines = [
        f"| check ({backend}) | max difference | tolerance | |",
        "|---|---:|---:|---|",
    ]
    for row in rows:
        mark = "ok" if row.passed else "**over**"
        tolerance = "—" if row.tolerance is None else f"{row.tolerance:.0e}"
        mark = "reported" if row.tolerance is None else mark
        note = f" ({row.note})" if row.note else ""
        lines.append(
            f"| {row.quantity}{note} | {row.difference:.2e} | {tolerance} | {mark} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", required=True, type=pathlib.Path)
    parser.add_argument("--markdown", type=pathlib.Path, default=None)
    args = parser.parse_args()
    reference = args.reference
    ref = np.load(reference / "reference.npz")
    settings = json.loads((reference / "settings.json").read_text())
    explainer = import_explainer(reference, "initial.ckpt")
    rows = forward_rows(explainer, ref)
    rows += metric_rows(explainer, ref, settings)
    rows += loss_rows(explainer, ref, settings)
    rows += schedule_rows(settings, ref)
    rows += gradient_rows(reference, ref, settings)
    rows += training_rows(reference, ref, settings)
    backend = keras.config.backend()
    print(table(rows, backend))
    if args.markdown:
        args.markdown.write_text(table(rows, backend) + "\n\n")
    failed = [row.quantity for row in rows if not row.passed]
    if failed:
        print(f"{len(failed)} of {len(rows)} checks over tolerance: {failed}")
        return 1
    print(f"All {len(rows)} checks within tolerance on {backend}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
