"""The offline end-to-end demo: data, classifier, auxiliary network, explainer.

```
python -m keras_ptame.demo --output demo_output
```

On synthetic shapes with known object masks (`keras_ptame.datasets`), it
trains a small CNN classifier, a separate small auxiliary CNN, and the P-TAME
explainer of the classifier over the auxiliary network's features, then
measures on held-out images how well the maps find the objects and writes:

- `explanations.png`: overlays of held-out maps, titled with the true and
  predicted class and the score;
- `examples.png`: a few images, each beside its map and its masked image;
- `metrics.json` and `metrics.md`: classifier accuracy, masked-prediction
  agreement ("kept"), pointing game, map mass on the object, timings;
- `classifier.keras`, `auxiliary.keras` and `ptame.keras`: the trained models.

Everything is made locally (no download), so it runs offline, on any Keras
backend, in a few minutes on two CPU cores.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

# The settings that reach a pointing game above 0.9 (0.977 and 0.965 on
# seeds 0 and 1, jax) in a few minutes on two CPU cores; `run`'s arguments
# override them. The explainer's learning rate is higher than the paper's
# 1e-4 because it trains for ~470 steps here, not a whole ImageNet epoch.
DEFAULTS = {
    "image_size": 64,
    "num_classes": 6,
    "train_count": 5000,
    "test_count": 1000,
    "classifier_epochs": 5,
    "auxiliary_epochs": 4,
    "explainer_epochs": 3,
    "batch_size": 32,
    "explainer_learning_rate": 2e-3,
    "baseline": "black",
    "grid_count": 24,
}

# The paper's defaults, but a tenth of the smoothness weight: on 16x16 maps
# of small objects, 0.01 made the smoothness term the largest part of the
# loss and flattened the maps (pointing game 0.62-0.80 on two seeds against
# 0.82-0.84 with 0.001 or 0, in otherwise equal runs).
LOSS = {
    "ce_coeff": 1.5,
    "area_coeff": 2.0,
    "smoothness_coeff": 0.001,
    "smoothness_power": 2.0,
    "border": 0.3,
    "area_power": 0.3,
}

PHASES = ("data", "classifier", "auxiliary", "explainer", "evaluation", "outputs")


def build_classifier(image_size=64, num_classes=6, name="classifier"):
    """The explained classifier: a small CNN, raw pixels in, logits out.

    Args:
        image_size: int. Height and width of the images. Defaults to `64`.
        num_classes: int. Number of classes. Defaults to `6`.
        name: str. Model name. Defaults to `"classifier"`.

    Returns:
        An uncompiled `keras.Model` from `(image_size, image_size, 3)` pixels
        in [0, 255] to `num_classes` logits.

    Examples:
    ```python
    from keras_ptame.demo import build_classifier

    classifier = build_classifier(64, 6)
    classifier.output_shape   # (None, 6)
    ```
    """
    return _strided_cnn(
        image_size,
        num_classes,
        widths=(16, 32, 64),
        scale=1 / 255.0,
        offset=0.0,
        stage_name="block",
        name=name,
    )


# The decoder reads the 1/4 and 1/8 stages: its maps are 16x16 for 64x64
# images (4 pixels a cell, objects are 16 to 29 pixels). Tapping the 1/2
# stage too costs twice the training time on CPU for no gain in pointing.
AUXILIARY_LAYERS = ["stage2", "stage3"]


def build_auxiliary(image_size=64, num_classes=6, name="auxiliary"):
    """The auxiliary network: a different small CNN, three strided stages.

    Its stages give feature maps at 1/2, 1/4 and 1/8 of the input size, the
    roles of ResNet-18's stages in the paper (the demo taps
    `AUXILIARY_LAYERS`); a classification head on top lets it be trained. It
    has its own widths and head, and normalises its input to [-1, 1] where
    the classifier uses [0, 1], as networks in the wild differ.

    Args:
        image_size: int. Defaults to `64`.
        num_classes: int. Classes of the training head. Defaults to `6`.
        name: str. Defaults to `"auxiliary"`.

    Returns:
        An uncompiled `keras.Model` from pixels in [0, 255] to logits, with
        layers named `"stage1"`, `"stage2"` and `"stage3"`.
    """
    return _strided_cnn(
        image_size,
        num_classes,
        widths=(24, 48, 64),
        scale=1 / 127.5,
        offset=-1.0,
        stage_name="stage",
        name=name,
    )


def _strided_cnn(image_size, num_classes, widths, scale, offset, stage_name, name):
    """Pixels in [0, 255] -> logits: rescaling, three strided conv stages
    (named `<stage_name>1..3`), a 3x3 convolution, global max pooling, a
    dense head."""
    import keras

    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = keras.layers.Rescaling(scale, offset=offset, name="rescale")(inputs)
    # Strided convolutions rather than pooling: a quarter of the work at each
    # stage, which is what keeps the demo within minutes on two CPU cores.
    for index, filters in enumerate(widths):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(
            x
        )
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(name=f"{stage_name}{index + 1}")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    # Max pooling over space: the object may be anywhere, and a global max
    # keeps its evidence whatever the clutter around it.
    x = keras.layers.GlobalMaxPooling2D()(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def run(output_dir, seed=0, verbose=None, log=print, **settings):
    """Runs the whole demo and writes its pictures and metrics to `output_dir`.

    Args:
        output_dir: str or path-like. Folder for the outputs (created).
        seed: int. Seed of the data and of the weights. Defaults to `0`.
        verbose: Keras verbosity of the training progress. Defaults to `None`
            (progress bars on a terminal, one line per epoch otherwise).
        log: callable. Prints the phase lines. Defaults to `print`.
        **settings: overrides of `DEFAULTS` (sizes, epochs, learning rate)
            and of `LOSS` (the `PerturbationLoss` coefficients).

    Returns:
        The metrics dict that `metrics.json` holds.

    Examples:
    ```python
    from keras_ptame import demo

    metrics = demo.run("demo_output", train_count=600, explainer_epochs=1)
    metrics["pointing_game"]
    ```
    """
    import keras

    import keras_ptame as kp
    from keras_ptame import visualize
    from keras_ptame.datasets import synthetic

    config, loss_config = _settings(settings)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    timings = {}
    started = time.perf_counter()
    size, num_classes = config["image_size"], config["num_classes"]
    batch_size = config["batch_size"]
    log(
        f"P-TAME demo: backend {keras.config.backend()}, seed {seed}, "
        f"{config['train_count']} training and {config['test_count']} held-out "
        f"{size}x{size} images, {num_classes} classes -> {output_dir}"
    )

    # === Data ===
    clock = time.perf_counter()
    log("[1/6] Generating synthetic shapes with object masks...")
    # One class more than there are shapes: "none", trained on backgrounds
    # without an object (some darkened down to black) and on images whose
    # object was blacked out. Without it the classifier predicts some shape
    # for a black image, and a shape for the black silhouette that remains
    # when an object is removed (it is colour-blind): the explainer could
    # then keep a prediction by removing the object, and its maps would
    # point at the background. With it, only a visible object keeps a class.
    names = synthetic.shape_names(num_classes) + ["none"]
    outputs = num_classes + 1
    train_images, train_labels, _ = synthetic.make_shapes(
        config["train_count"], image_size=size, num_classes=num_classes, seed=seed
    )
    negatives = max(1, config["train_count"] // num_classes)
    empty = synthetic.make_backgrounds(negatives, image_size=size, seed=seed + 20_000)
    rng = np.random.default_rng(seed + 30_000)
    darkening = np.where(rng.random(len(empty)) < 0.5, rng.random(len(empty)), 1.0)
    empty = np.rint(empty * darkening[:, None, None, None]).astype("uint8")
    holes, _, hole_masks = synthetic.make_shapes(
        negatives, image_size=size, num_classes=num_classes, seed=seed + 40_000
    )
    holes = holes * ~hole_masks[..., None]
    empty = np.concatenate([empty, holes])
    classifier_images = np.concatenate([train_images, empty])
    classifier_labels = np.concatenate(
        [train_labels, np.full(len(empty), num_classes, "int32")]
    )
    # A different seed stream: the held-out images share no draw with training.
    test_images, test_labels, test_masks = synthetic.make_shapes(
        config["test_count"],
        image_size=size,
        num_classes=num_classes,
        seed=seed + 10_000,
    )
    timings["data"] = time.perf_counter() - clock

    # === Classifier ===
    clock = time.perf_counter()
    log("[2/6] Training the classifier to explain...")
    keras.utils.set_random_seed(seed)
    classifier = build_classifier(size, outputs)
    _train_classifier(
        classifier, classifier_images, classifier_labels, config, "classifier", verbose
    )
    accuracy = _accuracy(classifier, test_images, test_labels, batch_size)
    log(f"      classifier accuracy on held-out images: {accuracy:.3f}")
    timings["classifier"] = time.perf_counter() - clock

    # === Auxiliary network ===
    # The paper's auxiliary network is an ImageNet ResNet-18: a network trained
    # on the same kind of images, whose features respond to objects. A
    # randomly initialised network's features would not separate the object
    # from the clutter, so ours is trained too, on the same images and
    # labels, but it is a different architecture with its own weights and
    # preprocessing: the explainer never reads the classifier's features.
    clock = time.perf_counter()
    log("[3/6] Training the auxiliary feature network...")
    keras.utils.set_random_seed(seed + 1)
    auxiliary = build_auxiliary(size, outputs)
    _train_classifier(
        auxiliary, classifier_images, classifier_labels, config, "auxiliary", verbose
    )
    auxiliary_accuracy = _accuracy(auxiliary, test_images, test_labels, batch_size)
    log(
        f"      auxiliary network accuracy on held-out images: {auxiliary_accuracy:.3f}"
    )
    timings["auxiliary"] = time.perf_counter() - clock

    # === Explainer ===
    clock = time.perf_counter()
    log("[4/6] Training the P-TAME explainer (decoder only)...")
    keras.utils.set_random_seed(seed + 2)
    explainer = kp.PTAME(
        kp.Backbone(classifier),
        kp.AuxiliaryExtractor(auxiliary, layer_names=AUXILIARY_LAYERS),
        num_classes=outputs,
        baseline=config["baseline"],
    )
    steps = -(-config["train_count"] // batch_size) * config["explainer_epochs"]
    explainer.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=_one_cycle(config["explainer_learning_rate"], steps),
            amsgrad=True,
        ),
        loss=kp.PerturbationLoss(**loss_config),
    )
    history = explainer.fit(
        train_images,
        epochs=config["explainer_epochs"],
        batch_size=batch_size,
        shuffle=True,
        verbose=verbose,
    )
    timings["explainer"] = time.perf_counter() - clock

    # === Evaluation ===
    clock = time.perf_counter()
    log("[5/6] Explaining the held-out images and scoring the maps...")
    outputs = explainer.explain_outputs(test_images, batch_size=batch_size * 4)
    maps = outputs["maps"]
    masked = test_images.astype("float32") * maps[..., None]
    masked_classes = np.argmax(
        classifier.predict(masked, batch_size=batch_size * 4, verbose=0), axis=-1
    )
    centre = _centre_maps(len(maps), size)
    metrics = {
        "backend": keras.config.backend(),
        "seed": seed,
        "classifier_accuracy": accuracy,
        "auxiliary_accuracy": auxiliary_accuracy,
        "kept": float(np.mean(masked_classes == outputs["classes"])),
        "pointing_game": synthetic.pointing_game(maps, test_masks),
        "mass_inside": synthetic.mass_inside(maps, test_masks),
        "mean_map_area": float(np.mean(maps)),
        "baselines": {
            # What maps that know nothing would score: a map peaked at the
            # centre, and a uniform map (its mass inside = object's share).
            "pointing_game_centre": synthetic.pointing_game(centre, test_masks),
            "mass_inside_uniform": float(np.mean(test_masks)),
        },
        "explainer_training": {
            key: float(values[-1]) for key, values in history.history.items()
        },
        "settings": dict(config),
        "loss": dict(loss_config),
    }
    timings["evaluation"] = time.perf_counter() - clock
    log(
        f"      kept {metrics['kept']:.3f}, pointing game "
        f"{metrics['pointing_game']:.3f}, mass inside {metrics['mass_inside']:.3f}"
    )

    # === Outputs ===
    clock = time.perf_counter()
    log("[6/6] Writing pictures and metrics...")
    shown = slice(0, min(config["grid_count"], len(test_images)))
    figure = visualize.grid(
        test_images[shown],
        maps[shown],
        classes=outputs["classes"][shown],
        scores=outputs["scores"][shown],
        class_names=names,
        true_classes=test_labels[shown],
        columns=8,
    )
    files = [visualize.save_png(figure, os.path.join(output_dir, "explanations.png"))]
    rows = [
        visualize.side_by_side(test_images[i], maps[i], scale=3)
        for i in range(min(4, len(test_images)))
    ]
    spacer = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    examples = np.concatenate(
        [part for row in rows for part in (row, spacer)][:-1], axis=0
    )
    files.append(visualize.save_png(examples, os.path.join(output_dir, "examples.png")))
    # The trained models too, so that others (benchmarks/compare.py, the CLI)
    # explain the same classifier without training it again.
    for name, model in (
        ("classifier", classifier),
        ("auxiliary", auxiliary),
        ("ptame", explainer),
    ):
        path = os.path.join(output_dir, f"{name}.keras")
        model.save(path)
        files.append(path)
    timings["outputs"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    metrics["timings_s"] = {key: round(value, 2) for key, value in timings.items()}
    metrics["files"] = [os.path.basename(path) for path in files] + [
        "metrics.json",
        "metrics.md",
    ]
    _write_text(os.path.join(output_dir, "metrics.json"), json.dumps(metrics, indent=2))
    _write_text(os.path.join(output_dir, "metrics.md"), _markdown(metrics))
    log(
        f"Done in {timings['total']:.0f} s: accuracy {accuracy:.3f}, kept "
        f"{metrics['kept']:.3f}, pointing game {metrics['pointing_game']:.3f}, "
        f"mass inside {metrics['mass_inside']:.3f}. Outputs in {output_dir}"
    )
    return metrics


def main(argv=None):
    """Command-line entry point; returns the exit code (0 on success).

    Args:
        argv: list of str, the arguments (without the program name).
            Defaults to `None` (`sys.argv[1:]`).

    Returns:
        int: 0 on success, 2 on a bad argument.
    """
    parser = argparse.ArgumentParser(
        prog="python -m keras_ptame.demo",
        description=(
            "Trains a classifier, an auxiliary network and a P-TAME explainer on "
            "synthetic shapes with known object masks, offline, then writes "
            "explanation pictures and metrics (accuracy, kept, pointing game, "
            "mass inside, timings) to an output folder. The Keras backend is "
            "chosen by the KERAS_BACKEND environment variable."
        ),
    )
    parser.add_argument(
        "--output", default="demo_output", help="output folder (default: demo_output)"
    )
    parser.add_argument("--seed", type=int, default=0, help="data and weight seed")
    parser.add_argument(
        "--train-count",
        type=int,
        default=DEFAULTS["train_count"],
        help="number of training images (default: %(default)s)",
    )
    parser.add_argument(
        "--test-count",
        type=int,
        default=DEFAULTS["test_count"],
        help="number of held-out images scored (default: %(default)s)",
    )
    for part in ("classifier", "auxiliary", "explainer"):
        parser.add_argument(
            f"--{part}-epochs",
            type=int,
            default=DEFAULTS[f"{part}_epochs"],
            help=f"training epochs of the {part} (default: %(default)s)",
        )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and one epoch each, to check the pipeline in seconds "
        "(the figures then mean nothing)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    settings = {
        "train_count": args.train_count,
        "test_count": args.test_count,
        "classifier_epochs": args.classifier_epochs,
        "auxiliary_epochs": args.auxiliary_epochs,
        "explainer_epochs": args.explainer_epochs,
    }
    if args.quick:
        settings.update(QUICK)
    try:
        run(
            args.output,
            seed=args.seed,
            verbose=0 if args.quiet else None,
            log=(lambda *_: None) if args.quiet else _print,
            **settings,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


# Tiny sizes for a pipeline check in seconds (tests, `--quick`).
QUICK = {
    "image_size": 32,
    "train_count": 64,
    "test_count": 16,
    "classifier_epochs": 1,
    "auxiliary_epochs": 1,
    "explainer_epochs": 1,
    "batch_size": 16,
    "grid_count": 8,
}


# === Helpers ===


def _settings(settings):
    config, loss_config = dict(DEFAULTS), dict(LOSS)
    for key, value in settings.items():
        if key in config:
            config[key] = value
        elif key in loss_config:
            loss_config[key] = value
        else:
            raise ValueError(
                f"Unknown demo setting. Received: {key}={value!r}. Known: "
                f"{sorted(DEFAULTS) + sorted(LOSS)}"
            )
    for key in (
        "image_size",
        "train_count",
        "test_count",
        "classifier_epochs",
        "auxiliary_epochs",
        "explainer_epochs",
        "batch_size",
        "grid_count",
    ):
        value = config[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or value < 1
        ):
            raise ValueError(
                f"`{key}` must be a positive integer. Received: {key}={value!r}"
            )
    if config["train_count"] < config["batch_size"]:
        raise ValueError(
            "`train_count` must be at least `batch_size`. Received: "
            f"train_count={config['train_count']}, batch_size={config['batch_size']}"
        )
    return config, loss_config


def _train_classifier(model, images, labels, config, part, verbose):
    import keras

    epochs = config[f"{part}_epochs"]
    steps = -(-len(images) // config["batch_size"]) * epochs
    # Train through a wrapper that shares the layers, so that `model` itself
    # stays uncompiled: a compiled model's loss and accuracy trackers would
    # otherwise show up among the explainer's metrics (see the report).
    trainer = keras.Model(model.inputs, model.outputs, name=f"{model.name}_trainer")
    trainer.compile(
        optimizer=keras.optimizers.Adam(_one_cycle(3e-3, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    trainer.fit(
        images,
        labels,
        epochs=epochs,
        batch_size=config["batch_size"],
        shuffle=True,
        verbose=verbose,
    )


def _one_cycle(peak, steps):
    """Warm-up over the first 30% of the steps to `peak`, cosine decay after."""
    import keras

    warmup = max(1, int(0.3 * steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 25.0,
        warmup_target=peak,
        warmup_steps=warmup,
        decay_steps=max(1, steps - warmup),
        alpha=1e-3,
    )


def _accuracy(model, images, labels, batch_size):
    logits = model.predict(images, batch_size=batch_size * 4, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def _centre_maps(count, size):
    coords = np.arange(size) + 0.5 - size / 2
    bump = np.exp(
        -(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * (size / 8) ** 2)
    )
    return np.broadcast_to(bump, (count, size, size))


def _write_text(path, text):
    """Writes `text` next to `path` and renames it into place (never half-written)."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text + "\n")
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _markdown(metrics):
    config = metrics["settings"]
    timings = metrics["timings_s"]
    lines = [
        "# P-TAME demo on synthetic shapes",
        "",
        f"Backend `{metrics['backend']}`, seed {metrics['seed']}, "
        f"{config['train_count']} training and {config['test_count']} held-out "
        f"{config['image_size']}x{config['image_size']} images, "
        f"{config['num_classes']} classes.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| classifier accuracy (held-out) | {metrics['classifier_accuracy']:.3f} |",
        f"| auxiliary network accuracy (held-out) | {metrics['auxiliary_accuracy']:.3f} |",
        f"| kept (prediction unchanged on image x own map) | {metrics['kept']:.3f} |",
        f"| pointing game (map peak on the object) | {metrics['pointing_game']:.3f} |",
        f"| mass inside (share of map mass on the object) | {metrics['mass_inside']:.3f} |",
        f"| mean map value | {metrics['mean_map_area']:.3f} |",
        f"| baseline: pointing game of a centre peak | "
        f"{metrics['baselines']['pointing_game_centre']:.3f} |",
        f"| baseline: mass inside of a uniform map | "
        f"{metrics['baselines']['mass_inside_uniform']:.3f} |",
        "",
        "| phase | seconds |",
        "|---|---|",
    ]
    lines += [f"| {phase} | {timings[phase]:.1f} |" for phase in (*PHASES, "total")]
    lines += [
        "",
        "Loss: " + ", ".join(f"{k}={v}" for k, v in metrics["loss"].items()),
    ]
    return "\n".join(lines)


def _print(*args):
    print(*args, flush=True)


if __name__ == "__main__":
    sys.exit(main())
