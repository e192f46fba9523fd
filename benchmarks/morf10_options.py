"""What moves tuned P-TAME's ROAD at 10% removed, most relevant first?

At MoRF10 RISE kept pace with tuned P-TAME in the tuned comparison
(`tune_compare.py`). This script trains P-TAME with the tuned recipe and with
one change at a time, and scores every variant on the *tuning* split (seed
offset `TUNING_SEED_OFFSET`, the images `kp.tune` scored its trials on, drawn
further), never on the comparison's held-out images, with 95% intervals. Each
change is one argument away from the recipe and decoder the table uses.

```
KERAS_BACKEND=jax python benchmarks/morf10_options.py \\
    --models benchmarks/results/tuned --output benchmarks/results/morf10
```

`--models` is the folder `make compare-tuned` wrote (the demo's classifier
and explainer, and `tuning/recipe.json`). Writes `morf10_options.md` and
`.csv` into `--output`.
"""

import argparse
import dataclasses
import os
import sys

from common import QUICK, demo_config, make_config
from tune_compare import TUNING_SEED_OFFSET, fit_recipe

# name -> (recipe changes, explainer changes): one change each.
VARIANTS = {
    "tuned recipe": ({}, {}),
    "trained twice as long": ({"epochs": 6}, {}),
    "area power 0.15": ({"area_power": 0.15}, {}),
    "area power 1.0": ({"area_power": 1.0}, {}),
    "ce coefficient x2": ({"ce_scale": 2.0}, {}),
    'upsampling="resize"': ({}, {"decoder_options": {"upsampling": "resize"}}),
    "64x64 maps (the input as a 4th tap)": (
        {},
        {"layer_names": ["rescale", "stage1", "stage2", "stage3"]},
    ),
}


def variant_explainer(template, changes):
    """A new explainer from `template`'s networks, with `changes` applied."""
    import keras_ptame as kp

    config = template.get_config()
    config.update(backbone=template.backbone, extractor=template.extractor)
    if "layer_names" in changes:
        config["extractor"] = kp.AuxiliaryExtractor(
            template.extractor.model, layer_names=changes["layer_names"]
        )
    if "decoder_options" in changes:
        config["decoder_options"] = {
            **config["decoder_options"],
            **changes["decoder_options"],
        }
    return type(template).from_config(config)


def variant_recipe(recipe, changes):
    changes = dict(changes)
    if "ce_scale" in changes:
        changes["ce_coeff"] = recipe.ce_coeff * changes.pop("ce_scale")
    return dataclasses.replace(recipe, **changes)


def train(template, recipe, changes, images, seed):
    import keras

    # The table's seed: every variant's decoder starts from the same draw.
    keras.utils.set_random_seed(seed)
    return fit_recipe(variant_explainer(template, changes), recipe, images)


def run(args):
    import keras

    import keras_ptame as kp
    from keras_ptame.datasets import synthetic

    config = make_config(seed=args.seed, **(QUICK if args.quick else {}))
    template = keras.saving.load_model(os.path.join(args.models, "ptame.keras"))
    recipe = kp.recipes.get(os.path.join(args.models, "tuning", "recipe.json"))
    recipe = dataclasses.replace(recipe, epochs=config["explainer_epochs"])
    train_images, _, _ = demo_config(config).draw_shapes()
    images, _, masks = synthetic.make_shapes(
        args.count,
        image_size=config["image_size"],
        num_classes=config["num_classes"],
        seed=config["seed"] + TUNING_SEED_OFFSET,
    )
    explainers = {}
    for name, (recipe_changes, changes) in VARIANTS.items():
        print(f"=== {name}", flush=True)
        explainers[name] = train(
            template,
            variant_recipe(recipe, recipe_changes),
            changes,
            train_images,
            config["seed"],
        )
    table = kp.evaluate(
        explainers,
        template.backbone,
        {"images": images, "masks": masks},
        imputation=config["imputation"],
        verbose=0,
        seed=config["seed"],
        intervals=0.95,
    )
    table.notes.append(
        f"Tuning split (seed offset {TUNING_SEED_OFFSET}), {args.count} images; "
        f"the tuned recipe: {recipe}."
    )
    os.makedirs(args.output, exist_ok=True)
    table.save(args.output, stem="morf10_options", overwrite=True)
    print(table.to_markdown())
    for name in list(explainers)[1:]:
        print(name, table.compare(name, "tuned recipe")["MoRF10"])
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/morf10_options.py",
        description="Tuned P-TAME's variants on the tuning split, MoRF10 first.",
    )
    parser.add_argument("--models", default="benchmarks/results/tuned")
    parser.add_argument("--output", default="benchmarks/results/morf10")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
