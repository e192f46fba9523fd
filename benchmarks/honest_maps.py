"""Honest maps: what P-TAME draws for the class that the fill image predicts.

On the synthetic shapes (`keras_ptame.datasets`), the demo's classifier is
trained WITHOUT its "none" class and with the squares drawn near black
(`python -m keras_ptame.demo --no-none-class`): a black image is then
predicted a square, so the paper's objective is met for squares by an empty
map. For each configuration (a fill, or a change to the objective) a P-TAME
explainer of that one classifier is trained with the demo's recipe and
scored per class on held-out images: the share of flat (flagged) maps, the
maps' evidence, pointing game, pixel AUC and mass inside, both on the maps
`explain` returns (flat ones all zeros) and on the min-max stretched sigmoid
maps (what `explain` drew before maps were flagged). The leading
configurations run again on the demo's default classifier (with its "none"
class), to check that a remedy does not break what worked there.

```
KERAS_BACKEND=jax .venv/bin/python benchmarks/honest_maps.py --output benchmarks/results
```

Writes `honest_maps.md` (the tables, the command), `honest_maps.csv` (per
class), `honest_maps.json` and `honest_maps.png` (flagged maps, a remedy).
The classifiers and auxiliary networks (`honest_maps*.models/`) and each
configuration's scores (`honest_maps*.cache/`) are reused by a second run;
`--fresh` retrains the explainers.
"""

import argparse
import csv
import json
import os
import sys
import time

import numpy as np

from keras_ptame.datasets.synthetic import shape_names
from keras_ptame.demo import DARK_CLASS, EXPLAINER_WEIGHT_DECAY

# The demo's settings of the classifier and auxiliary network, held-out
# images from the demo's held-out seed stream.
DEMO = {"test_count": 600, "seed": 0}
# The decoder's finest scale: a quarter of the input's size (the auxiliary
# network's stages 2 and 3, the demo's taps before the bars' maps were found
# to miss them) or half (stages 1 to 3, the demo's taps since).
QUARTER = ("stage2", "stage3")
HALF = ("stage1", "stage2", "stage3")
# Each configuration: a fill, the taps, and `PerturbationLoss` arguments over
# the demo's.
CONFIGURATIONS = {
    "black (paper)": {"fill": "black", "layers": QUARTER},
    "mean": {"fill": "mean", "layers": QUARTER},
    "blur": {"fill": "blur", "layers": QUARTER},
    "noise": {"fill": "noise", "layers": QUARTER},
    "mixture": {"fill": "mixture", "layers": QUARTER},
    "black + deletion": {
        "fill": "black",
        "layers": QUARTER,
        "loss": {"deletion_coeff": 1.0},
    },
    "mixture + deletion": {
        "fill": "mixture",
        "layers": QUARTER,
        "loss": {"deletion_coeff": 1.0},
    },
    "mean + deletion": {
        "fill": "mean",
        "layers": QUARTER,
        "loss": {"deletion_coeff": 1.0},
    },
    "black or mean (mixture)": {"fill": ("black", "mean"), "layers": QUARTER},
    # The two leading fills again, from other initial weights of the decoder.
    "black (paper), seed 1": {"fill": "black", "layers": QUARTER, "seed": 1},
    "mean, seed 1": {"fill": "mean", "layers": QUARTER, "seed": 1},
    # Twice the demo's training: do the other classes' maps still improve?
    "black (paper), 6 epochs": {"fill": "black", "layers": QUARTER, "epochs": 6},
    "mixture, 6 epochs": {"fill": "mixture", "layers": QUARTER, "epochs": 6},
    # Maps at half the input's size: the thin bars.
    "black, finer maps": {"fill": "black", "layers": HALF},
    "mean, finer maps": {"fill": "mean", "layers": HALF},
    "black, finer maps, seed 1": {"fill": "black", "layers": HALF, "seed": 1},
}
# The demo's classifier without its "none" class (squares dark), and with it
# (does a remedy break what worked?): the files' tag, the configurations.
LEADING = ("black (paper)", "mean", "mixture", "black, finer maps", "mean, finer maps")
SETTINGS = {
    "no 'none' class": (False, "honest_maps", tuple(CONFIGURATIONS)),
    "with 'none' class": (True, "honest_maps_none", LEADING),
}
EPOCHS = ("classifier_epochs", "auxiliary_epochs", "explainer_epochs")
# The configuration whose maps the figure shows under the paper's.
FIGURE_REMEDY = "mean"
QUICK = dict(train_count=128, test_count=36, **dict.fromkeys(EPOCHS, 1))
COLUMNS = (
    "setting configuration class dark count accuracy flat_share evidence_p10 "
    "evidence_median evidence_p90 pointing_game pixel_auc mass_inside "
    "stretched_pointing_game stretched_pixel_auc stretched_mass_inside "
    "stretched_mean_map nan"
).split()


def train_base(config, folder, verbose, log):
    """The demo's no-"none" classifier and auxiliary network, trained once."""
    import keras

    from keras_ptame import demo

    paths = {
        name: os.path.join(folder, f"{name}.keras")
        for name in ("classifier", "auxiliary")
    }
    if not all(os.path.exists(path) for path in paths.values()):
        log("Training the demo's classifier without a 'none' class (cached)...")
        demo.run(folder, config=config, verbose=verbose, log=log, overwrite=True)
    return {name: keras.saving.load_model(path) for name, path in paths.items()}


def make_data(config):
    """The explainer's training images and the held-out images, as the demo draws them."""
    train, _, _ = config.draw_shapes()
    return train, config.draw_shapes(held_out=True)


def build_explainer(config, setup, models):
    """An untrained explainer of the classifier, with the configuration's fill."""
    from keras_ptame.layers.auxiliary_extractor import AuxiliaryExtractor
    from keras_ptame.layers.backbone import Backbone
    from keras_ptame.models.ptame import PTAME

    explainer = PTAME(
        Backbone(models["classifier"]),
        AuxiliaryExtractor(models["auxiliary"], layer_names=list(setup["layers"])),
        fill=setup["fill"],
    )
    explainer.build((None, config.image_size, config.image_size, 3))
    return explainer


def train_explainer(config, setup, models, train_images, verbose):
    """The demo's recipe for its explainer, with the configuration's fill and loss."""
    import keras

    from keras_ptame.losses.perturbation_loss import PerturbationLoss
    from keras_ptame.recipes import one_cycle_adamw

    keras.utils.set_random_seed(config.seed + 2 + setup.get("seed", 0))
    explainer = build_explainer(config, setup, models)
    epochs = setup.get("epochs", config.explainer_epochs)
    steps = -(-config.train_count // config.batch_size) * epochs
    explainer.compile(
        # The demo's optimiser.
        optimizer=one_cycle_adamw(
            config.explainer_learning_rate, steps, EXPLAINER_WEIGHT_DECAY
        ),
        loss=PerturbationLoss(**{**config.loss_settings(), **setup.get("loss", {})}),
    )
    history = explainer.fit(
        train_images,
        epochs=epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=verbose,
    )
    return explainer, {
        key: float(values[-1]) for key, values in history.history.items()
    }


def score(explainer, test, class_names, dark_class=None):
    """Per class of the held-out images: the rows of the table."""
    from keras_ptame.metrics import mass_inside, pointing_game
    from keras_ptame.metrics.pixel_auc import pixel_auc
    from keras_ptame.utils.maps import normalize_maps

    images, labels, masks = test
    outputs = explainer.explain_outputs(images, batch_size=128)
    sigmoid = explainer.explain(images, batch_size=128, normalize="none")
    stretched = normalize_maps(sigmoid)
    nan = int(np.isnan(outputs["maps"]).any() or np.isnan(outputs["evidence"]).any())
    delivered, scored = np.nan_to_num(outputs["maps"]), np.nan_to_num(stretched)
    per_image = {
        "pointing_game": pointing_game(delivered, masks=masks),
        "pixel_auc": pixel_auc(delivered, masks=masks),
        "mass_inside": mass_inside(delivered, masks=masks),
        "stretched_pointing_game": pointing_game(scored, masks=masks),
        "stretched_pixel_auc": pixel_auc(scored, masks=masks),
        "stretched_mass_inside": mass_inside(scored, masks=masks),
        "stretched_mean_map": scored.mean(axis=(1, 2)),
    }
    rows = []
    for index, name in enumerate(class_names):
        chosen = labels == index
        found = outputs["evidence"][chosen]
        row = {
            "class": name,
            "dark": int(index == dark_class),
            "count": int(chosen.sum()),
            "accuracy": float(np.mean(outputs["classes"][chosen] == index)),
            "flat_share": float(np.mean(outputs["flat"][chosen])),
            "evidence_p10": float(np.percentile(found, 10)),
            "evidence_median": float(np.median(found)),
            "evidence_p90": float(np.percentile(found, 90)),
            "nan": nan,
        }
        row.update({key: float(np.mean(v[chosen])) for key, v in per_image.items()})
        rows.append(row)
    return rows


def fill_predictions(classifier, images, class_names):
    """Per fill: each class that some image's fill image alone is predicted,
    with its highest probability (the package's check before training)."""
    from keras_ptame.layers.backbone import Backbone
    from keras_ptame.models.explanation import fill_predictions as predict
    from keras_ptame.models.fills import FILLS

    backbone = Backbone(classifier)
    return {
        fill: {
            class_names[k]: round(p, 3)
            for k, p in predict(backbone, images, fill).items()
        }
        for fill in (*FILLS, "noise")
    }


def figure(explainers, test, class_names, path):
    """Four squares and four other shapes (columns); rows: the paper's fill's
    stretched map (what `explain` drew before flagging), the map it returns
    now, and the map of each other explainer given (the remedy)."""
    from keras_ptame import visualize

    images, labels, _ = test
    dark = labels == DARK_CLASS
    images = images[np.r_[np.flatnonzero(dark)[:4], np.flatnonzero(~dark)[:4]]]
    (name, paper), *others = explainers.items()
    found = paper.explain_outputs(images)
    threshold, paper.evidence_threshold = paper.evidence_threshold, 0.0
    stretched = paper.explain(images)  # nothing flagged: as drawn before
    paper.evidence_threshold = threshold
    rows = [(f"{name}, stretched", stretched, found)]
    rows.append((f"{name}, returned", found["maps"], found))
    for name, explainer in others:
        found = explainer.explain_outputs(images)
        rows.append((name, found["maps"], found))
    titles, maps = [], []
    for row_name, row_maps, found in rows:
        for index, flat in enumerate(found["flat"]):
            state = "FLAT" if flat else f"ev {found['evidence'][index]:.2f}"
            shown = class_names[found["classes"][index]]
            titles.append(f"{row_name}\n{shown}, {state}")
            maps.append(row_maps[index])
    picture = visualize.grid(
        np.concatenate([images] * len(rows)), np.stack(maps), titles=titles, columns=8
    )
    visualize.save_png(picture, path)


def run(output, quick=False, fresh=False, verbose=2, log=print, only=None):
    """Trains and scores every setting and configuration; writes the tables."""
    from keras_ptame import demo

    rows, summaries = [], {}
    for setting, (none_class, tag, labels) in SETTINGS.items():
        config = demo.DemoConfig(**DEMO, none_class=none_class)
        if quick:
            config = config.replace(**QUICK)
            tag += "_quick"
        log(f"Setting: {setting}")
        found, summaries[setting] = run_setting(
            output, tag, config, labels, (fresh, verbose, log, only)
        )
        rows += [{"setting": setting, **row} for row in found]
    write(output, rows, summaries, quick)
    return rows


def run_setting(output, tag, config, labels, options):
    """One classifier: trains (or loads) each configuration's explainer."""
    fresh, verbose, log, only = options
    cache = os.path.join(output, f"{tag}.cache")
    os.makedirs(cache, exist_ok=True)
    models = train_base(config, os.path.join(output, f"{tag}.models"), verbose, log)
    train_images, test = make_data(config)
    names = shape_names(config.num_classes) + (
        [] if not config.none_class else ["none"]
    )
    predicted = np.argmax(models["classifier"].predict(test[0], verbose=0), -1)
    summary = {
        "classifier_accuracy": float(np.mean(predicted == test[1])),
        "fill_predictions": fill_predictions(models["classifier"], test[0], names),
        "settings": {**config.settings(), "seed": config.seed},
        "configurations": {},
    }
    log(f"Fill images predict: {summary['fill_predictions']}")
    rows = []
    for label in labels:
        if only and label not in only:
            continue
        path = os.path.join(cache, "".join(c if c.isalnum() else "_" for c in label))
        if os.path.exists(path + ".json") and not fresh:
            with open(path + ".json") as file:
                result = json.load(file)
        else:
            log(f"Training the explainer: {label}...")
            setup = CONFIGURATIONS[label]
            result = _train_and_score(
                config, setup, models, (train_images, test), verbose
            )
            explainer = result.pop("explainer")
            if label == FIGURE_REMEDY:
                explainer.save_weights(path + ".weights.h5")
            with open(path + ".json", "w") as file:
                json.dump(result, file, indent=2)
        summary["configurations"][label] = result
        rows += [{"configuration": label, **row} for row in result["rows"]]
        log(_headline(label, result["rows"]))
    if not config.none_class:
        _draw(output, tag, config, models, test, names)
    return rows, summary


def _train_and_score(config, setup, models, data, verbose):
    train_images, test = data
    clock = time.perf_counter()
    explainer, training = train_explainer(config, setup, models, train_images, verbose)
    seconds = time.perf_counter() - clock
    dark = None if config.none_class else DARK_CLASS
    rows = score(explainer, test, shape_names(config.num_classes), dark)
    return {
        "setup": setup,
        "training": training,
        "seconds": seconds,
        "rows": rows,
        "explainer": explainer,
    }


def _draw(output, tag, config, models, test, names):
    """The figure: the paper's fill as the demo trained it (the same recipe
    and seeds as the "black (paper)" row), and the remedy if it was saved."""
    import keras

    explainers = {
        "black (paper)": keras.saving.load_model(
            os.path.join(output, f"{tag}.models", "ptame.keras")
        )
    }
    weights = os.path.join(output, f"{tag}.cache", f"{FIGURE_REMEDY}.weights.h5")
    if os.path.exists(weights):
        remedy = build_explainer(config, CONFIGURATIONS[FIGURE_REMEDY], models)
        remedy.load_weights(weights)
        explainers[FIGURE_REMEDY] = remedy
    figure(explainers, test, names, os.path.join(output, f"{tag}.png"))


def _split(rows):
    """The squares' row (dark without the "none" class), and the others'."""
    return rows[DARK_CLASS], rows[:DARK_CLASS] + rows[DARK_CLASS + 1 :]


def _headline(label, rows):
    square, others = _split(rows)
    return (
        f"  {label}: squares flat {square['flat_share']:.2f}, stretched pointing "
        f"{square['stretched_pointing_game']:.2f}; others min pointing "
        f"{min(r['pointing_game'] for r in others):.2f}, min AUC "
        f"{min(r['pixel_auc'] for r in others):.3f}"
    )


def write(output, rows, summaries, quick):
    """Writes the CSV, the JSON and the Markdown tables."""
    import keras

    tag = "honest_maps_quick" if quick else "honest_maps"
    with open(os.path.join(output, f"{tag}.csv"), "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()}
            )
    backend = keras.config.backend()
    with open(os.path.join(output, f"{tag}.json"), "w") as file:
        json.dump({"backend": backend, "settings": summaries}, file, indent=2)
    command = f"KERAS_BACKEND={backend} .venv/bin/python benchmarks/honest_maps.py"
    command += " --output " + output + (" --quick" if quick else "")
    lines = ["# Honest maps: the class the fill predicts", "", f"`{command}`", ""]
    for setting, summary in summaries.items():
        mine = [row for row in rows if row["setting"] == setting]
        lines += _table(setting, mine, summary)
    lines += NOTES + [
        "",
        "| setting | configuration | class | evidence p10 / median / p90 |",
    ]
    lines.append("|---|---|---|---|")
    lines += [
        f"| {row['setting']} | {row['configuration']} | {row['class']} | "
        f"{row['evidence_p10']:.3f} / {row['evidence_median']:.3f} / "
        f"{row['evidence_p90']:.3f} |"
        for row in rows
    ]
    with open(os.path.join(output, f"{tag}.md"), "w") as file:
        file.write("\n".join(lines) + "\n")


NOTES = [
    "Flat: the share of maps whose evidence (peak minus floor of the sigmoid map) "
    "is below the explainer's threshold; they are returned all zeros. Pointing "
    "game and pixel AUC of the other classes are on the maps returned (a flat map "
    "scores chance); 'stretched' scores the min-max normalised sigmoid maps, which "
    "rank pixels as the maps `explain` drew before flagging did (min-max normalised "
    "logits), so their pointing game and pixel AUC are those maps'. Mean map: the "
    "stretched maps' mean value (a bloated map is near 1). Per class in the CSV.",
]


def _table(setting, rows, summary):
    config = summary["settings"]
    lines = [
        f"## {setting}",
        "",
        f"The demo's classifier, {setting}"
        + ("" if config["none_class"] else ", squares drawn dark")
        + f" (held-out accuracy {summary['classifier_accuracy']:.3f}); P-TAME "
        f"trained {config['explainer_epochs']} epochs on {config['train_count']} "
        f"images with the demo's loss; {config['test_count']} held-out images. "
        "The classes that each fill image alone is predicted (highest "
        "probability): "
        + "; ".join(
            f"{fill}: " + ", ".join(f"{k} {p:.2f}" for k, p in found.items())
            for fill, found in summary["fill_predictions"].items()
        )
        + ".",
        "",
        "| configuration | decoder maps | squares: flat | evidence median | "
        "stretched pointing | stretched AUC | other classes: min pointing | "
        "min pixel AUC | max flat | mean map | NaN |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    for label in summary["configurations"]:
        square, others = _split([row for row in rows if row["configuration"] == label])
        lines.append(
            f"| {label} | {_maps_size(label, config['image_size'])} | "
            f"{square['flat_share']:.2f} | "
            f"{square['evidence_median']:.3f} | "
            f"{square['stretched_pointing_game']:.2f} | "
            f"{square['stretched_pixel_auc']:.2f} | "
            f"{min(r['pointing_game'] for r in others):.2f} | "
            f"{min(r['pixel_auc'] for r in others):.3f} | "
            f"{max(r['flat_share'] for r in others):.2f} | "
            f"{np.mean([r['stretched_mean_map'] for r in others]):.2f} | "
            f"{'yes' if square['nan'] else 'no'} |"
        )
    return lines + [""]


def _maps_size(label, image_size):
    """The decoder's resolution of a configuration: its finest stage's."""
    cells = image_size // (2 if "stage1" in CONFIGURATIONS[label]["layers"] else 4)
    return f"{cells}x{cells}"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/honest_maps.py",
        description="Fills and objectives for the class the fill image predicts.",
    )
    parser.add_argument("--output", default="benchmarks/results")
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--fresh", action="store_true", help="retrain everything")
    parser.add_argument(
        "--only", nargs="*", default=None, help="configurations to run (by name)"
    )
    args = parser.parse_args(argv)
    verbose = 1 if sys.stdout.isatty() else 2
    run(args.output, args.quick, args.fresh, verbose, print, args.only)


if __name__ == "__main__":
    main()
