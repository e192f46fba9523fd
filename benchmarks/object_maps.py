"""Object maps on every seed and backend: the worst class, not the mean.

On the demo's synthetic shapes (64x64, six classes, a known object mask per
image), the demo's classifier and auxiliary network are trained once per
setting: without a "none" class (squares drawn dark, a black image predicted
a square) and with it (the demo's default). Their `.keras` files are loaded
on each backend, and for every seed a P-TAME explainer is trained with the
demo's recipe (the authors' initialisation and one-cycle AdamW, 3 epochs)
and scored per class on 600 held-out images: pointing game, pixel AUC, the
mean of the min-max maps (their area), the share of maps flagged `flat`, the
explainer's own `misranked` verdict (the removal check `fit` runs, see
`keras_ptame/models/removal_check.py`) and the held-out maps' removal check.

```
.venv/bin/python benchmarks/object_maps.py --output benchmarks/results
```

Each backend runs in its own process (`--backends`, default all three). A
run's scores are cached (`object_maps.cache/`): a second call resumes, and
`--configurations` adds remedies. Writes `object_maps.md` (the table of the
worst class per run, the command, the time), `object_maps.csv` (every class
of every run) and `object_maps.json`.
"""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")
DEMO = {"test_count": 600, "seed": 0}
# The classifiers explained: (tag, the demo's `none_class`).
SETTINGS = {"no 'none' class": ("no_none", False), "with 'none' class": ("none", True)}
# What each configuration changes from the demo's explainer: `compile`
# (False: `fit` compiles its defaults), `decoder_options`, `optimizer`
# ("keras": Keras' AdamW under the one-cycle rate; "constant": Keras' AdamW
# held constant), `learning_rate`, `paper_loss` (the `PerturbationLoss`
# defaults rather than the demo's), `reverse_inverted` (`fit`'s).
# `compile(optimizer=keras.optimizers.AdamW(1e-4, amsgrad=True,
# epsilon=1e-8))`: the paper's rate held constant, and the paper's loss.
PAPER_RATE = {"optimizer": "constant", "learning_rate": 1e-4, "paper_loss": True}
CONFIGURATIONS = {
    # The demo's recipe: the authors' optimiser (one-cycle AdamW), peak 2e-3;
    # `fit` reverses a class's maps found inverted after an epoch.
    "demo recipe": {},
    # The same, trained as the paper does: nothing reversed.
    "demo recipe, not reversed": {"reverse_inverted": False},
    # `explainer.fit(images, epochs=3)` without `compile`: Keras' AdamW at
    # 1e-3, held constant (`keras_ptame.optimizers.default`), the paper's loss
    # at smoothness 0.001 (`keras_ptame.losses.default`).
    "API defaults": {"compile": False},
    # The same with the authors' smoothness, 0.01 (`PerturbationLoss()`,
    # `compile()`'s default loss until it was chosen by this table).
    "API defaults at smoothness 0.01": {
        "optimizer": "constant",
        "learning_rate": 1e-3,
        "paper_loss": True,
    },
    # The paper's rate, 1e-4 (`compile()`'s default rate until it was chosen
    # by this table), and the paper's loss, with and without reversal.
    "API defaults at 1e-4": PAPER_RATE,
    "API defaults at 1e-4, not reversed": {**PAPER_RATE, "reverse_inverted": False},
    # The demo's explainer before the authors' numerics became the defaults:
    # Keras' initialisation and single resize in the decoder, Keras' AdamW
    # (AMSGrad) under the one-cycle learning rate, its beta_1 held.
    "before parity": {
        "decoder_options": {"upsampling": "resize", "initialization": "keras"},
        "optimizer": "keras",
        "reverse_inverted": False,
    },
    # `fit` without `compile` before the authors' numerics: Keras' AdamW at
    # a constant 1e-4, Keras' initialisation and single resize.
    "API defaults before parity": {
        **PAPER_RATE,
        "decoder_options": {"upsampling": "resize", "initialization": "keras"},
        "reverse_inverted": False,
    },
}
QUICK = dict(
    train_count=128,
    test_count=48,
    classifier_epochs=1,
    auxiliary_epochs=1,
    explainer_epochs=1,
)
ROW_COLUMNS = (
    "class count accuracy pointing_game pixel_auc mean_map flat good_images "
    "difference_p10 difference_p50 difference_p90 difference_mean"
).split()
# A class passes when its maps point at the object this well, or is flagged.
POINTING, AUC = 0.9, 0.95


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="benchmarks/results")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--configurations", default="demo recipe,API defaults")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, a pipeline check"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return work(args)
    started = time.perf_counter()
    for backend in args.backends.split(","):
        command = [sys.executable, __file__, "--worker", *_passed(argv)]
        print(f"== {backend} ==", flush=True)
        subprocess.run(
            command, env={**os.environ, "KERAS_BACKEND": backend}, check=True
        )
    write(args, time.perf_counter() - started)
    return 0


def _passed(argv):
    return list(sys.argv[1:] if argv is None else argv)


def work(args):
    """One backend: every setting, configuration and seed not cached yet."""
    import keras

    backend = keras.config.backend()
    for setting in _names(args.settings, SETTINGS):
        tag, none_class = SETTINGS[setting]
        config = _config(none_class, args.quick)
        models = _base_models(
            args.output, tag + ("_quick" if args.quick else ""), config
        )
        data = _data(config)
        for label in _names(args.configurations, CONFIGURATIONS):
            for seed in range(args.seeds):
                path = _cache_path(args, backend, tag, label, seed)
                if os.path.exists(path):
                    continue
                print(f"{backend} / {setting} / {label} / seed {seed}", flush=True)
                result = run_one(config, CONFIGURATIONS[label], models, data, seed)
                result.update(
                    backend=backend, setting=setting, configuration=label, seed=seed
                )
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as file:
                    json.dump(result, file, indent=1)
                print("  " + _headline(result), flush=True)
    return 0


def _names(value, known):
    """A comma-separated list of `known`'s keys; a comma and a space stay in
    a name ("demo recipe, not reversed")."""
    names = re.split(r",(?! )", value)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"Unknown: {unknown}. Known: {list(known)}")
    return names


def _config(none_class, quick):
    from keras_ptame import demo

    config = demo.DemoConfig(**DEMO, none_class=none_class)
    return config.replace(**QUICK) if quick else config


def _cache_path(args, backend, tag, label, seed):
    name = "".join(c if c.isalnum() else "_" for c in label)
    folder = "object_maps_quick.cache" if args.quick else "object_maps.cache"
    return os.path.join(args.output, folder, f"{backend}-{tag}-{name}-{seed}.json")


def _base_models(output, tag, config):
    """The demo's classifier and auxiliary network for `config`, trained once."""
    import keras

    from keras_ptame import demo

    folder = os.path.join(output, "object_maps.models", tag)
    paths = {
        name: os.path.join(folder, f"{name}.keras")
        for name in ("classifier", "auxiliary")
    }
    if not all(os.path.exists(path) for path in paths.values()):
        print(f"Training the demo's classifier and auxiliary network ({tag})...")
        demo.run(folder, config=config, verbose=0, overwrite=True)
    return {name: keras.saving.load_model(path) for name, path in paths.items()}


def _data(config):
    from keras_ptame.datasets import synthetic

    train, _, _ = config.draw_shapes()
    test = config.draw_shapes(held_out=True)
    names = synthetic.shape_names(config.num_classes)
    return {"train": train, "test": test, "names": names}


def run_one(config, setup, models, data, seed):
    """Trains one explainer with the demo's recipe and scores it per class."""
    import keras

    from keras_ptame.demo.phases import AUXILIARY_LAYERS
    from keras_ptame.layers.auxiliary_extractor import AuxiliaryExtractor
    from keras_ptame.layers.backbone import Backbone
    from keras_ptame.models.ptame import PTAME
    from keras_ptame.models.removal_check import (
        REMOVAL_CHECK_IMAGES,
        RemovalCheck,
        sample_images,
    )

    keras.utils.set_random_seed(config.seed + 2 + seed)
    explainer = PTAME(
        Backbone(models["classifier"]),
        AuxiliaryExtractor(models["auxiliary"], layer_names=AUXILIARY_LAYERS),
        fill=config.fill,
        decoder_options=setup.get("decoder_options"),
    )
    if setup.get("compile", True):
        explainer.compile(**_compiled(config, setup))
    # `fit` would add the same check; this one's rows are kept.
    check = RemovalCheck(
        sample_images(data["train"], REMOVAL_CHECK_IMAGES),
        reverse_inverted=setup.get("reverse_inverted", True),
    )
    clock = time.perf_counter()
    history = explainer.fit(
        data["train"],
        epochs=config.explainer_epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[check],
        **setup.get("fit", {}),
    )
    seconds = time.perf_counter() - clock
    rows = score(explainer, data["test"], data["names"])
    logs = {key: float(values[-1]) for key, values in history.history.items()}
    names = data["names"]
    check_rows = {names[c]: row for c, row in check.rows.items() if c < len(names)}
    reversed_ = [names[c] for c in check.reversed_classes if c < len(names)]
    return {
        "seconds": seconds,
        "training": logs,
        "rows": rows,
        "check": check_rows,
        "reversed": reversed_,
    }


def _compiled(config, setup):
    """`compile`'s optimizer and loss for a configuration."""
    import keras

    from keras_ptame.demo import EXPLAINER_WEIGHT_DECAY
    from keras_ptame.losses.perturbation_loss import PerturbationLoss
    from keras_ptame.optimizers.default import default_optimizer
    from keras_ptame.recipes import one_cycle, one_cycle_adamw

    steps = -(-config.train_count // config.batch_size) * config.explainer_epochs
    rate = setup.get("learning_rate", config.explainer_learning_rate)
    if setup.get("optimizer") == "keras":
        optimizer = keras.optimizers.AdamW(
            one_cycle(rate, steps), weight_decay=EXPLAINER_WEIGHT_DECAY, amsgrad=True
        )
    elif setup.get("optimizer") == "constant":
        # `compile()`'s default optimizer, at `rate`.
        optimizer = default_optimizer(rate)
    else:
        optimizer = one_cycle_adamw(rate, steps, EXPLAINER_WEIGHT_DECAY)
    loss = {} if setup.get("paper_loss") else config.loss_settings()
    return {"optimizer": optimizer, "loss": PerturbationLoss(**loss)}


def score(explainer, test, names):
    """Per class of the held-out images (by label)."""
    from keras_ptame.metrics import pointing_game
    from keras_ptame.metrics.pixel_auc import pixel_auc
    from keras_ptame.models.removal_check import check_explainer

    images, labels, masks = test
    found = explainer.explain_outputs(images, batch_size=128, zero_flat=False)
    maps = np.nan_to_num(found["maps"])
    hits = pointing_game(maps, masks=masks)
    aucs = pixel_auc(maps, masks=masks)
    checked = check_explainer(explainer, images)
    rows = []
    for index in range(len(names)):
        chosen = labels == index
        good = chosen & (hits > 0.5) & (found["classes"] == index)
        rows.append(
            {
                "class": names[index],
                "count": int(chosen.sum()),
                "accuracy": float(np.mean(found["classes"][chosen] == index)),
                "pointing_game": float(np.mean(hits[chosen])),
                "pixel_auc": float(np.mean(aucs[chosen])),
                "mean_map": float(np.mean(maps[chosen])),
                "flat": float(np.mean(found["flat"][chosen])),
                "good_images": int(good.sum()),
                **_differences(checked, chosen),
            }
        )
    return rows


def _differences(checked, chosen):
    """Quantiles of without_top - without_bottom over a class's images."""
    difference = checked["change"][chosen]
    quantiles = np.percentile(difference, [10, 50, 90]) if len(difference) else [0] * 3
    return {f"difference_p{q}": float(v) for q, v in zip((10, 50, 90), quantiles)} | {
        "difference_mean": float(np.mean(difference)) if len(difference) else 0.0
    }


def _headline(result):
    rows = [row for row in result["rows"] if row["flat"] < 0.5]
    if not rows:
        return f"{result['seconds']:.0f} s; every class flat"
    worst = min(rows, key=lambda r: r["pointing_game"])
    return (
        f"{result['seconds']:.0f} s; worst class not flat {worst['class']}: "
        f"pointing {worst['pointing_game']:.2f}, AUC {worst['pixel_auc']:.2f}, "
        f"mean map {worst['mean_map']:.2f}, flagged misranked "
        f"{int(flagged(result, worst))}"
    )


def flagged(result, row):
    """Whether `fit`'s removal check flagged the row's class misranked.

    Read from the check's per-class median change (its rule, `summarize`),
    so that runs cached before the rule's margin changed are judged alike.
    """
    from keras_ptame.models.removal_check import MARGIN, MIN_CHECKED

    check = result["check"].get(row["class"])
    return bool(check and check["checked"] >= MIN_CHECKED and check["change"] > -MARGIN)


def load(args):
    folder = os.path.join(
        args.output, "object_maps_quick.cache" if args.quick else "object_maps.cache"
    )
    results = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        with open(os.path.join(folder, name)) as file:
            results.append(json.load(file))
    return results


def verdict(result, row):
    """A class's outcome in one run: it points, or it is flagged, or neither."""
    if row["flat"] >= 0.5:
        return "flat"
    if flagged(result, row):
        return "misranked"
    if row["pointing_game"] >= POINTING and row["pixel_auc"] >= AUC:
        return "points"
    return "MISSED"


def summarize_group(results):
    """One line of the table: the runs of one setting, configuration, backend."""
    rows = [(r, row) for r in results for row in r["rows"]]
    good = sum(row["good_images"] for _, row in rows)
    alarms = sum(row["good_images"] for r, row in rows if flagged(r, row))
    count = {
        v: sum(verdict(r, row) == v for r, row in rows)
        for v in ("points", "flat", "misranked", "MISSED")
    }
    return {
        "runs": len(results),
        **_worst_not_flat(rows),
        **count,
        "false_alarms": 100.0 * alarms / max(good, 1),
    }


def _worst_not_flat(rows):
    """The class that points worst among those not flat, and the largest map;
    NaN where every class came back flat (a `--quick` run)."""
    shown = [(r, row) for r, row in rows if verdict(r, row) != "flat"]
    if not shown:
        nan = float("nan")
        return {
            "worst": "every class flat",
            "worst_pointing": nan,
            "worst_auc": nan,
            "largest_mean_map": nan,
        }
    result, worst = min(shown, key=lambda item: item[1]["pointing_game"])
    return {
        "worst": f"{worst['class']} (seed {result['seed']})",
        "worst_pointing": worst["pointing_game"],
        "worst_auc": worst["pixel_auc"],
        "largest_mean_map": max(row["mean_map"] for _, row in shown),
    }


def write(args, seconds):
    """The Markdown table (one line per setting, configuration, backend) and CSV."""
    results = load(args)
    groups = {}
    for result in results:
        key = (result["setting"], result["configuration"], result["backend"])
        groups.setdefault(key, []).append(result)
    tag = "object_maps_quick" if args.quick else "object_maps"
    command = "python benchmarks/object_maps.py --output " + args.output
    command += " --quick" if args.quick else ""
    lines = [
        "# Object maps on every seed and backend",
        "",
        f"`{command}` ({seconds / 60:.0f} min for what was not cached; "
        f"{len(results)} explainers, {args.seeds} seeds each)",
        "",
        "| classifier | explainer | backend | runs | worst class, not flat | its "
        "pointing game | its pixel AUC | largest mean map | classes pointing | flat "
        "| misranked | missed | false alarms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (setting, label, backend), found in sorted(groups.items()):
        g = summarize_group(found)
        lines.append(
            f"| {setting} | {label} | {backend} | {g['runs']} | {g['worst']} | "
            f"{g['worst_pointing']:.2f} | {g['worst_auc']:.2f} | "
            f"{g['largest_mean_map']:.2f} | {g['points']} | {g['flat']} | "
            f"{g['misranked']} | **{g['MISSED']}** | {g['false_alarms']:.1f}% |"
        )
    lines += ["", *NOTES]
    with open(os.path.join(args.output, f"{tag}.md"), "w") as file:
        file.write("\n".join(lines) + "\n")
    with open(os.path.join(args.output, f"{tag}.csv"), "w", newline="") as file:
        columns = ["backend", "setting", "configuration", "seed", *ROW_COLUMNS]
        writer = csv.DictWriter(
            file, fieldnames=columns + ["verdict"], extrasaction="ignore"
        )
        writer.writeheader()
        for result in results:
            for row in result["rows"]:
                writer.writerow(
                    {
                        **{k: result[k] for k in columns[:4]},
                        **row,
                        "verdict": verdict(result, row),
                    }
                )
    print("\n".join(lines))


NOTES = [
    f"A class *points* when its pointing game is at least {POINTING} and its "
    f"pixel AUC at least {AUC} (on the held-out images of that label); "
    "*flat*: most of its maps flagged flat (no evidence); *misranked*: flagged "
    "by `fit`'s removal check; *missed*: none of these, a failure that nothing "
    "flags. False alarms: the share of correctly pointing held-out maps "
    "(pointing hit, class predicted right) whose class was flagged misranked. "
    "The mean map is the mean of the min-max maps of a class (its area).",
]


if __name__ == "__main__":
    sys.exit(main())
