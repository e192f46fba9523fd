"""P-TAME against RISE, Grad-CAM, gradient saliency, random and centre maps.

On the synthetic shapes with known object masks (`keras_ptame.datasets`),
with the demo's classifier and auxiliary network (`keras_ptame.demo`), it
trains the classifier, the auxiliary network and the P-TAME explainer, then
scores every method on held-out images with `keras_ptame.evaluate`: AD/IC,
ROAD, pointing game, mass inside and seconds per explanation.

```
KERAS_BACKEND=jax python benchmarks/compare.py --output benchmarks/results
```

Writes `evaluation.md` and `evaluation.csv` (the table), `settings.json`
and the trained `classifier.keras`, `auxiliary.keras` and `ptame.keras`
(reused by `--reuse`, which skips training).
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def _train(model, images, labels, epochs, batch_size, verbose):
    import keras

    steps = -(-len(images) // batch_size) * epochs
    # Through a wrapper sharing the layers, so that `model` stays uncompiled.
    trainer = keras.Model(model.inputs, model.outputs)
    trainer.compile(
        optimizer=keras.optimizers.Adam(_one_cycle(3e-3, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    trainer.fit(
        images,
        labels,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=verbose,
    )


def _one_cycle(peak, steps):
    import keras

    warmup = max(1, int(0.3 * steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 25.0,
        warmup_target=peak,
        warmup_steps=warmup,
        decay_steps=max(1, steps - warmup),
        alpha=1e-3,
    )


def _last_spatial_layer(model):
    """Grad-CAM's usual choice: the last layer with a (B, h, w, C) output."""
    for layer in reversed(model.layers):
        if len(layer.output.shape) == 4:
            return layer.name
    raise ValueError("The classifier has no spatial layer for Grad-CAM.")


def train_models(config, output, verbose, log):
    """Trains (or, with `reuse`, loads) the classifier and the explainer."""
    import keras

    import keras_ptame as kp
    from keras_ptame import demo
    from keras_ptame.datasets import synthetic

    paths = {
        name: os.path.join(output, f"{name}.keras")
        for name in ("classifier", "auxiliary", "ptame")
    }
    if config["reuse"] and all(os.path.exists(path) for path in paths.values()):
        log("Loading the trained models from", output)
        classifier = keras.saving.load_model(paths["classifier"])
        explainer = keras.saving.load_model(paths["ptame"])
        return classifier, explainer, {}

    size, num_classes = config["image_size"], config["num_classes"]
    batch_size = config["batch_size"]
    seed = config["seed"]
    images, labels, _ = synthetic.make_shapes(
        config["train_count"], image_size=size, num_classes=num_classes, seed=seed
    )
    # As in the demo: one class more, "none", for backgrounds without an
    # object, some darkened to black. Without it the classifier predicts a
    # shape for a black image, and an explainer keeps that prediction by
    # blacking out everything (maps that point nowhere).
    empty = synthetic.make_backgrounds(
        config["train_count"] // num_classes, image_size=size, seed=seed + 20_000
    )
    rng = np.random.default_rng(seed + 30_000)
    darkening = np.where(rng.random(len(empty)) < 0.5, rng.random(len(empty)), 1.0)
    empty = np.rint(empty * darkening[:, None, None, None]).astype("uint8")
    classifier_images = np.concatenate([images, empty])
    classifier_labels = np.concatenate(
        [labels, np.full(len(empty), num_classes, "int32")]
    )
    outputs = num_classes + 1
    timings = {}
    clock = time.perf_counter()
    log("Training the classifier (demo architecture)...")
    keras.utils.set_random_seed(seed)
    classifier = demo.build_classifier(size, outputs)
    _train(
        classifier,
        classifier_images,
        classifier_labels,
        config["classifier_epochs"],
        batch_size,
        verbose,
    )
    timings["classifier"] = time.perf_counter() - clock

    clock = time.perf_counter()
    log("Training the auxiliary network (demo architecture)...")
    keras.utils.set_random_seed(seed + 1)
    auxiliary = demo.build_auxiliary(size, outputs)
    _train(
        auxiliary,
        classifier_images,
        classifier_labels,
        config["auxiliary_epochs"],
        batch_size,
        verbose,
    )
    timings["auxiliary"] = time.perf_counter() - clock

    clock = time.perf_counter()
    log("Training the P-TAME explainer...")
    keras.utils.set_random_seed(seed + 2)
    explainer = kp.PTAME(
        kp.Backbone(classifier),
        kp.AuxiliaryExtractor(auxiliary, layer_names=demo.AUXILIARY_LAYERS),
        num_classes=outputs,
        baseline=config.get("baseline", "black"),
    )
    steps = -(-len(images) // batch_size) * config["explainer_epochs"]
    explainer.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=_one_cycle(config["explainer_learning_rate"], steps),
            amsgrad=True,
        ),
        loss=kp.PerturbationLoss(**demo.LOSS),
    )
    explainer.fit(
        images,
        epochs=config["explainer_epochs"],
        batch_size=batch_size,
        shuffle=True,
        verbose=verbose,
    )
    timings["explainer"] = time.perf_counter() - clock
    os.makedirs(output, exist_ok=True)
    classifier.save(paths["classifier"])
    auxiliary.save(paths["auxiliary"])
    explainer.save(paths["ptame"])
    return classifier, explainer, timings


def run(output="benchmarks/results", verbose=2, log=print, **settings):
    """Trains, explains and scores; returns the `EvaluationTable`."""
    import keras

    from keras_ptame import baselines, demo
    from keras_ptame.datasets import synthetic
    from keras_ptame.evaluation import evaluate

    config = {
        key: demo.DEFAULTS[key]
        for key in (
            "baseline",
            "image_size",
            "num_classes",
            "train_count",
            "classifier_epochs",
            "auxiliary_epochs",
            "explainer_epochs",
            "batch_size",
            "explainer_learning_rate",
        )
        if key in demo.DEFAULTS
    }
    config.update(
        {
            "test_count": 100,
            "rise_masks": 4000,
            "imputation": "linear",
            "seed": 0,
            "reuse": False,
        }
    )
    unknown = set(settings) - set(config)
    if unknown:
        raise ValueError(f"Unknown settings. Received: {sorted(unknown)}")
    config.update(settings)
    started = time.perf_counter()
    classifier, explainer, timings = train_models(config, output, verbose, log)

    test_images, test_labels, test_masks = synthetic.make_shapes(
        config["test_count"],
        image_size=config["image_size"],
        num_classes=config["num_classes"],
        seed=config["seed"] + 10_000,
    )
    logits = classifier.predict(test_images, batch_size=128, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == test_labels))
    log(f"Classifier accuracy on {len(test_images)} held-out images: {accuracy:.3f}")
    layer = _last_spatial_layer(classifier)
    explainers = {
        "P-TAME": explainer,
        f"RISE ({config['rise_masks']} masks)": baselines.RISE(
            classifier, num_masks=config["rise_masks"], seed=config["seed"]
        ),
        f"Grad-CAM (`{layer}`)": baselines.GradCAM(classifier, layer),
        "gradient": baselines.GradientSaliency(classifier),
        "random": baselines.RandomMaps(seed=config["seed"]),
        "centre": baselines.CentreMaps(),
    }
    clock = time.perf_counter()
    log("Explaining and scoring...")
    table = evaluate(
        explainers,
        classifier,
        test_images,
        masks=test_masks,
        imputation=config["imputation"],
        verbose=1 if verbose == 1 else 0,
        seed=config["seed"],
    )
    timings["evaluation"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    rise = next(name for name in table.rows if name.startswith("RISE"))
    ratio = table.rows[rise]["seconds"] / table.rows["P-TAME"]["seconds"]
    table.notes += [
        f"Synthetic shapes, {config['num_classes']} shape classes and 'none', the demo's classifier "
        f"(held-out accuracy {accuracy:.3f}); P-TAME trained "
        f"{config['explainer_epochs']} epochs on {config['train_count']} images.",
        f"RISE takes {ratio:,.0f} times as long as P-TAME per explanation.",
    ]
    table.save(output)
    summary = {
        "backend": keras.config.backend(),
        "settings": config,
        "classifier_accuracy": accuracy,
        "rise_over_ptame_seconds": ratio,
        "timings_s": {key: round(value, 1) for key, value in timings.items()},
    }
    with open(os.path.join(output, "settings.json"), "w") as file:
        json.dump(summary, file, indent=2)
    log(table.to_markdown())
    log(json.dumps(summary["timings_s"]))
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/compare.py",
        description="P-TAME against baselines on synthetic shapes with known masks.",
    )
    parser.add_argument("--output", default="benchmarks/results")
    parser.add_argument("--test-count", type=int, default=100)
    parser.add_argument("--train-count", type=int, default=None)
    parser.add_argument("--rise-masks", type=int, default=4000)
    parser.add_argument("--imputation", choices=("linear", "telea"), default="linear")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="load trained models")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes to check the pipeline"
    )
    args = parser.parse_args(argv)
    settings = {
        "test_count": args.test_count,
        "rise_masks": args.rise_masks,
        "imputation": args.imputation,
        "seed": args.seed,
        "reuse": args.reuse,
    }
    if args.train_count is not None:
        settings["train_count"] = args.train_count
    if args.quick:
        settings.update(
            train_count=256,
            test_count=8,
            rise_masks=200,
            classifier_epochs=1,
            auxiliary_epochs=1,
            explainer_epochs=1,
        )
    run(args.output, verbose=2, log=lambda *a: print(*a, flush=True), **settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
