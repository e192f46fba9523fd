"""What `evidence` flags on trained explainers, and whether saturated maps localise.

A map is flagged `flat` when its sigmoid map's contrast (peak minus floor,
`evidence`) is below the threshold (0.1). The flag exists for empty maps:
the class the fill image predicts needs nothing kept, and its map sinks to
0 everywhere. But a map whose raw values all saturate the sigmoid high
(raw in [4, 10], say) has a contrast near 0 as well, though its raw range is
large and its min-max map (which ignores a shift of the raw map) is as
sharp as any. This script measures, on the demo's explainers (synthetic
shapes with object masks, `keras_ptame.datasets`), how often each kind
occurs and whether the min-max maps of each group localise (pointing game
on the objects' masks):

- `contrast` flag: sigmoid peak minus floor below the threshold (the rule);
- `empty`: sigmoid peak below the threshold (nothing kept anywhere);
- `saturated`: sigmoid floor above 1 - threshold (everything kept);
- `contrast, not empty`: what a peak rule would stop flagging.

Then it shifts every raw map by +4 and +8 (the min-max maps do not change)
and counts what each rule flags: the contrast rule flags maps it should not.

Two settings, each the demo's recipe (`keras_ptame.demo`) with fewer
training images: the default classifier (with a "none" class, fill images
predict "none") and `none_class=False` (a black image is predicted a square:
that class's maps collapse to empty).

```
KERAS_BACKEND=jax .venv/bin/python benchmarks/evidence_saturation.py \\
    --output benchmarks/results
```

Writes `evidence_saturation.md` and `.json`; the demo's models are cached in
`evidence_saturation*.models/` and reused by a second run.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

THRESHOLD = 0.1
SHIFTS = (0.0, 4.0, 8.0)
SETTINGS = {"with 'none' class": True, "no 'none' class": False}
TRAINING = dict(train_count=2000, test_count=600, seed=0)
QUICK = dict(
    train_count=128,
    test_count=32,
    classifier_epochs=1,
    auxiliary_epochs=1,
    explainer_epochs=1,
)


def trained_explainer(folder, none_class, quick, log):
    """The demo's explainer for the setting, trained once and cached."""
    import keras

    from keras_ptame import demo

    path = os.path.join(folder, "ptame.keras")
    config = demo.DemoConfig(**TRAINING, none_class=none_class)
    if quick:
        config = config.replace(**QUICK)
    if not os.path.exists(path):
        log(f"Training the demo (none_class={none_class}) into {folder}...")
        demo.run(folder, config=config, verbose=0, log=log, overwrite=True)
    return keras.saving.load_model(path), config


def raw_maps(explainer, images, classes, batch_size=64):
    """The decoder's raw maps `(N, h, w)` for `classes`, before the sigmoid."""
    import keras

    found = []
    for start in range(0, len(images), batch_size):
        batch = keras.ops.cast(images[start : start + batch_size], "float32")
        chosen = np.asarray(classes[start : start + batch_size], "int32")[:, None]
        features = explainer.extractor(batch)
        raw = explainer.decoder(features, classes=chosen, training=False)
        found.append(keras.ops.convert_to_numpy(raw)[..., 0])
    return np.concatenate(found).astype(np.float64)


def rules(raw):
    """Which maps each rule flags, on raw maps `(N, h, w)`."""
    sigmoid = 1 / (1 + np.exp(-raw))
    peak = sigmoid.max(axis=(1, 2))
    floor = sigmoid.min(axis=(1, 2))
    return {
        "contrast": peak - floor < THRESHOLD,
        "empty": peak < THRESHOLD,
        "saturated": floor > 1 - THRESHOLD,
    }


def measure(explainer, test):
    """The numbers of one setting."""
    from keras_ptame.metrics import pointing_game

    images, labels, masks = test
    outputs = explainer.explain_outputs(images, batch_size=64, zero_flat=False)
    classes = outputs["classes"]
    raw = raw_maps(explainer, images, classes)
    hits = pointing_game(outputs["maps"], masks)
    flags = rules(raw)
    groups = {
        "all": np.ones(len(images), bool),
        **flags,
        "contrast, not empty": flags["contrast"] & ~flags["empty"],
    }
    # The package's own flag must be the contrast rule measured here.
    assert np.array_equal(outputs["flat"], flags["contrast"])
    rows = {}
    for name, chosen in groups.items():
        rows[name] = {
            "maps": int(chosen.sum()),
            "share": float(chosen.mean()),
            "pointing_game": float(hits[chosen].mean()) if chosen.any() else None,
            "raw_range_median": float(np.median(np.ptp(raw[chosen], axis=(1, 2))))
            if chosen.any()
            else None,
            "classes": {
                int(c): int(n)
                for c, n in zip(
                    *np.unique(classes[chosen], return_counts=True), strict=True
                )
            },
        }
    shifted = {}
    for shift in SHIFTS:
        found = rules(raw + shift)
        shifted[f"{shift:+g}"] = {key: float(v.mean()) for key, v in found.items()}
        # The maps only the contrast rule flags: their min-max maps are the
        # unshifted ones, so is their pointing game.
        only = found["contrast"] & ~found["empty"]
        shifted[f"{shift:+g}"]["contrast_only_pointing_game"] = (
            float(hits[only].mean()) if only.any() else None
        )
    chance = float(np.mean(masks.reshape(len(masks), -1).mean(axis=1)))
    return {
        "accuracy": float(np.mean(classes == labels)),
        "chance_pointing_game": chance,
        "groups": rows,
        "shifted": shifted,
    }


def write(output, results, seconds, quick):
    lines = [
        "# What `evidence` flags, and whether the flagged maps localise",
        "",
        "`python benchmarks/evidence_saturation.py"
        + (" --quick" if quick else "")
        + f"`: {TRAINING['train_count'] if not quick else QUICK['train_count']} "
        f"training images, held-out maps of the predicted class; pointing game "
        f"of the min-max maps (`explain(zero_flat=False)`); threshold "
        f"{THRESHOLD}. {seconds:.0f} s.",
        "",
    ]
    for setting, result in results.items():
        lines += [
            f"## {setting} (classifier accuracy {result['accuracy']:.3f}, "
            f"pointing game by chance {result['chance_pointing_game']:.3f})",
            "",
            "| maps | count | share | pointing game | median raw range | classes |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name, row in result["groups"].items():
            game = "" if row["pointing_game"] is None else f"{row['pointing_game']:.3f}"
            spread = (
                ""
                if row["raw_range_median"] is None
                else f"{row['raw_range_median']:.2f}"
            )
            lines.append(
                f"| {name} | {row['maps']} | {row['share']:.3f} | {game} | {spread} "
                f"| {row['classes']} |"
            )
        lines += [
            "",
            "Raw maps shifted (min-max maps unchanged): share flagged by each rule",
            "",
            "| shift | contrast | empty (peak) | saturated "
            "| pointing game, flagged by contrast only |",
            "|---|---:|---:|---:|---:|",
        ]
        for shift, found in result["shifted"].items():
            game = found["contrast_only_pointing_game"]
            lines.append(
                f"| {shift} | {found['contrast']:.3f} | {found['empty']:.3f} "
                f"| {found['saturated']:.3f} | {'' if game is None else f'{game:.3f}'} |"
            )
        lines.append("")
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "evidence_saturation.md"), "w") as file:
        file.write("\n".join(lines))
    with open(os.path.join(output, "evidence_saturation.json"), "w") as file:
        json.dump(results, file, indent=2)
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="benchmarks/results")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 epoch")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = {}
    for setting, none_class in SETTINGS.items():
        tag = "evidence_saturation" + ("" if none_class else "_no_none")
        tag += "_quick" if args.quick else ""
        folder = os.path.join(args.output, f"{tag}.models")
        explainer, config = trained_explainer(folder, none_class, args.quick, print)
        results[setting] = measure(explainer, config.draw_shapes(held_out=True))
    print(write(args.output, results, time.perf_counter() - started, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
