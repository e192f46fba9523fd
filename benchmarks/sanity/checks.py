"""The checks: cascading model randomisation and data randomisation for
P-TAME, Grad-CAM and RISE (`run`), and their summaries."""

import time

import numpy as np
from explainers import METHODS, SHOWN, last_conv, makers
from training import make_data, ptame_maker, train_networks
from variants import auxiliary_variants, decoder_seeds


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
        "grad_cam_layer": last_conv(classifier),
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


def _summary(cascade, shuffled):
    return {
        "layers": cascade["layers"][-1],
        "cascade_mean_rank_correlation": cascade["mean_rank_correlation"].tolist(),
        "cascade_mean_ssim": cascade["mean_ssim"].tolist(),
        "data_mean_rank_correlation": shuffled["mean_rank_correlation"],
        "data_mean_ssim": shuffled["mean_ssim"],
    }
