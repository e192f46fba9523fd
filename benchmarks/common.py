"""What the benchmarks share and the package does not offer.

Run as `python benchmarks/<name>.py`, a benchmark imports this module as a
sibling: Python puts the script's folder on `sys.path`.

- The paper's setting with random weights (`speed.py`, `profile_explain.py`):
  a ResNet-50 classifier explained through a ResNet-18 auxiliary network.
- The comparison on the demo's synthetic shapes (`compare.py`,
  `tune_compare.py`): its settings, the demo's trained models, the baselines
  beside P-TAME, and the table's notes and files.
"""

import json
import os

# === The paper's setting (random weights) ===


def resnet18_features(image_size):
    """A ResNet-18 whose four stage outputs are named stage1..stage4."""
    import keras

    def block(x, filters, stride, name):
        shortcut = x
        y = keras.layers.Conv2D(
            filters, 3, stride, "same", use_bias=False, name=name + "_c1"
        )(x)
        y = keras.layers.BatchNormalization(name=name + "_b1")(y)
        y = keras.layers.ReLU()(y)
        y = keras.layers.Conv2D(
            filters, 3, 1, "same", use_bias=False, name=name + "_c2"
        )(y)
        y = keras.layers.BatchNormalization(name=name + "_b2")(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = keras.layers.Conv2D(
                filters, 1, stride, use_bias=False, name=name + "_down"
            )(shortcut)
            shortcut = keras.layers.BatchNormalization(name=name + "_bd")(shortcut)
        return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))

    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(64, 7, 2, "same", use_bias=False)(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.MaxPooling2D(3, 2, "same")(x)
    for stage, (filters, stride) in enumerate(
        [(64, 1), (128, 2), (256, 2), (512, 2)], start=1
    ):
        x = block(x, filters, stride, f"s{stage}a")
        x = block(x, filters, 1, f"s{stage}b")
        x = keras.layers.Identity(name=f"stage{stage}")(x)
    return keras.Model(inputs, x, name="resnet18")


def build(image_size, dtype):
    """The classifier (Keras' ResNet-50) and its explainer over `resnet18_features`."""
    import keras

    import keras_ptame as kp

    if dtype != "float32":
        keras.config.set_dtype_policy(dtype)
    classifier = keras.applications.ResNet50(
        weights=None,
        input_shape=(image_size, image_size, 3),
        classifier_activation=None,
    )
    auxiliary = resnet18_features(image_size)
    explainer = kp.PTAME(
        kp.Backbone(classifier),
        kp.AuxiliaryExtractor(
            auxiliary, layer_names=[f"stage{i}" for i in range(1, 5)]
        ),
    )
    return classifier, explainer


# === The comparison on synthetic shapes ===

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


def demo_config(config):
    """The comparison's settings as the demo's `DemoConfig` (its data draws)."""
    from keras_ptame import demo

    settings = {key: config[key] for key in demo.DEFAULTS}
    return demo.DemoConfig(**settings, seed=config["seed"])


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
        # The benchmark's own folder: a rerun replaces the demo's files.
        metrics = demo.run(
            output,
            seed=config["seed"],
            verbose=verbose,
            log=log,
            overwrite=True,
            **settings,
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


def speed_note(table):
    """RISE's seconds per explanation over P-TAME's, and the note saying it
    (a timing: it differs from run to run, unlike the scores)."""
    rise = next(name for name in table.rows if name.startswith("RISE"))
    ratio = table.rows[rise]["seconds"] / table.rows["P-TAME"]["seconds"]
    return ratio, f"RISE takes {ratio:,.0f} times as long as P-TAME per explanation."


def finish(table, config, accuracy, timings, output):
    """Adds the setting's notes, writes the table and `settings.json`."""
    import keras

    from keras_ptame.utils.files import write_text

    ratio, speed = speed_note(table)
    table.notes += [
        f"Synthetic shapes, {config['num_classes']} shape classes and 'none', the "
        f"demo's classifier (held-out accuracy {accuracy:.3f}); P-TAME trained "
        f"{config['explainer_epochs']} epochs on {config['train_count']} images.",
        speed,
    ]
    table.save(output, overwrite=True)
    summary = {
        "backend": keras.config.backend(),
        "settings": config,
        "classifier_accuracy": accuracy,
        "rise_over_ptame_seconds": ratio,
        "timings_s": {key: round(value, 1) for key, value in timings.items()},
    }
    write_text(os.path.join(output, "settings.json"), json.dumps(summary, indent=2))
    return summary
