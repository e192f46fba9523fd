"""Sanity checks for saliency maps (Adebayo et al. 2018) on the demo's setting.

On the synthetic shapes (`keras_ptame.datasets`), it trains the demo's
classifier and auxiliary network with the demo's recipe (fewer images than
the demo: `SETTINGS`), then runs, for P-TAME, Grad-CAM (the classifier's last
convolution) and RISE (500 masks):

- the cascading model randomisation check
  (`keras_ptame.metrics.cascading_randomization`): the classifier's weighted
  layers re-initialised from the top, one more at each step, a new P-TAME
  explainer trained on each step's classifier with the demo's recipe (on
  1,000 images for 2 epochs, the demo's 5,000 for 3 being too slow for ten
  trainings); the auxiliary network stays the trained one;
- the data randomisation check (`keras_ptame.metrics.data_randomization`):
  the same architecture trained on 500 of the classifier's images with
  their labels permuted, long enough to fit them (its training accuracy is
  reported).

With `--auxiliary-variants` (about two minutes more) it also trains P-TAME
with two other auxiliary networks, one trained on the random-label
classifier's images and permuted labels and one untrained, for the
true-label classifier, the random-label one and the cascade's last step
(`auxiliary_variants`): whether the trained auxiliary network is why
P-TAME's maps stay put.

With `--decoder-seeds` (about a minute more) it also trains P-TAME with
another initialisation of the decoder, all else equal, for the true-label and
the random-label classifiers (`decoder_seeds`): the maps' agreement for the
same classifier (a noise floor) and across the data randomisation with a
different initialisation on each side, how far each decoder moved in training
and its loss terms: whether the shared initialisation is why P-TAME fails data
randomisation.

Each compares the maps of 64 held-out images with the trained classifier's
(the same class explained: its prediction) by Spearman rank correlation and
SSIM. For P-TAME it also reports the shares of maps flagged flat (returned
as zeros, whose rank correlation with anything is 0) and misranked, and the
rank correlation over the maps that are not flat. Under JAX the run shares
compilations through a compilation cache in a temporary folder (the steps'
P-TAME trainings are one computation on other weights).

```
KERAS_BACKEND=jax python benchmarks/sanity_checks.py --output benchmarks/results/sanity \
    --figure benchmarks/figures/sanity_checks.png
```

Writes `sanity_checks.md` (the tables), `sanity_checks.json` (every number)
and `sanity_checks.png` (the figure; `--figure PATH` writes it there too).
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

# The demo's data and recipes with fewer images and epochs, so that the ten
# P-TAME trainings (one per cascade step and one for the random-label
# classifier) fit in about ten minutes on two CPU cores.
SETTINGS = {
    "image_size": 64,
    "num_classes": 6,
    # The classifier's and auxiliary network's training images (the demo:
    # 5,000 and 5 and 4 epochs), with a "none" class as in the demo.
    "train_count": 2000,
    "classifier_epochs": 5,
    "auxiliary_epochs": 4,
    # P-TAME's training images and epochs at every step (the demo: 5,000
    # images, 3 epochs), the demo's learning rate and loss.
    "explainer_count": 1000,
    "explainer_epochs": 2,
    # The random-label classifier: this many of the classifier's training
    # images, labels permuted, trained until it fits them.
    "shuffled_count": 500,
    "shuffled_epochs": 60,
    "test_count": 64,
    "rise_masks": 500,
    "batch_size": 32,
    "seed": 0,
}
QUICK = {
    "train_count": 256,
    "classifier_epochs": 1,
    "auxiliary_epochs": 1,
    "explainer_count": 64,
    "explainer_epochs": 1,
    "shuffled_count": 64,
    "shuffled_epochs": 2,
    "test_count": 8,
    "rise_masks": 50,
}
METHODS = ("P-TAME", "Grad-CAM", "RISE")
# Held-out images whose maps the figure shows.
SHOWN = 2


# === Training, the demo's recipes ===


def make_data(settings):
    """Training images (with the demo's "none" class) and held-out images."""
    from keras_ptame import demo
    from keras_ptame.datasets import synthetic

    config = demo.DemoConfig(
        image_size=settings["image_size"],
        num_classes=settings["num_classes"],
        train_count=settings["train_count"],
        test_count=settings["test_count"],
        seed=settings["seed"],
    )
    images, labels, _ = config.draw_shapes()
    test_images, test_labels, test_masks = config.draw_shapes(held_out=True)
    # The "none" class as the demo draws it (`demo.phases._make_data`).
    none = synthetic.make_negatives(
        max(1, settings["train_count"] // settings["num_classes"]),
        image_size=settings["image_size"],
        num_classes=settings["num_classes"],
        seed=settings["seed"] + 20_000,
    )
    return {
        "explainer_images": images[: settings["explainer_count"]],
        "images": np.concatenate([images, none]),
        "labels": np.concatenate(
            [labels, np.full(len(none), settings["num_classes"], "int32")]
        ),
        "test": (test_images, test_labels, test_masks),
    }


def train_network(part, images, labels, epochs, settings, seed_offset=0):
    """The demo's classifier or auxiliary CNN, trained by the demo's recipe;
    returns it and its accuracy on its training images."""
    import keras

    from keras_ptame import demo
    from keras_ptame.recipes import one_cycle

    keras.utils.set_random_seed(settings["seed"] + seed_offset)
    build = demo.build_classifier if part == "classifier" else demo.build_auxiliary
    model = build(settings["image_size"], settings["num_classes"] + 1)
    steps = -(-len(images) // settings["batch_size"]) * epochs
    # A wrapper sharing the layers keeps `model` itself uncompiled.
    trainer = keras.Model(model.inputs, model.outputs)
    trainer.compile(
        optimizer=keras.optimizers.Adam(one_cycle(3e-3, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    trainer.fit(
        images,
        labels,
        epochs=epochs,
        batch_size=settings["batch_size"],
        shuffle=True,
        verbose=0,
    )
    predicted = model.predict(images, batch_size=128, verbose=0).argmax(-1)
    return model, float(np.mean(predicted == labels))


def ptame_maker(auxiliary, images, settings):
    """`make_explainer` for P-TAME: the demo's recipe, trained on `images`
    for each classifier it is given (the same classifier object reuses its
    explainer); notes each one's training time in `.seconds` and keeps
    each classifier's explainer in `.trained`."""
    trained, seconds = {}, []

    def make_explainer(classifier):
        if id(classifier) in trained:
            return trained[id(classifier)][1]
        clock = time.perf_counter()
        explainer = train_ptame(classifier, auxiliary, images, settings)
        # The classifier is kept beside its explainer, so that its id is not
        # reused by another.
        trained[id(classifier)] = (classifier, explainer)
        seconds.append(time.perf_counter() - clock)
        return explainer

    make_explainer.seconds = seconds
    make_explainer.trained = trained
    return make_explainer


def train_ptame(classifier, auxiliary, images, settings, decoder=None):
    """A P-TAME explainer trained by the demo's recipe on `images`; with
    `decoder` (the decoder's initial weights), built and given those weights
    before training, the random state at training's start being the same as
    without (`--decoder-seeds`)."""
    import keras_ptame as kp
    from keras_ptame import demo
    from keras_ptame.recipes import one_cycle_adamw

    explainer = _new_ptame(classifier, auxiliary, settings, settings["seed"] + 2)
    if decoder is not None:
        explainer.build((None,) + tuple(images.shape[1:]))
        explainer.decoder.set_weights(decoder)
    epochs = settings["explainer_epochs"]
    steps = -(-len(images) // settings["batch_size"]) * epochs
    explainer.compile(
        optimizer=one_cycle_adamw(
            demo.DemoConfig().explainer_learning_rate,
            steps,
            demo.EXPLAINER_WEIGHT_DECAY,
        ),
        loss=kp.PerturbationLoss(**demo.LOSS),
    )
    explainer.fit(
        images,
        epochs=epochs,
        batch_size=settings["batch_size"],
        shuffle=True,
        verbose=0,
    )
    return explainer


def _new_ptame(classifier, auxiliary, settings, seed):
    """An untrained P-TAME explainer, the random state seeded with `seed`."""
    import keras

    import keras_ptame as kp
    from keras_ptame import demo

    keras.utils.set_random_seed(seed)
    return kp.PTAME(
        classifier,
        kp.AuxiliaryExtractor(auxiliary, layer_names=demo.AUXILIARY_LAYERS),
        num_classes=settings["num_classes"] + 1,
    )


class Noted:
    """An explainer whose `explain` notes, in `notes`, the first `SHOWN` maps
    of every call and, for P-TAME, the shares of maps flagged flat (returned
    as zeros) and misranked (their class failed the removal check that `fit`
    runs; returned as they are)."""

    def __init__(self, explainer, notes):
        self.explainer, self.notes = explainer, notes

    def explain(self, images, classes=None):
        if hasattr(self.explainer, "explain_outputs"):
            outputs = self.explainer.explain_outputs(images, classes, batch_size=64)
            for flag in ("flat", "misranked"):
                self.notes[flag].append(np.asarray(outputs[flag], bool))
            maps = outputs["maps"]
        else:
            maps = self.explainer.explain(images, classes)
        self.notes.setdefault("step 0", maps)
        self.notes["maps"].append(np.asarray(maps[:SHOWN]))
        self.notes.setdefault("all", []).append(np.asarray(maps))
        return maps


def makers(ptame, settings):
    """Each method's `make_explainer` (Grad-CAM at the last convolution of
    each classifier it is given, `_last_conv`) and the notes of its calls."""
    from keras_ptame import baselines

    makers = {
        "P-TAME": ptame,
        "Grad-CAM": lambda model: baselines.GradCAM(model, _last_conv(model)),
        "RISE": lambda model: baselines.RISE(
            model, num_masks=settings["rise_masks"], seed=settings["seed"]
        ),
    }
    notes = {method: {"flat": [], "misranked": [], "maps": []} for method in makers}

    def noting(method):
        return lambda model: Noted(makers[method](model), notes[method])

    return {method: noting(method) for method in makers}, notes


# === The checks ===


def train_networks(settings, data, log):
    """The classifier, the auxiliary network and the random-label classifier,
    with their accuracies."""
    log("Training the classifier and the auxiliary network...")
    images, labels = data["images"], data["labels"]
    classifier, train_accuracy = train_network(
        "classifier", images, labels, settings["classifier_epochs"], settings
    )
    auxiliary, _ = train_network(
        "auxiliary", images, labels, settings["auxiliary_epochs"], settings, 1
    )
    test_images, test_labels, _ = data["test"]

    def held_out(model):
        predicted = model.predict(test_images, verbose=0).argmax(-1)
        return float(np.mean(predicted == test_labels))

    log(f"  classifier: train accuracy {train_accuracy:.3f}")
    log("Training the same architecture on permuted labels...")
    rng = np.random.default_rng(settings["seed"] + 30_000)
    chosen = rng.permutation(len(images))[: settings["shuffled_count"]]
    permuted = rng.permutation(labels[chosen])
    shuffled, shuffled_accuracy = train_network(
        "classifier",
        images[chosen],
        permuted,
        settings["shuffled_epochs"],
        settings,
        seed_offset=3,
    )
    log(f"  random-label classifier: train accuracy {shuffled_accuracy:.3f}")
    networks = {"classifier": classifier, "auxiliary": auxiliary, "shuffled": shuffled}
    # The random-label classifier's images and labels, for `--auxiliary-variants`.
    networks["shuffled_data"] = (images[chosen], permuted)
    return networks, {
        "classifier_train_accuracy": train_accuracy,
        "classifier_held_out_accuracy": held_out(classifier),
        "random_label_train_accuracy": shuffled_accuracy,
        "random_label_held_out_accuracy": held_out(shuffled),
    }


def run(settings, log=print, variants=False, seeds=False):
    """Trains, runs both checks for every method (and with `variants`, P-TAME
    with other auxiliary networks: `auxiliary_variants`; with `seeds`, with
    another decoder initialisation: `decoder_seeds`); returns the results
    dict."""
    import keras

    from keras_ptame.metrics import (
        cascading_randomization,
        data_randomization,
        pointing_game,
    )

    started = time.perf_counter()
    data = make_data(settings)
    networks, accuracies = train_networks(settings, data, log)
    timings = {"networks": time.perf_counter() - started}
    classifier = networks["classifier"]
    test_images, _, test_masks = data["test"]
    ptame = ptame_maker(networks["auxiliary"], data["explainer_images"], settings)
    results, checks = {}, {}
    explainers, notes = makers(ptame, settings)
    for method, make_explainer in explainers.items():
        clock = time.perf_counter()
        log(f"{method}: cascading randomisation...")
        cascade = cascading_randomization(
            make_explainer, classifier, test_images, seed=settings["seed"] + 40_000
        )
        log(f"{method}: data randomisation...")
        shuffled = data_randomization(
            make_explainer, classifier, networks["shuffled"], test_images
        )
        timings[method] = time.perf_counter() - clock
        results[method] = _summary(cascade, shuffled)
        checks[method] = (cascade, shuffled)
        log("  cascade SSIM " + " ".join(f"{v:.2f}" for v in cascade["mean_ssim"]))
    # Each method explained the cascade's steps, then the true-label and the
    # random-label classifiers' images.
    steps = len(cascade["steps"])
    results["P-TAME"].update(_flagged(notes["P-TAME"], *checks["P-TAME"]))
    reference = notes["P-TAME"]["step 0"]
    shown = {
        method: notes[method]["maps"][:steps] + notes[method]["maps"][steps + 1 :]
        for method in METHODS
    }
    extra = {}
    if variants:
        extra["auxiliary_variants"] = auxiliary_variants(
            settings, data, networks, ptame, notes["P-TAME"], log
        )
        timings["auxiliary_variants"] = extra["auxiliary_variants"]["seconds"]
    if seeds:
        extra["decoder_seeds"] = decoder_seeds(settings, data, networks, ptame, log)
        timings["decoder_seeds"] = extra["decoder_seeds"]["seconds"]
    timings["total"] = time.perf_counter() - started
    return {
        "backend": keras.config.backend(),
        "settings": settings,
        "classifier_layers_top_first": results["P-TAME"]["layers"],
        "grad_cam_layer": _last_conv(classifier),
        **accuracies,
        "ptame_step0_pointing_game": float(
            np.mean(pointing_game(reference, masks=test_masks))
        ),
        "shown": {"images": test_images[:SHOWN], "maps": shown},
        "ptame_training_seconds": [round(value, 1) for value in ptame.seconds],
        "methods": results,
        "timings_s": {key: round(value, 1) for key, value in timings.items()},
        **extra,
    }


# === The auxiliary network's part (`--auxiliary-variants`) ===

# Pairs of auxiliary networks compared: the reference explainer's (for the
# true-label classifier) and the compared explainer's.
AUXILIARY_PAIRS = (
    ("true labels", "true labels"),
    ("permuted labels", "permuted labels"),
    ("untrained", "untrained"),
    ("true labels", "permuted labels"),
    ("true labels", "untrained"),
)


def auxiliary_variants(settings, data, networks, ptame, true_notes, log):
    """P-TAME with two other auxiliary networks, to test whether the trained
    one is why P-TAME's maps stay put: one trained on the random-label
    classifier's images and permuted labels (the auxiliary network's recipe
    for as many epochs as that classifier), and one untrained (randomly
    initialised). For each, a new explainer is trained per classifier: the
    true-label classifier, the random-label one and the cascade's last step
    (every weighted layer random, the same random weights as the cascade's).
    Returns the similarities of their maps for `AUXILIARY_PAIRS`, controls
    (the true-label classifier's maps with the true-label auxiliary network
    against another), flat and misranked shares, and each auxiliary
    network's step-0 pointing game."""
    import keras

    from keras_ptame import demo
    from keras_ptame.metrics import (
        cascade_layers,
        cascading_randomization,
        data_randomization,
        pointing_game,
    )

    clock = time.perf_counter()
    classifier, shuffled = networks["classifier"], networks["shuffled"]
    test_images, _, test_masks = data["test"]
    log("Training the auxiliary network on the permuted labels...")
    images, labels = networks["shuffled_data"]
    permuted, accuracy = train_network(
        "auxiliary", images, labels, settings["shuffled_epochs"], settings, 4
    )
    log(f"  permuted-label auxiliary network: train accuracy {accuracy:.3f}")
    keras.utils.set_random_seed(settings["seed"] + 5)
    untrained = demo.build_auxiliary(
        settings["image_size"], settings["num_classes"] + 1
    )
    # The main run's P-TAME calls: the cascade's steps, then the data check's
    # true-label and random-label classifiers.
    steps = len(true_notes["all"]) - 2
    recorded = {"true labels": _roles(true_notes, (0, steps + 1, steps - 1))}
    seconds = []
    for name, auxiliary in (("permuted labels", permuted), ("untrained", untrained)):
        log(f"P-TAME with the {name} auxiliary network...")
        make = ptame_maker(auxiliary, data["explainer_images"], settings)
        notes = {"flat": [], "misranked": [], "maps": []}

        def noting(model, make=make, notes=notes):
            return Noted(make(model), notes)

        data_randomization(noting, classifier, shuffled, test_images)
        depth = len(cascade_layers(classifier))
        cascading_randomization(
            noting,
            classifier,
            test_images,
            seed=settings["seed"] + 40_000,
            steps=[depth],
        )
        recorded[name] = _roles(notes, (0, 1, 3))
        seconds += make.seconds
    comparisons = [
        {"check": check, "reference": a, "compared": b}
        | _compared(recorded[a]["classifier"], recorded[b][role])
        for check, role in (("data", "shuffled"), ("cascade last step", "last step"))
        for a, b in AUXILIARY_PAIRS
    ] + [
        {"check": "control", "reference": "true labels", "compared": b}
        | _compared(recorded["true labels"]["classifier"], recorded[b]["classifier"])
        for b in ("permuted labels", "untrained")
    ]
    return {
        "permuted_auxiliary_train_accuracy": accuracy,
        "step0_pointing_game": {
            name: float(
                np.mean(pointing_game(roles["classifier"][0], masks=test_masks))
            )
            for name, roles in recorded.items()
        },
        "comparisons": comparisons,
        "ptame_training_seconds": [round(value, 1) for value in seconds],
        "seconds": round(time.perf_counter() - clock, 1),
    }


# === The decoder's initialisation (`--decoder-seeds`) ===

# The seed offsets of the decoder's two initialisations: A, the main run's
# (`train_ptame`), and B, another.
DECODER_SEEDS = {"A": 2, "B": 6}
# Pairs of explainers compared: (check, reference, compared), each explainer
# named (decoder seed, classifier).
DECODER_PAIRS = (
    ("noise floor", ("A", "true"), ("B", "true")),
    ("data", ("A", "true"), ("B", "random")),
    ("data", ("B", "true"), ("A", "random")),
    ("data", ("A", "true"), ("A", "random")),
    ("data", ("B", "true"), ("B", "random")),
    ("path check", ("A", "true"), ("A copied", "true")),
)


def decoder_seeds(settings, data, networks, ptame, log):
    """P-TAME with another initialisation of the decoder (seed B), all else
    as in the main run (seed A; the same random state when training starts),
    for the true-label and the random-label classifiers: whether sharing the
    decoder's initialisation is why their maps agree. Returns the explainers'
    comparisons (with a noise floor: the same classifier, seeds A and B; and
    a path check: seed A's weights set as seed B's are, which must give the
    main run's maps), how far each decoder moved in training (the relative
    change of its trainable weights) and each one's loss terms per epoch."""
    from keras_ptame.models.classifier_scores import as_backbone, explained_classes

    clock = time.perf_counter()
    classifier, shuffled = networks["classifier"], networks["shuffled"]
    auxiliary, images = networks["auxiliary"], data["explainer_images"]
    test_images = data["test"][0]
    classes = explained_classes(as_backbone(classifier), test_images)
    starts = {}
    for name, offset in DECODER_SEEDS.items():
        untrained = _new_ptame(
            classifier, auxiliary, settings, settings["seed"] + offset
        )
        untrained.build((None,) + tuple(images.shape[1:]))
        starts[name] = (
            untrained.decoder.get_weights(),
            [np.array(w) for w in untrained.decoder.trainable_weights],
        )
    models = {"true": classifier, "random": shuffled}
    explainers = {
        ("A", role): ptame.trained[id(model)][1] for role, model in models.items()
    }
    for name, role in (("B", "true"), ("B", "random"), ("A copied", "true")):
        log(f"P-TAME, decoder seed {name}, {role}-label classifier...")
        start = starts[name.split()[0]][0]
        explainers[name, role] = train_ptame(
            models[role], auxiliary, images, settings, decoder=start
        )
    outputs = {
        key: _explained(e, test_images, classes) for key, e in explainers.items()
    }
    return {
        "seeds": {
            name: settings["seed"] + offset for name, offset in DECODER_SEEDS.items()
        },
        "comparisons": [
            {"check": check, "reference": " ".join(a), "compared": " ".join(b)}
            | _compared(outputs[a], outputs[b])
            for check, a, b in DECODER_PAIRS
        ],
        "decoder_change": {
            " ".join(key): _moved(starts[key[0].split()[0]][1], explainer.decoder)
            for key, explainer in explainers.items()
        },
        "history": {
            " ".join(key): {
                name: [float(value) for value in values]
                for name, values in explainer.history.history.items()
            }
            for key, explainer in explainers.items()
        },
        "seconds": round(time.perf_counter() - clock, 1),
    }


def _explained(explainer, images, classes):
    """(maps, flat, misranked) of `explainer` for `classes`."""
    outputs = explainer.explain_outputs(images, classes, batch_size=64)
    return tuple(
        np.asarray(outputs[key], dtype)
        for key, dtype in (("maps", "float32"), ("flat", bool), ("misranked", bool))
    )


def _moved(start, decoder):
    """The relative change of the decoder's trainable weights from `start`:
    the norm of the change over the norm of the start, all weights as one."""
    now = [np.array(w) for w in decoder.trainable_weights]
    change = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(now, start, strict=True)))
    return float(change / np.sqrt(sum(np.sum(b**2) for b in start)))


def _roles(notes, indices):
    """The maps and flags of the calls at `indices`: the true-label
    classifier's, the random-label one's and the cascade's last step's."""
    return {
        role: tuple(
            np.asarray(notes[key][index]) for key in ("all", "flat", "misranked")
        )
        for role, index in zip(
            ("classifier", "shuffled", "last step"), indices, strict=True
        )
    }


def _compared(reference, compared):
    """Mean ρ and SSIM of two (maps, flat, misranked), ρ over the images flat
    in neither, and the compared maps' flat and misranked shares."""
    from keras_ptame.metrics import rank_correlation, structural_similarity

    rho = rank_correlation(reference[0], compared[0])
    kept = ~(reference[1] | compared[1])
    return {
        "rank_correlation": float(np.mean(rho)),
        "ssim": float(np.mean(structural_similarity(reference[0], compared[0]))),
        "rank_correlation_not_flat": float(rho[kept].mean()) if kept.any() else None,
        "flat_share": float(np.mean(compared[1])),
        "misranked_share": float(np.mean(compared[2])),
    }


def _flagged(notes, cascade, shuffled):
    """P-TAME's shares of flat and misranked maps per step and for the
    random-label classifier, and the mean similarities over the images whose
    maps are flat neither at step 0 nor at that step (`None` where none is
    left)."""
    steps = len(cascade["steps"])
    flat = np.stack(notes["flat"][:steps] + notes["flat"][steps + 1 :])
    flagged = {}
    for flag in ("flat", "misranked"):
        shares = [float(np.mean(flags)) for flags in notes[flag]]
        flagged[f"cascade_{flag}_share"] = shares[:steps]
        flagged[f"data_{flag}_share"] = shares[steps + 1]
    for key in ("rank_correlation", "ssim"):
        values = np.concatenate([cascade[key], shuffled[key][None]])
        means = [
            float(row[~gone].mean()) if (~gone).any() else None
            for row, gone in zip(values, flat | flat[0], strict=True)
        ]
        flagged[f"cascade_mean_{key}_not_flat"] = means[:-1]
        flagged[f"data_mean_{key}_not_flat"] = means[-1]
    return flagged


def _last_conv(model):
    """Grad-CAM's usual choice: the last layer with a (B, h, w, C) output."""
    for layer in reversed(model.layers):
        if len(layer.output.shape) == 4:
            return layer.name
    raise ValueError("The classifier has no spatial layer for Grad-CAM.")


def _summary(cascade, shuffled):
    return {
        "layers": cascade["layers"][-1],
        "cascade_mean_rank_correlation": cascade["mean_rank_correlation"].tolist(),
        "cascade_mean_ssim": cascade["mean_ssim"].tolist(),
        "data_mean_rank_correlation": shuffled["mean_rank_correlation"],
        "data_mean_ssim": shuffled["mean_ssim"],
    }


# === Outputs ===


def markdown(result, command):
    """The two tables, the settings and the command."""
    from keras_ptame.utils.tables import markdown_table

    methods, settings = result["methods"], result["settings"]
    layers = result["classifier_layers_top_first"]
    header = ["step", "last layer randomised"]
    for method in METHODS:
        header += [f"{method} ρ", f"{method} SSIM"]
    rows = []
    for step in range(len(layers) + 1):
        cells = [str(step), "none (trained)" if step == 0 else f"`{layers[step - 1]}`"]
        for method in METHODS:
            cells += [
                f"{methods[method]['cascade_mean_rank_correlation'][step]:.3f}",
                f"{methods[method]['cascade_mean_ssim'][step]:.3f}",
            ]
        ptame = methods["P-TAME"]
        rows.append(
            cells
            + [_cell(ptame["cascade_mean_rank_correlation_not_flat"][step])]
            + [
                f"{ptame[f'cascade_{flag}_share'][step]:.2f}"
                for flag in ("flat", "misranked")
            ]
        )
    data_rows = [
        [
            method,
            f"{methods[method]['data_mean_rank_correlation']:.3f}",
            f"{methods[method]['data_mean_ssim']:.3f}",
        ]
        for method in METHODS
    ]
    data_rows[0][0] += (
        f" ({methods['P-TAME']['data_flat_share']:.2f} flat, "
        f"{methods['P-TAME']['data_misranked_share']:.2f} misranked; ρ "
        f"{_cell(methods['P-TAME']['data_mean_rank_correlation_not_flat'])} "
        "over the maps not flat)"
    )
    notes = [
        f"{settings['test_count']} held-out {settings['image_size']}x"
        f"{settings['image_size']} images, Keras backend `{result['backend']}`; "
        "every map explains the trained classifier's prediction (held-out "
        f"accuracy {result['classifier_held_out_accuracy']:.3f}).",
        f"P-TAME: a new explainer per step, {settings['explainer_epochs']} epochs "
        f"on {settings['explainer_count']} images (step 0's pointing game "
        f"{result['ptame_step0_pointing_game']:.3f}); Grad-CAM at "
        f"`{result['grad_cam_layer']}`; RISE with {settings['rise_masks']} masks.",
        f"Random labels: {settings['shuffled_count']} training images, labels "
        f"permuted, {settings['shuffled_epochs']} epochs: training accuracy "
        f"{result['random_label_train_accuracy']:.3f} (held-out "
        f"{result['random_label_held_out_accuracy']:.3f}).",
        f"Wall time {result['timings_s']['total']:.0f} s: `{command}`.",
    ]
    legend = {
        "P-TAME ρ not flat": "mean ρ over the images whose P-TAME maps are flat "
        "neither at step 0 nor at that step (flat maps are zeros, whose ρ is 0)",
        "P-TAME flat": "share of P-TAME's maps flagged flat (returned as zeros)",
        "P-TAME misranked": "share of P-TAME's maps flagged misranked (their "
        "class failed the removal check that `fit` runs; maps returned as they "
        "are)",
    }
    return "\n".join(
        [
            "# Sanity checks (Adebayo et al. 2018)",
            "",
            "Cascading model randomisation: mean Spearman ρ and SSIM with the "
            "trained classifier's maps.",
            "",
            markdown_table(
                header + ["P-TAME ρ not flat", "P-TAME flat", "P-TAME misranked"],
                rows,
                text_columns=2,
                legend=legend,
            ),
            "Data randomisation: the classifier trained on permuted labels.",
            "",
            markdown_table(["method", "ρ", "SSIM"], data_rows, notes=notes),
        ]
    )


def variants_markdown(variants, settings):
    """The table of `auxiliary_variants`."""
    from keras_ptame.utils.tables import markdown_table

    rows = [
        [
            entry["check"],
            entry["reference"],
            entry["compared"],
            f"{entry['rank_correlation']:.3f}",
            f"{entry['ssim']:.3f}",
            _cell(entry["rank_correlation_not_flat"]),
            f"{entry['flat_share']:.2f}",
            f"{entry['misranked_share']:.2f}",
        ]
        for entry in variants["comparisons"]
    ]
    games = ", ".join(
        f"{name} {value:.3f}" for name, value in variants["step0_pointing_game"].items()
    )
    notes = [
        "data: the true-label classifier's maps against the random-label "
        "classifier's; cascade last step: against those of the classifier with "
        "every weighted layer random; control: the same true-label classifier, "
        "only the auxiliary network changed.",
        f"Auxiliary network on permuted labels: the random-label classifier's "
        f"{settings['shuffled_count']} images and labels, {settings['shuffled_epochs']}"
        f" epochs, training accuracy {variants['permuted_auxiliary_train_accuracy']:.3f}"
        "; untrained: randomly initialised.",
        f"Step 0's pointing game (the true-label classifier) per auxiliary "
        f"network: {games}.",
        f"Wall time of this part {variants['seconds']:.0f} s.",
    ]
    legend = {
        "reference": "the auxiliary network of the true-label classifier's explainer",
        "compared": "the auxiliary network of the other classifier's explainer",
        "flat": "share of the compared maps flagged flat (returned as zeros)",
        "misranked": "share of the compared maps flagged misranked",
    }
    return "\n".join(
        [
            "",
            "P-TAME with other auxiliary networks (a new explainer per "
            "classifier and auxiliary network).",
            "",
            markdown_table(
                ["check", "reference", "compared", "ρ", "SSIM", "ρ not flat"]
                + ["flat", "misranked"],
                rows,
                text_columns=3,
                legend=legend,
                notes=notes,
            ),
        ]
    )


def seeds_markdown(seeds):
    """The tables of `decoder_seeds`."""
    from keras_ptame.utils.tables import markdown_table

    rows = [
        [entry["check"], entry["reference"], entry["compared"]]
        + [f"{entry[key]:.3f}" for key in ("rank_correlation", "ssim")]
        + [_cell(entry["rank_correlation_not_flat"])]
        + [f"{entry[key]:.2f}" for key in ("flat_share", "misranked_share")]
        for entry in seeds["comparisons"]
    ]
    terms = ("loss", "ce", "area", "smoothness", "kept", "empty")
    training = [
        [name, f"{seeds['decoder_change'][name]:.3f}"]
        + [
            " → ".join(f"{value:.3f}" for value in history.get(term, []))
            for term in terms
        ]
        for name, history in seeds["history"].items()
    ]
    notes = [
        "Explainers named by decoder seed (A: the main run's, seed "
        f"{seeds['seeds']['A']}; B: seed {seeds['seeds']['B']}) and classifier "
        "(true or random labels); `A copied`: seed A's initial weights set the "
        "way seed B's are (the path check: it must match A).",
        f"Wall time of this part {seeds['seconds']:.0f} s.",
    ]
    legend = {
        "decoder change": "norm of the change of the decoder's trainable weights "
        "in training over the norm of their initial values",
    }
    return "\n".join(
        [
            "",
            "P-TAME with another decoder initialisation.",
            "",
            markdown_table(
                ["check", "reference", "compared", "ρ", "SSIM", "ρ not flat"]
                + ["flat", "misranked"],
                rows,
                text_columns=3,
            ),
            "Training, per epoch (first → last):",
            "",
            markdown_table(
                ["explainer", "decoder change", *terms],
                training,
                text_columns=1,
                legend=legend,
                notes=notes,
            ),
        ]
    )


def _cell(value):
    return "-" if value is None else f"{value:.3f}"


def figure(result, shown, path):
    """Top: the cascade's curves (left) and data randomisation's bars
    (right); bottom: the first held-out image's maps at every step and for
    the random-label classifier."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    layers = result["classifier_layers_top_first"]
    # Shorter names on the axes: "batch_normalization_2" as "bn_2".
    ticks = ["none"] + [
        "+" + name.replace("batch_normalization", "bn") for name in layers
    ]
    fig = pyplot.figure(figsize=(14, 9.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.15, 1], hspace=0.05)
    axes = top.subplots(1, 3, gridspec_kw={"width_ratios": [2, 2, 1.2]})
    _curves(axes, result["methods"], ticks)
    columns = len(ticks) + 2
    grid = bottom.subplots(len(METHODS), columns)
    for row, method in zip(grid, METHODS, strict=True):
        pictures = [shown["images"][0]] + [maps[0] for maps in shown["maps"][method]]
        titles = ["image"] + ["trained"] + ticks[1:] + ["random labels"]
        for axis, picture, title in zip(row, pictures, titles, strict=True):
            if picture.ndim == 3:  # the image
                axis.imshow(picture)
            else:
                axis.imshow(picture, cmap="jet", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if method == METHODS[0]:
                axis.set_title(title, fontsize=8)
        row[0].set_ylabel(method)
    bottom.suptitle(
        "The first held-out image's maps: cascade steps (layers randomised, "
        "cumulative), then the random-label classifier's",
        fontsize=10,
    )
    fig.savefig(path, dpi=80)
    pyplot.close(fig)


def _curves(axes, methods, ticks):
    colours = dict(zip(METHODS, ("tab:red", "tab:blue", "tab:green"), strict=True))
    for axis, key, title in (
        (axes[0], "rank_correlation", "Spearman ρ"),
        (axes[1], "ssim", "SSIM"),
    ):
        for method in METHODS:
            axis.plot(
                methods[method][f"cascade_mean_{key}"],
                marker="o",
                color=colours[method],
                label=method,
            )
        axis.set_xticks(range(len(ticks)), ticks, rotation=60, ha="right")
        lowest = min(min(methods[m][f"cascade_mean_{key}"]) for m in METHODS)
        axis.set_ylim(min(-0.2, lowest - 0.05), 1.05)
        axis.axhline(0, color="grey", linewidth=0.5)
        axis.set_title(f"Cascading randomisation: {title}")
        axis.set_xlabel("layers randomised (top first, cumulative)")
        axis.set_ylabel(f"mean {title} with step 0")
    axes[0].legend()
    positions = np.arange(len(METHODS))
    keys = ("rank_correlation", "ssim")
    for offset, key, hatch in zip((-0.2, 0.2), keys, ("", "//"), strict=True):
        axes[2].bar(
            positions + offset,
            [methods[method][f"data_mean_{key}"] for method in METHODS],
            width=0.4,
            color=[colours[method] for method in METHODS],
            hatch=hatch,
            edgecolor="black",
        )
    axes[2].bar(0, 0, color="white", edgecolor="black", label="Spearman ρ")
    axes[2].bar(0, 0, color="white", edgecolor="black", hatch="//", label="SSIM")
    axes[2].set_xticks(positions, METHODS)
    lowest = min(methods[m][f"data_mean_{k}"] for m in METHODS for k in keys)
    axes[2].set_ylim(min(-0.2, lowest - 0.05), 1.05)
    axes[2].axhline(0, color="grey", linewidth=0.5)
    axes[2].set_title("Data randomisation")
    axes[2].set_ylabel("mean with the true-label maps")
    axes[2].legend()


def _share_compilations(folder):
    """Under JAX, a compilation cache in `folder` (empty: a cold start), so
    that the steps' P-TAME trainings, the same computation on other weights,
    compile once rather than ten times."""
    import keras

    if keras.config.backend() != "jax":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/sanity_checks.py",
        description="Adebayo et al.'s sanity checks on the demo's setting.",
    )
    parser.add_argument("--output", default="benchmarks/results/sanity")
    parser.add_argument("--figure", default=None, help="also write the figure here")
    parser.add_argument("--seed", type=int, default=SETTINGS["seed"])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes to check the pipeline"
    )
    parser.add_argument(
        "--auxiliary-variants",
        action="store_true",
        help="also P-TAME with an auxiliary network trained on the permuted "
        "labels and with an untrained one (`auxiliary_variants`)",
    )
    parser.add_argument(
        "--decoder-seeds",
        action="store_true",
        help="also P-TAME with another initialisation of the decoder, for the "
        "true-label and random-label classifiers (`decoder_seeds`)",
    )
    args = parser.parse_args(argv)
    settings = {**SETTINGS, "seed": args.seed, **(QUICK if args.quick else {})}
    from keras_ptame.utils.files import write_text

    os.makedirs(args.output, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        _share_compilations(cache)
        result = run(
            settings,
            log=lambda *a: print(*a, flush=True),
            variants=args.auxiliary_variants,
            seeds=args.decoder_seeds,
        )
    shown = result.pop("shown")
    command = "python benchmarks/sanity_checks.py " + " ".join(argv or sys.argv[1:])
    text = markdown(result, command.strip())
    if "auxiliary_variants" in result:
        text += "\n" + variants_markdown(result["auxiliary_variants"], settings)
    if "decoder_seeds" in result:
        text += "\n" + seeds_markdown(result["decoder_seeds"])
    write_text(os.path.join(args.output, "sanity_checks.md"), text)
    write_text(
        os.path.join(args.output, "sanity_checks.json"), json.dumps(result, indent=2)
    )
    for path in {os.path.join(args.output, "sanity_checks.png"), args.figure} - {None}:
        figure(result, shown, path)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
