"""The demo's run, one function a phase: data, classifier, auxiliary network,
explainer, evaluation, outputs."""

import contextlib
import json
import os
import sys
import time
import types

import keras
import numpy as np

from keras_ptame import visualize
from keras_ptame.baselines.centre_maps import CentreMaps
from keras_ptame.callbacks import LOGGED_COUNT, MapsLogger, check_maps_directory
from keras_ptame.datasets import synthetic
from keras_ptame.demo.config import EXPLAINER_WEIGHT_DECAY, DemoConfig
from keras_ptame.demo.models import AUXILIARY_LAYERS, build_auxiliary, build_classifier
from keras_ptame.evaluation.per_class import class_rows
from keras_ptame.layers.auxiliary_extractor import AuxiliaryExtractor
from keras_ptame.layers.backbone import Backbone
from keras_ptame.losses.perturbation_loss import PerturbationLoss
from keras_ptame.metrics.localization import mass_inside, pointing_game
from keras_ptame.models.ptame import PTAME
from keras_ptame.recipes import one_cycle, one_cycle_adamw
from keras_ptame.utils.files import atomic_path, check_outputs, write_text
from keras_ptame.utils.tables import markdown_table

# The phases of `run`, with the line logged as each begins.
PHASES = {
    "data": "Generating synthetic shapes with object masks",
    "classifier": "Training the classifier to explain",
    "auxiliary": "Training the auxiliary feature network",
    "explainer": "Training the P-TAME explainer (decoder only)",
    "evaluation": "Explaining the held-out images and scoring the maps",
    "outputs": "Writing pictures and models",
}
# The files `run` writes into its output folder.
DEMO_FILES = (
    "explanations.png",
    "examples.png",
    "classifier.keras",
    "auxiliary.keras",
    "ptame.keras",
    "metrics.json",
    "metrics.md",
)
# The reference centre peak: a Gaussian of an eighth of the image's side.
CENTRE_SIGMA = 0.125
# A class is flagged when most of its held-out maps found no evidence (or
# are misranked).
_FLAGGED_SHARE = 0.5
# The per-class table of metrics.md: its columns and the rows' keys.
_PER_CLASS_HEADER = [
    "explained class",
    "count",
    "pointing game",
    "flat maps",
    "misranked maps",
    "median evidence",
]
_PER_CLASS_COLUMNS = (
    "pointing_game",
    "flat_share",
    "misranked_share",
    "median_evidence",
)


def run(
    output_dir,
    seed=None,
    verbose=None,
    log=print,
    config=None,
    overwrite=False,
    **settings,
):
    """Runs the whole demo and writes its pictures and metrics to `output_dir`.

    Args:
        output_dir: str or path-like. Folder for the outputs (created).
        seed: int. Seed of the data and of the weights. Defaults to `None`
            (the config's seed, `0` unless set).
        verbose: Keras verbosity of the training progress. Defaults to `None`
            (progress bars on a terminal, one line per epoch otherwise).
        log: callable. Prints the phase lines. Defaults to `print`.
        config: `DemoConfig`. Defaults to `None` (`DemoConfig()`).
        overwrite: bool. Whether to replace the demo's files (`DEMO_FILES`)
            if they exist in `output_dir`; if not, an existing one is refused
            before any training (`FileExistsError`). Either way, nothing is
            written through a symbolic link inside `output_dir` (`ValueError`).
            Defaults to `False`.
        **settings: overrides of the config's fields (sizes, epochs, learning
            rate, `fill`, the `PerturbationLoss` coefficients).

    Returns:
        The metrics dict that `metrics.json` holds.

    Examples:
    ```python
    from keras_ptame import demo

    metrics = demo.run("demo_output", train_count=600, explainer_epochs=1)
    metrics["pointing_game"]
    ```
    """
    config = _resolve_config(config, seed, settings)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    output_dir = os.fspath(output_dir)
    check_outputs(output_dir, DEMO_FILES, overwrite, option="output_dir")
    if config.log_maps is not None:
        check_maps_directory(config.log_maps, overwrite)
    os.makedirs(output_dir, exist_ok=True)
    size = config.image_size
    log(
        f"P-TAME demo: backend {keras.config.backend()}, seed {config.seed}, "
        f"{config.train_count} training and {config.test_count} held-out "
        f"{size}x{size} images, {config.num_classes} classes"
        + ("" if config.none_class else " and no 'none' class")
        + f" -> {output_dir}"
    )
    timings, metrics = {}, {"backend": keras.config.backend(), "seed": config.seed}
    started = time.perf_counter()
    with _phase(timings, "data", log):
        data = _make_data(config)
    with _phase(timings, "classifier", log):
        classifier = _train_network("classifier", config, data, verbose, metrics, log)
    with _phase(timings, "auxiliary", log):
        auxiliary = _train_network("auxiliary", config, data, verbose, metrics, log)
    with _phase(timings, "explainer", log):
        callbacks = _maps_logger(config, data, overwrite)
        explainer = _train_explainer(
            config, data, classifier, auxiliary, verbose, callbacks
        )
        metrics["explainer_training"] = _last_epoch(explainer.history)
    with _phase(timings, "evaluation", log):
        outputs = _evaluate(config, data, classifier, explainer, metrics, log)
    with _phase(timings, "outputs", log):
        models = {"classifier": classifier, "auxiliary": auxiliary, "ptame": explainer}
        files = _write_outputs(output_dir, config, data, outputs, models)
    timings["total"] = time.perf_counter() - started
    metrics.update(
        settings=config.settings(),
        loss=config.loss_settings(),
        timings_s={key: round(value, 2) for key, value in timings.items()},
        files=files + ["metrics.json", "metrics.md"],
    )
    write_text(os.path.join(output_dir, "metrics.json"), json.dumps(metrics, indent=2))
    write_text(os.path.join(output_dir, "metrics.md"), _markdown(metrics))
    log(
        f"Done in {timings['total']:.0f} s: accuracy "
        f"{metrics['classifier_accuracy']:.3f}, kept {metrics['kept']:.3f}, "
        f"pointing game {metrics['pointing_game']:.3f}, mass inside "
        f"{metrics['mass_inside']:.3f}. Outputs in {output_dir}"
    )
    return metrics


def _make_data(config):
    """The explainer's training images, the classifiers' (with the "none"
    class, or without it and with a dark class), and the held-out images with
    their labels and masks."""
    shapes = {"image_size": config.image_size, "num_classes": config.num_classes}
    names = synthetic.shape_names(config.num_classes)
    train_images, train_labels, _ = config.draw_shapes()
    test_images, test_labels, test_masks = config.draw_shapes(held_out=True)
    data = types.SimpleNamespace(
        train_images=train_images,
        classifier_images=train_images,
        classifier_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        test_masks=test_masks,
        class_names=names,
    )
    if not config.none_class:
        return data
    # A "none" class: without it the (colour-blind) classifier sees a shape in
    # a black image or in the silhouette left by a removed object, so that the
    # explainer could keep a class by removing the object it points at.
    count = max(1, config.train_count // config.num_classes)
    none = synthetic.make_negatives(count, seed=config.seed + 20_000, **shapes)
    data.classifier_images = np.concatenate([train_images, none])
    data.classifier_labels = np.concatenate(
        [train_labels, np.full(len(none), config.num_classes, "int32")]
    )
    data.class_names = names + ["none"]
    return data


def _train_network(part, config, data, verbose, metrics, log):
    """Trains the classifier or the auxiliary network; notes its accuracy.

    The paper's auxiliary network is an ImageNet ResNet-18, whose features
    respond to objects; a random network's would not, so ours is trained too,
    on the same data, with its own architecture, weights and preprocessing.
    """
    build = build_classifier if part == "classifier" else build_auxiliary
    keras.utils.set_random_seed(config.seed + int(part == "auxiliary"))
    model = build(config.image_size, len(data.class_names))
    epochs = getattr(config, f"{part}_epochs")
    steps = -(-len(data.classifier_images) // config.batch_size) * epochs
    # Train through a wrapper that shares the layers, so that `model` itself
    # stays uncompiled: a compiled model's loss and accuracy trackers would
    # otherwise show up among the explainer's metrics.
    trainer = keras.Model(model.inputs, model.outputs, name=f"{model.name}_trainer")
    trainer.compile(
        optimizer=keras.optimizers.Adam(one_cycle(3e-3, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    fit = {"batch_size": config.batch_size, "shuffle": True, "verbose": verbose}
    trainer.fit(data.classifier_images, data.classifier_labels, epochs=epochs, **fit)
    logits = model.predict(
        data.test_images, batch_size=config.batch_size * 4, verbose=0
    )
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == data.test_labels))
    metrics[f"{part}_accuracy"] = accuracy
    log(f"      {part} accuracy on held-out images: {accuracy:.3f}")
    return model


def _maps_logger(config, data, overwrite):
    """`[MapsLogger]` of the first held-out images if `log_maps`, else `[]`."""
    if config.log_maps is None:
        return []
    return [
        MapsLogger(
            data.test_images[:LOGGED_COUNT],
            config.log_maps,
            class_names=data.class_names,
            overwrite=overwrite,
        )
    ]


def _train_explainer(config, data, classifier, auxiliary, verbose, callbacks=()):
    keras.utils.set_random_seed(config.seed + 2)
    explainer = PTAME(
        Backbone(classifier),
        AuxiliaryExtractor(auxiliary, layer_names=AUXILIARY_LAYERS),
        num_classes=len(data.class_names),
        fill=config.fill,
    )
    steps = -(-config.train_count // config.batch_size) * config.explainer_epochs
    explainer.compile(
        optimizer=one_cycle_adamw(
            config.explainer_learning_rate, steps, EXPLAINER_WEIGHT_DECAY
        ),
        loss=PerturbationLoss(**config.loss_settings()),
    )
    fit = {"batch_size": config.batch_size, "shuffle": True, "verbose": verbose}
    explainer.fit(
        data.train_images,
        epochs=config.explainer_epochs,
        callbacks=list(callbacks),
        **fit,
    )
    return explainer


def _evaluate(config, data, classifier, explainer, metrics, log):
    """Explains the held-out images and scores the maps into `metrics`."""
    batch_size = config.batch_size * 4
    outputs = explainer.explain_outputs(data.test_images, batch_size=batch_size)
    maps, masks = outputs["maps"], data.test_masks
    masked = data.test_images.astype("float32") * maps[..., None]
    masked_logits = classifier.predict(masked, batch_size=batch_size, verbose=0)
    centre = CentreMaps(sigma=CENTRE_SIGMA).explain(data.test_images)

    def mean(metric, scored):  # of `keras_ptame.metrics`' per-image scores
        return float(np.mean(metric(scored, masks=masks)))

    metrics.update(
        per_class=_per_class(data, outputs),
        kept=float(np.mean(np.argmax(masked_logits, -1) == outputs["classes"])),
        pointing_game=mean(pointing_game, maps),
        mass_inside=mean(mass_inside, maps),
        mean_map_area=float(np.mean(maps)),
        # What maps that know nothing score: a centre peak, and a uniform map
        # (whose mass inside is the object's share of the image).
        reference={
            "pointing_game_centre": mean(pointing_game, centre),
            "mass_inside_uniform": mean(mass_inside, np.ones_like(maps)),
        },
    )
    metrics["flagged_classes"] = _flagged(metrics["per_class"], "flat_share")
    metrics["misranked_classes"] = _flagged(metrics["per_class"], "misranked_share")
    log(
        f"      kept {metrics['kept']:.3f}, pointing game "
        f"{metrics['pointing_game']:.3f}, mass inside {metrics['mass_inside']:.3f}"
    )
    for name in metrics["flagged_classes"]:
        row = metrics["per_class"][name]
        log(
            f"      FLAGGED class {name!r}: {row['flat_share']:.0%} of its maps are "
            f"flat (median evidence {row['median_evidence']:.3f}): the explainer "
            f"found nothing the classifier needs for {name!r}, typically because "
            "it predicts that class on the fill image alone (see the warning "
            "before training)"
        )
    for name in metrics["misranked_classes"]:
        log(
            f"      FLAGGED class {name!r}: "
            f"{metrics['per_class'][name]['misranked_share']:.0%} of its maps are "
            f"misranked: they do not carry {name!r} (removing their top half cost "
            "the class no more than removing their bottom half: typically they "
            "cover the background, or the class needs nothing the map shows; "
            "see the warning after training)"
        )
    return outputs


def _flagged(per_class, share):
    """The classes with maps, most of which are flagged (`share` of their row)."""
    return [
        name
        for name, row in per_class.items()
        if row["count"] and row[share] >= _FLAGGED_SHARE
    ]


def _per_class(data, outputs):
    """Per explained class: count, pointing game, shares of flat and misranked
    maps, evidence."""
    rows = class_rows(
        outputs["classes"],
        {
            "pointing_game": pointing_game(outputs["maps"], masks=data.test_masks),
            "flat_share": outputs["flat"],
            "misranked_share": outputs["misranked"],
            "median_evidence": outputs["evidence"],
        },
        labels=range(len(data.class_names)),
        statistics={"median_evidence": np.median},
    )
    return {data.class_names[label]: row for label, row in rows.items()}


def _write_outputs(output_dir, config, data, outputs, models):
    """Writes the two pictures and the models; returns the file names."""
    shown = slice(0, min(config.grid_count, len(data.test_images)))
    names = data.class_names
    titles = [
        f"true {names[true]}\npred {names[pred]} {score:.2f}"
        + (" FLAT" if flat else " MISRANKED" if misranked else "")
        for true, pred, score, flat, misranked in zip(
            data.test_labels[shown],
            outputs["classes"][shown],
            outputs["scores"][shown],
            outputs["flat"][shown],
            outputs["misranked"][shown],
            strict=True,
        )
    ]
    figure = visualize.grid(
        data.test_images[shown], outputs["maps"][shown], titles=titles, columns=8
    )
    visualize.save_png(figure, os.path.join(output_dir, "explanations.png"))
    rows = [
        visualize.side_by_side(image, explanation, scale=3)
        for image, explanation in zip(data.test_images[:4], outputs["maps"][:4])
    ]
    spacer = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    examples = np.concatenate([part for row in rows for part in (row, spacer)][:-1])
    visualize.save_png(examples, os.path.join(output_dir, "examples.png"))
    # The trained models too, so that others (benchmarks/compare.py, the CLI)
    # explain the same classifier without training it again.
    for name, model in models.items():
        with atomic_path(os.path.join(output_dir, f"{name}.keras")) as temporary:
            model.save(temporary)
    return ["explanations.png", "examples.png"] + [f"{name}.keras" for name in models]


def _resolve_config(config, seed, settings):
    config = DemoConfig() if config is None else config
    if not isinstance(config, DemoConfig):
        raise ValueError(f"`config` must be a `DemoConfig`. Received: {config!r}")
    return config.replace(**settings, **({} if seed is None else {"seed": seed}))


def _last_epoch(history):
    return {key: float(values[-1]) for key, values in history.history.items()}


@contextlib.contextmanager
def _phase(timings, name, log):
    """Logs the phase's line and times the block into `timings[name]`."""
    log(f"[{list(PHASES).index(name) + 1}/{len(PHASES)}] {PHASES[name]}...")
    clock = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - clock


def _markdown(metrics):
    config, reference = metrics["settings"], metrics["reference"]
    rows = [
        ("classifier accuracy (held-out)", metrics["classifier_accuracy"]),
        ("auxiliary network accuracy (held-out)", metrics["auxiliary_accuracy"]),
        ("kept (prediction unchanged on image x own map)", metrics["kept"]),
        ("pointing game (map peak on the object)", metrics["pointing_game"]),
        ("mass inside (share of map mass on the object)", metrics["mass_inside"]),
        ("mean map value", metrics["mean_map_area"]),
        ("reference: centre peak's pointing game", reference["pointing_game_centre"]),
        ("reference: uniform map's mass inside", reference["mass_inside_uniform"]),
    ]
    size = config["image_size"]
    per_class = [
        [name, str(row["count"])]
        + [_value_cell(row[key]) for key in _PER_CLASS_COLUMNS]
        for name, row in metrics["per_class"].items()
    ]
    timings = [[p, f"{metrics['timings_s'][p]:.1f}"] for p in (*PHASES, "total")]
    lines = [
        "# P-TAME demo on synthetic shapes",
        "",
        f"Backend `{metrics['backend']}`, seed {metrics['seed']}, "
        f"{config['train_count']} training and {config['test_count']} held-out "
        f"{size}x{size} images, {config['num_classes']} classes"
        + ("." if config["none_class"] else ", no 'none' class (squares drawn dark)."),
        "",
        markdown_table(
            ["metric", "value"],
            ([label, f"{value:.3f}"] for label, value in rows),
            text_columns=2,
        ),
        "Pointing game and mass inside as `keras_ptame.metrics` defines them "
        "(tied peaks score the share of them on the object).",
        "",
        markdown_table(_PER_CLASS_HEADER, per_class, text_columns=6),
        "Flagged classes (most maps flat: the classifier keeps the class on the "
        "fill image itself, so there is no evidence to show): "
        + (", ".join(metrics["flagged_classes"]) or "no class"),
        "",
        "Classes flagged misranked (most maps do not carry their class: the "
        "removal check in training found that removing their top half cost the "
        "class no more than removing their bottom half): "
        + (", ".join(metrics["misranked_classes"]) or "no class"),
        "",
        markdown_table(["phase", "seconds"], timings, text_columns=2),
        "Loss: " + ", ".join(f"{k}={v}" for k, v in metrics["loss"].items()),
    ]
    return "\n".join(lines)


def _value_cell(value):
    return "-" if value is None else f"{value:.3f}"
