"""Controls on P-TAME's part in the checks: other auxiliary networks
(`--auxiliary-variants`) and another decoder initialisation
(`--decoder-seeds`), with their Markdown tables."""

import time

import numpy as np
from explainers import Noted
from report import cell
from training import new_ptame, ptame_maker, train_network, train_ptame

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
        untrained = new_ptame(
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


# === Their tables ===


def _comparisons_table(comparisons, **table_options):
    """Both controls' table of map comparisons (`_compared`), one row each."""
    from keras_ptame.utils.tables import markdown_table

    rows = [
        [entry["check"], entry["reference"], entry["compared"]]
        + [f"{entry[key]:.3f}" for key in ("rank_correlation", "ssim")]
        + [cell(entry["rank_correlation_not_flat"])]
        + [f"{entry[key]:.2f}" for key in ("flat_share", "misranked_share")]
        for entry in comparisons
    ]
    return markdown_table(
        ["check", "reference", "compared", "ρ", "SSIM", "ρ not flat"]
        + ["flat", "misranked"],
        rows,
        text_columns=3,
        **table_options,
    )


def variants_markdown(variants, settings):
    """The table of `auxiliary_variants`."""

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
            _comparisons_table(variants["comparisons"], legend=legend, notes=notes),
        ]
    )


def seeds_markdown(seeds):
    """The tables of `decoder_seeds`."""
    from keras_ptame.utils.tables import markdown_table

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
            _comparisons_table(seeds["comparisons"]),
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
