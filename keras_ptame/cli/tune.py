"""`ptame tune`: search an explainer's recipe for a classifier (`kp.tune`)."""

import argparse
import math
import os

import numpy as np

from keras_ptame import data, recipes
from keras_ptame.cli.arguments import (
    add_batch_size,
    add_data_options,
    add_epochs,
    add_fill,
    add_network_options,
    add_overwrite,
    add_recipe,
    positive_int,
)
from keras_ptame.cli.errors import UsageError, one_line, say
from keras_ptame.cli.training import RESIZE_RATIO, prepare_training
from keras_ptame.evaluation import load_data
from keras_ptame.tuning import (
    DEFAULT_OBJECTIVE,
    OBJECTIVES,
    RECIPE_FILE,
    check_search_files,
    tune,
)
from keras_ptame.tuning.objectives import parse_objective
from keras_ptame.tuning.space import as_recipe, parse_space, resolve_space
from keras_ptame.utils.files import check_not_inputs
from keras_ptame.utils.images import images_in_folder, read_image


def add_parser(subcommands):
    """Adds `tune` and its options to the `ptame` subcommands."""
    parser = subcommands.add_parser(
        "tune",
        help="search loss coefficients and optimiser settings for faithful maps",
        description=(
            "Searches the loss coefficients, learning rate and weight decay of "
            "the explainer with KerasTuner's Bayesian optimisation: each trial "
            "trains a fresh decoder briefly on --data and scores its maps on "
            "held-out images. Writes results.csv, results.md and the best "
            "recipe.json (for `ptame train --recipe`) into --directory; run "
            "the same command again to resume an interrupted search."
        ),
    )
    add_network_options(parser.add_argument_group("networks"))
    add_data_options(parser.add_argument_group("data"))
    _add_held_out_options(parser.add_argument_group("held-out data"))
    _add_trial_options(parser.add_argument_group("trials"))
    _add_search_options(parser.add_argument_group("search"))
    _add_directory_options(parser.add_argument_group("output"))
    parser.set_defaults(run=run)


def _add_held_out_options(group):
    group.add_argument(
        "--validation-data",
        default=None,
        help="held-out images the maps are scored on: a folder (none of its "
        "images in --data) or a TensorFlow Datasets name (default: --data's "
        "dataset, split --validation-split; required when --data is a folder)",
    )
    group.add_argument(
        "--validation-split",
        default="validation",
        help="the TensorFlow Datasets split of the held-out images "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--validation-count",
        type=positive_int,
        default=64,
        help="held-out images scored per trial (default: %(default)s)",
    )


def _add_trial_options(group):
    add_recipe(
        group,
        use="the starting point and the settings not searched",
        without="the loss defaults, AdamW at 1e-4",
    )
    # Trials train briefly whatever the recipe says: one epoch unless asked.
    add_epochs(group, default=1, what="training epochs of each trial")
    add_batch_size(group)
    add_fill(group)


def _add_search_options(group):
    group.add_argument(
        "--objective",
        default=DEFAULT_OBJECTIVE,
        help=f"what the search maximises: one of {', '.join(OBJECTIVES)} "
        "(road: ROAD LeRF minus MoRF; adic: IC minus AD; deletion: insertion "
        "minus deletion) or a weighted mix such as road=1,adic=0.5 "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--max-trials",
        type=positive_int,
        default=20,
        help="trials in --directory at most, resumed ones included "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="start no trial after this many seconds (default: no limit)",
    )
    group.add_argument(
        "--space",
        action="append",
        type=_space_entry,
        default=None,
        metavar="NAME=LOW:HIGH[:linear]|NAME=VALUE",
        help="change the searched range of a setting (log scale unless "
        ":linear), or fix it; repeatable. Settings: ce_coeff, area_coeff, "
        "smoothness_coeff, area_power, learning_rate, weight_decay (searched "
        "by default), border, smoothness_power",
    )
    group.add_argument(
        "--imputation",
        choices=("linear", "telea"),
        default="linear",
        help="ROAD's fill of removed pixels (default: %(default)s)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the decoder's weights, the search and ROAD's noise "
        "(default: %(default)s)",
    )


def _add_directory_options(group):
    group.add_argument(
        "--directory",
        required=True,
        help="the tuning directory: trials, results.csv, results.md, recipe.json",
    )
    add_overwrite(group, what="a search in --directory")
    group.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="0 none, 1 KerasTuner's trial summaries, 2 also training progress "
        "(default: %(default)s)",
    )


def _space_entry(text):
    try:
        return parse_space(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run(args):
    """Runs (or resumes) the search as `args` say; writes into `args.directory`."""
    # The tuned recipe is written where a starting one may have been read.
    tuned_path = os.path.join(args.directory, RECIPE_FILE)
    check_not_inputs([tuned_path], [args.recipe], "--directory")
    recipe = recipes.get(args.recipe) if args.recipe else None
    _check_search_options(args, recipe)
    batch_size = args.batch_size or (recipe.batch_size if recipe else 32)
    explainer, size, batches, steps = prepare_training(args, recipe, batch_size)
    held_out = _held_out_images(args, size)
    say(
        args.verbose,
        f"Tuning: each trial trains {args.epochs} epoch(s) of {steps} batch(es) "
        f"of {batch_size} images at {size}x{size}, then scores "
        f"{len(held_out)} held-out images.",
    )
    tuned = tune(
        explainer,
        batches,
        held_out,
        objective=args.objective,
        max_trials=args.max_trials,
        max_seconds=args.max_seconds,
        directory=args.directory,
        overwrite=args.overwrite,
        recipe=recipe,
        space=dict(args.space or ()),
        epochs=args.epochs,
        batch_size=batch_size,
        imputation=args.imputation,
        seed=args.seed,
        verbose=args.verbose,
    )
    path = os.path.join(args.directory, RECIPE_FILE)
    say(
        args.verbose,
        f"Best: {tuned}\nTable: {os.path.join(args.directory, 'results.md')}; "
        f"train with it: ptame train --recipe {path} ...",
    )


def _check_search_options(args, recipe):
    """Checks --max-seconds, --objective, --space and a search to resume in
    --directory before any slow work (the networks, the data)."""
    seconds = args.max_seconds
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(
            "--max-seconds must be a positive finite number (leave it out for no "
            f"limit). Received: {seconds}"
        )
    for option, check in (
        ("--objective", lambda: parse_objective(args.objective)),
        ("--space", lambda: resolve_space(dict(args.space or ()), as_recipe(recipe))),
    ):
        try:
            check()
        except ValueError as error:
            raise UsageError(f"{option}: {one_line(error)}") from error
    if not args.overwrite:
        check_search_files(args.directory)


def _held_out_images(args, size):
    """The held-out images as an array `(N, size, size, 3)`."""
    source = args.validation_data or args.data
    if os.path.isdir(args.data) and (
        args.validation_data is None
        or os.path.realpath(source) == os.path.realpath(args.data)
    ):
        raise UsageError(
            "--data is a folder: pass held-out images with --validation-data "
            "(another folder; the maps must be scored on images not trained on)."
        )
    if os.path.isdir(source):
        paths = images_in_folder(source)[: args.validation_count]
        if not paths:
            raise UsageError(f"No images in --validation-data {source!r}.")
        return np.stack([read_image(path, size=(size, size))[1] for path in paths])
    if os.path.sep in source or os.path.splitext(source)[1]:
        raise FileNotFoundError(f"No such image folder: {source!r}")
    if source == args.data and args.validation_split == args.split:
        raise UsageError(
            "--validation-split must differ from --split: the maps must be "
            "scored on images not trained on."
        )
    batches = data.tfds_dataset(
        source,
        split=args.validation_split,
        batch_size=args.validation_count,
        training=False,
        image_size=size,
        resize=max(size, round(size * RESIZE_RATIO)),
    )
    return load_data(batches.take(1))["images"][: args.validation_count]
