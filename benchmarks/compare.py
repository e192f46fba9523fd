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

# The comparison's own settings; the demo's (`demo.DEFAULTS`) come first.
SETTINGS = {
    "test_count": 300,
    "rise_masks": 4000,
    "imputation": "linear",
    "seed": 0,
    "reuse": False,
}
# Tiny sizes for `--quick`, a check of the pipeline.
QUICK = {
    "train_count": 256,
    "test_count": 8,
    "rise_masks": 200,
    "classifier_epochs": 1,
    "auxiliary_epochs": 1,
    "explainer_epochs": 1,
}


def _last_spatial_layer(model):
    """Grad-CAM's usual choice: the last layer with a (B, h, w, C) output."""
    for layer in reversed(model.layers):
        if len(layer.output.shape) == 4:
            return layer.name
    raise ValueError("The classifier has no spatial layer for Grad-CAM.")


def make_config(**settings):
    """The demo's settings (but its `test_count`), then `SETTINGS`, overridden."""
    from keras_ptame import demo

    config = {k: v for k, v in demo.DEFAULTS.items() if k != "test_count"}
    config.update(SETTINGS)
    unknown = set(settings) - set(config)
    if unknown:
        raise ValueError(f"Unknown settings. Received: {sorted(unknown)}")
    config.update(settings)
    return config


def train_models(config, output, verbose, log):
    """Trains the demo's models with `demo.run` (or, with `reuse`, loads them).

    The demo's own training, data and settings: one code path, so that the
    table explains the same classifier the demo reports on.
    """
    import keras

    from keras_ptame import demo

    paths = {
        name: os.path.join(output, f"{name}.keras") for name in ("classifier", "ptame")
    }
    timings = {}
    if not (config["reuse"] and all(os.path.exists(path) for path in paths.values())):
        settings = {
            key: value
            for key, value in config.items()
            if key in demo.DEFAULTS and key != "test_count"
        }
        metrics = demo.run(
            output, seed=config["seed"], verbose=verbose, log=log, **settings
        )
        timings = {
            key: metrics["timings_s"][key]
            for key in ("classifier", "auxiliary", "explainer")
        }
    else:
        log("Loading the trained models from", output)
    classifier = keras.saving.load_model(paths["classifier"])
    explainer = keras.saving.load_model(paths["ptame"])
    return classifier, explainer, timings


def make_explainers(classifier, explainer, config):
    """The table's rows: P-TAME and the baselines, by name."""
    from keras_ptame import baselines

    layer = _last_spatial_layer(classifier)
    return {
        "P-TAME": explainer,
        f"RISE ({config['rise_masks']} masks)": baselines.RISE(
            classifier, num_masks=config["rise_masks"], seed=config["seed"]
        ),
        f"Grad-CAM (`{layer}`)": baselines.GradCAM(classifier, layer),
        "gradient": baselines.GradientSaliency(classifier),
        "random": baselines.RandomMaps(seed=config["seed"]),
        "centre": baselines.CentreMaps(),
    }


def run(output="benchmarks/results", verbose=2, log=print, **settings):
    """Trains, explains and scores; returns the `EvaluationTable`."""
    from keras_ptame.datasets import synthetic
    from keras_ptame.evaluation import evaluate

    config = make_config(**settings)
    started = time.perf_counter()
    classifier, explainer, timings = train_models(config, output, verbose, log)
    images, labels, masks = synthetic.make_shapes(
        config["test_count"],
        image_size=config["image_size"],
        num_classes=config["num_classes"],
        seed=config["seed"] + 10_000,
    )
    logits = classifier.predict(images, batch_size=128, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == labels))
    log(f"Classifier accuracy on {len(images)} held-out images: {accuracy:.3f}")
    clock = time.perf_counter()
    log("Explaining and scoring...")
    table = evaluate(
        make_explainers(classifier, explainer, config),
        classifier,
        images,
        masks=masks,
        imputation=config["imputation"],
        verbose=1 if verbose == 1 else 0,
        seed=config["seed"],
    )
    timings["evaluation"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    summary = _finish(table, config, accuracy, timings, output)
    log(table.to_markdown())
    log(json.dumps(summary["timings_s"]))
    return table


def _finish(table, config, accuracy, timings, output):
    """Adds the setting's notes, writes the table and `settings.json`."""
    import keras

    from keras_ptame.utils.files import write_text

    rise = next(name for name in table.rows if name.startswith("RISE"))
    ratio = table.rows[rise]["seconds"] / table.rows["P-TAME"]["seconds"]
    table.notes += [
        f"Synthetic shapes, {config['num_classes']} shape classes and 'none', the "
        f"demo's classifier (held-out accuracy {accuracy:.3f}); P-TAME trained "
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
    write_text(os.path.join(output, "settings.json"), json.dumps(summary, indent=2))
    return summary


def main(argv=None):
    from keras_ptame.metrics.imputation import IMPUTATIONS

    parser = argparse.ArgumentParser(
        prog="python benchmarks/compare.py",
        description="P-TAME against baselines on synthetic shapes with known masks.",
    )
    parser.add_argument("--output", default="benchmarks/results")
    parser.add_argument("--test-count", type=int, default=SETTINGS["test_count"])
    parser.add_argument("--train-count", type=int, default=None)
    parser.add_argument("--rise-masks", type=int, default=SETTINGS["rise_masks"])
    parser.add_argument("--imputation", choices=IMPUTATIONS, default="linear")
    parser.add_argument("--seed", type=int, default=SETTINGS["seed"])
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
        settings.update(QUICK)
    run(args.output, verbose=2, log=lambda *a: print(*a, flush=True), **settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
