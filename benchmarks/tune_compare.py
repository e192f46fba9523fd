"""Tuned P-TAME against RISE, Grad-CAM, gradients, random and centre maps.

On the synthetic shapes of `benchmarks/compare.py`: it trains (or, with
`--reuse`, loads) the demo's classifier and auxiliary network, searches a
recipe with `kp.tune` (trained on the demo's training images, scored on
held-out images of their own seed stream, starting from the demo's own
settings), trains P-TAME with the tuned
recipe for the demo's epochs, then scores every method on the comparison's
held-out images, which took no part in the search. Per-column winners are
in bold in `evaluation_winners.md`.

```
KERAS_BACKEND=jax python benchmarks/tune_compare.py --output benchmarks/tuned \\
    --max-trials 20 --trial-epochs 3     # the README's table (resumable: --reuse)
python benchmarks/tune_compare.py --quick --max-trials 2   # a pipeline check
```

Writes into `--output`: the comparison's files (`evaluation.md`,
`evaluation.csv`, `settings.json`, the models), `evaluation_winners.md`,
`ptame_tuned.keras`, and the search in `tuning/` (`results.md`,
`results.csv`, `recipe.json`).
"""

import argparse
import dataclasses
import os
import sys
import time

import numpy as np
from common import (
    QUICK,
    SETTINGS,
    demo_config,
    finish,
    make_config,
    make_explainers,
    speed_note,
    train_models,
)

# The tuning split's seed offset: not the training images' (0) nor the
# comparison's held-out images' (`demo.config.HELD_OUT_SEED_OFFSET`).
TUNING_SEED_OFFSET = 20_000


def demo_recipe(config):
    """The demo's own training settings as a `Recipe`: the search's start."""
    import inspect

    import keras

    from keras_ptame import demo
    from keras_ptame.recipes import Recipe

    fields = {field.name for field in dataclasses.fields(Recipe)}
    loss = demo.DemoConfig().loss_settings()
    decay = inspect.signature(keras.optimizers.AdamW).parameters["weight_decay"]
    return Recipe(
        name="demo",
        weight_decay=decay.default,
        learning_rate=config["explainer_learning_rate"],
        **{key: value for key, value in loss.items() if key in fields},
    )


def tune_recipe(config, template, args, log):
    """`kp.tune` on the demo's training images and a held-out tuning split."""
    import keras_ptame as kp
    from keras_ptame.datasets import synthetic

    shapes = dict(image_size=config["image_size"], num_classes=config["num_classes"])
    train, _, _ = demo_config(config).draw_shapes()
    held_out, _, _ = synthetic.make_shapes(
        args.tuning_count, seed=config["seed"] + TUNING_SEED_OFFSET, **shapes
    )
    log(f"Tuning on {len(train)} training and {len(held_out)} held-out images...")
    return kp.tune(
        template,
        train,
        held_out,
        objective=args.objective,
        recipe=demo_recipe(config),
        max_trials=args.max_trials,
        max_seconds=args.max_seconds,
        directory=os.path.join(args.output, "tuning"),
        epochs=args.trial_epochs or config["explainer_epochs"],
        batch_size=config["batch_size"],
        seed=config["seed"],
        verbose=1,
    ), train


def train_tuned(template, recipe, train, epochs, output, seed):
    """P-TAME trained with the tuned recipe for `epochs`, saved beside the table."""
    import keras

    from keras_ptame.tuning.trial import fresh_explainer

    recipe = dataclasses.replace(recipe, epochs=epochs)
    # The trials' seed: the decoder starts from the weights the search saw.
    keras.utils.set_random_seed(seed)
    explainer = fit_recipe(fresh_explainer(template), recipe, train)
    explainer.save(os.path.join(output, "ptame_tuned.keras"))
    return explainer


def fit_recipe(explainer, recipe, images):
    """Compiles `explainer` with `recipe` and fits it for the recipe's epochs."""
    from keras_ptame.tuning.trial import steps_per_epoch

    explainer.compile(
        optimizer=recipe.optimizer(steps_per_epoch(images, recipe.batch_size)),
        loss=recipe.loss(),
    )
    explainer.fit(images, epochs=recipe.epochs, batch_size=recipe.batch_size, verbose=2)
    return explainer


class SigmoidMaps:
    """An explainer's maps with `normalize="sigmoid"`: the sigmoid of the
    decoder's upsampled maps, the mask it was trained to keep the class with
    (the same pixel order as the default min-max maps)."""

    def __init__(self, explainer):
        self.explainer = explainer

    def explain(self, images, classes=None):
        return self.explainer.explain(images, classes, normalize="sigmoid")


def winners_markdown(table, first="P-TAME (sigmoid maps)", second="RISE"):
    """The decisive table: every column with its interval, winners in bold.

    `seconds` and the note of RISE's speed are left out (timings, different
    on every run: they are in `evaluation.md`), so that two runs of the same
    command give the same file. Below the table: each column's verdict, then `first` against the
    row whose name starts with `second`, column by column.
    """
    from keras_ptame.evaluation import EvaluationTable

    columns = [column for column in table.columns if column != "seconds"]
    _, speed = speed_note(table)
    notes = [note for note in table.notes if note != speed]
    scores = EvaluationTable(columns, table.rows, notes)
    scores.intervals, scores.level = table.intervals, table.level
    lines = [scores.to_markdown(), f"Verdicts ({scores.level:.0%} intervals):", ""]
    for column, (verdict, methods) in scores.winners().items():
        lines.append(f"- `{column}`: {verdict}: {', '.join(methods)}")
    second = next(name for name in table.rows if name.startswith(second))
    lines += ["", f"{first} against {second}:", ""]
    for column, verdict in scores.compare(first, second).items():
        lines.append(f"- `{column}`: {verdict}")
    return "\n".join(lines) + "\n"


def run(args, log=print):
    import keras

    from keras_ptame.evaluation import evaluate
    from keras_ptame.utils.files import write_text

    settings = {"test_count": args.test_count, "rise_masks": args.rise_masks}
    settings.update(seed=args.seed, reuse=args.reuse)
    if args.quick:
        settings.update(QUICK)
    config = make_config(**settings)
    started = time.perf_counter()
    classifier, template, timings = train_models(config, args.output, 2, log)
    clock = time.perf_counter()
    recipe, train = tune_recipe(config, template, args, log)
    timings["tuning"] = time.perf_counter() - clock
    log(f"Tuned recipe: {recipe}")
    # Trials may train shorter (--trial-epochs); the table's P-TAME trains as
    # long as the demo's, so that only the settings differ.
    explainer = train_tuned(
        template, recipe, train, config["explainer_epochs"], args.output, config["seed"]
    )
    images, labels, masks = demo_config(config).draw_shapes(held_out=True)
    logits = classifier.predict(images, batch_size=128, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == labels))
    explainers = make_explainers(classifier, explainer, config)
    tuned = explainers.pop("P-TAME")
    explainers = {
        "P-TAME (sigmoid maps)": SigmoidMaps(tuned),
        "P-TAME": tuned,
        "P-TAME (demo recipe)": template,
        **explainers,
    }
    clock = time.perf_counter()
    table = evaluate(
        explainers,
        classifier,
        images,
        masks=masks,
        imputation=config["imputation"],
        verbose=0,
        seed=config["seed"],
        intervals=args.intervals,
    )
    timings["evaluation"] = time.perf_counter() - clock
    timings["total"] = time.perf_counter() - started
    table.notes.append(
        f"`P-TAME`: trained with the recipe `kp.tune` found ({recipe}); "
        f"`P-TAME (demo recipe)`: the demo's. `P-TAME (sigmoid maps)`: the "
        'tuned explainer with `explain(..., normalize="sigmoid")`, the others '
        f"with the default min-max. Backend `{keras.config.backend()}`."
    )
    finish(table, config, accuracy, timings, args.output)
    write_text(
        os.path.join(args.output, "evaluation_winners.md"), winners_markdown(table)
    )
    if args.figure:
        figure(table, args.figure)
    log(winners_markdown(table))
    return table


# The figure's rows: P-TAME's two recipes and the baselines that explain.
FIGURE_ROWS = ("P-TAME", "P-TAME (demo recipe)", "RISE", "Grad-CAM", "gradient")


def figure(table, path):
    """ROAD accuracy against the share removed, each order a panel, with the
    intervals as bands (the sigmoid maps' curves are the min-max maps')."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    from keras_ptame.metrics.road import PERCENTAGES

    rows = [name for name in table.rows if any(name.startswith(r) for r in FIGURE_ROWS)]
    rows = [name for name in rows if not name.startswith("P-TAME (sigmoid")]
    fig, panels = pyplot.subplots(1, 2, figsize=(10, 4))
    for axes, tag in zip(panels, ("MoRF", "LeRF")):
        for name in rows:
            columns = [f"{tag}{p}" for p in PERCENTAGES]
            values = [table.rows[name][c] for c in columns]
            low, high = zip(*(table.intervals[name][c] for c in columns))
            (line,) = axes.plot(PERCENTAGES, values, marker="o", label=name)
            axes.fill_between(
                PERCENTAGES, low, high, color=line.get_color(), alpha=0.15
            )
        better = "lower" if tag == "MoRF" else "higher"
        axes.set(
            title=f"ROAD {tag} ({better} is better)",
            xlabel="pixels removed, %",
            ylabel="images keeping their class, %",
            xticks=PERCENTAGES,
        )
    panels[0].legend(fontsize=8)
    count = len(next(iter(table.per_image.values()))["MoRF"])
    fig.suptitle(
        f"Tuned P-TAME against the baselines, {count} held-out images, "
        f"{table.level:.0%} intervals"
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Software": None})
    pyplot.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/tune_compare.py",
        description="kp.tune, then the comparison table with the tuned recipe.",
    )
    parser.add_argument("--output", default="benchmarks/tuned")
    parser.add_argument("--objective", default="road")
    parser.add_argument("--max-trials", type=int, default=30)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument(
        "--trial-epochs",
        type=int,
        default=None,
        help="training epochs of each trial (default: the demo's explainer epochs)",
    )
    parser.add_argument("--tuning-count", type=int, default=200)
    parser.add_argument(
        "--test-count",
        type=int,
        default=1000,
        help="held-out images of the table (default 1000)",
    )
    parser.add_argument(
        "--intervals",
        type=float,
        default=0.95,
        help="confidence level of the intervals that decide the winners",
    )
    parser.add_argument("--figure", default=None, help="PNG of the ROAD curves")
    parser.add_argument("--rise-masks", type=int, default=SETTINGS["rise_masks"])
    parser.add_argument("--seed", type=int, default=SETTINGS["seed"])
    parser.add_argument("--reuse", action="store_true", help="load trained models")
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.tuning_count = min(args.tuning_count, 16)
    run(args, log=lambda *a: print(*a, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
