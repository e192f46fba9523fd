"""`ptame train`: train an explainer for a classifier and save it as `.keras`."""

import dataclasses
import os

import keras

from keras_ptame import recipes
from keras_ptame.callbacks import LOGGED_COUNT, MapsLogger, check_maps_directory
from keras_ptame.cli import backup
from keras_ptame.cli.arguments import (
    add_batch_size,
    add_data_options,
    add_epochs,
    add_fill,
    add_network_options,
    add_overwrite,
    add_recipe,
    positive_float,
)
from keras_ptame.cli.errors import UsageError, note, say, track_outputs, wrote
from keras_ptame.cli.training import logged_images, prepare_training
from keras_ptame.optimizers.default import default_optimizer
from keras_ptame.utils.files import (
    atomic_path,
    check_not_inputs,
    check_writable,
    deferred_interrupts,
)


def add_parser(subcommands):
    """Adds `train` and its options to the `ptame` subcommands."""
    parser = subcommands.add_parser(
        "train",
        help="train an explainer for a classifier and save it as .keras",
        description=(
            "Trains the P-TAME decoder for a frozen classifier on a folder of "
            "images or a TensorFlow Datasets dataset (labels are never used: "
            "the explained class is the classifier's prediction) and saves the "
            "explainer as a .keras file."
        ),
    )
    add_network_options(parser.add_argument_group("networks"))
    add_data_options(parser.add_argument_group("data"))
    _add_training_options(parser.add_argument_group("training"))
    _add_explainer_file_options(parser.add_argument_group("output"))
    parser.set_defaults(run=run)


def _add_training_options(group):
    add_recipe(
        group,
        use="the authors' settings for a classifier (loss coefficients, AdamW "
        "weight decay, one-cycle learning rate, epochs, batch size)",
        without="the loss defaults, AdamW with amsgrad",
    )
    add_epochs(group)
    add_batch_size(group)
    group.add_argument(
        "--learning-rate",
        type=positive_float,
        default=None,
        help="peak learning rate (default: the recipe's, else 1e-3)",
    )
    add_fill(group)
    group.add_argument(
        "--backup-dir",
        default=None,
        help="folder for a backup at the end of every epoch; if training is "
        "interrupted, the same command resumes from the last completed epoch. "
        "It must hold nothing but the backup: its files are removed once the "
        "explainer is saved (default: no backup)",
    )


def _add_explainer_file_options(group):
    group.add_argument(
        "--output",
        required=True,
        help="the .keras file to write the trained explainer to",
    )
    group.add_argument(
        "--log-maps",
        default=None,
        metavar="DIR",
        help=f"folder for the maps of the data's first {LOGGED_COUNT} images after every "
        "epoch, as training goes: maps_epoch_001.png (the grid), "
        "maps_epoch_001.csv (class, score, evidence, flat, misranked) and "
        "TensorBoard image summaries if TensorBoard is installed; "
        "--overwrite replaces earlier maps files there (default: none)",
    )
    add_overwrite(group, "--output (and the maps files in --log-maps)")
    group.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="Keras progress output: 0 none, 1 progress bar, 2 one line per "
        "epoch (default: %(default)s)",
    )


def run(args):
    """Trains an explainer as `args` say and saves it as `args.output`."""
    _check_output(args.output, args.overwrite, (args.classifier, args.auxiliary))
    _check_backup_dir(args.backup_dir)
    _check_log_maps(args)
    track_outputs()
    recipe = recipes.get(args.recipe) if args.recipe else None
    epochs = args.epochs or (recipe.epochs if recipe else 1)
    batch_size = args.batch_size or (recipe.batch_size if recipe else 32)
    explainer, size, batches, steps = prepare_training(args, recipe, batch_size)
    callbacks = []
    if args.log_maps:
        images = logged_images(args, size, LOGGED_COUNT)
        callbacks.append(MapsLogger(images, args.log_maps, overwrite=args.overwrite))
    _compile(explainer, recipe, epochs, steps, args.learning_rate)
    say(
        args.verbose,
        f"Training for {epochs} epoch(s) of {steps} batch(es) of {batch_size} "
        f"images at {size}x{size} (KERAS_BACKEND={keras.config.backend()}).",
    )
    try:
        _fit(explainer, batches, epochs, args, callbacks)
        # The backup goes only once the explainer is saved in full: a kill
        # in between leaves one or the other.
        with atomic_path(args.output) as temporary:
            explainer.save(temporary)
    except KeyboardInterrupt:
        _note_backup(args.backup_dir)
        raise
    wrote(args.output)
    say(args.verbose, f"Saved the explainer to {args.output}")
    if args.backup_dir:
        with deferred_interrupts():
            _remove_backup(args.backup_dir)


def _note_backup(folder):
    """Tells an interrupted run's summary that the backup resumes training."""
    if folder and os.path.exists(os.path.join(folder, backup.LATEST[0])):
        note(
            f"The backup in {folder} resumes training from the last completed "
            "epoch: run the same command again."
        )


def _fit(explainer, batches, epochs, args, callbacks):
    if args.backup_dir:
        # Kept after training: `run` removes it once the explainer is saved.
        callbacks.append(backup.TrainingBackup(args.backup_dir))
    # The pipelines shuffle themselves; Keras warns if `shuffle` is left on.
    explainer.fit(
        batches,
        epochs=epochs,
        callbacks=callbacks,
        verbose=args.verbose,
        shuffle=False,
    )


def _check_output(path, overwrite, inputs):
    """Checks before training that the output can be written, and is no input."""
    if not path.endswith(".keras"):
        raise UsageError(f"--output must end in .keras. Received: {path!r}")
    if os.path.isdir(path):
        # --overwrite replaces a file, never a folder.
        raise FileExistsError(f"--output is a folder: {path!r}. Name a .keras file.")
    # --overwrite replaces the output, never the classifier it was asked to
    # explain (by any name: a link to it too).
    check_not_inputs([path], inputs, "--output")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"The output exists: {path!r}. Choose another --output or pass --overwrite."
        )
    check_writable(os.path.dirname(os.path.abspath(path)), "--output")


def _check_log_maps(args):
    """Checks before training that --log-maps can take the maps files."""
    if args.log_maps is None:
        return
    if os.path.isdir(args.data):
        data, maps = map(os.path.realpath, (args.data, args.log_maps))
        if os.path.commonpath([data, maps]) == data:
            raise UsageError(
                f"--log-maps is inside the --data folder {args.data!r}: the maps "
                "would be read as training images. Choose another folder."
            )
    try:
        check_maps_directory(args.log_maps, args.overwrite)
    except (OSError, ValueError) as error:
        raise UsageError(f"--log-maps: {error}") from None


def _check_backup_dir(folder):
    """Checks that --backup-dir holds nothing but a backup, and can be written."""
    if folder is None:
        return
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"--backup-dir is not a folder: {folder!r}")
    others = (
        sorted(set(os.listdir(folder)) - set(backup.FILES))
        if (os.path.isdir(folder))
        else []
    )
    if others:
        raise UsageError(
            f"--backup-dir {folder!r} holds files other than a backup (e.g. "
            f"{others[0]!r}); its backup files are removed after training, so "
            "give it a folder of its own."
        )
    check_writable(folder, "--backup-dir")


def _remove_backup(folder):
    """Removes the backup's files, and the folder if nothing else is left."""
    for name in backup.FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            os.remove(path)
    if os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)


def _compile(explainer, recipe, epochs, steps, learning_rate):
    if recipe is None:
        # `PTAME.compile`'s default, at the rate asked for.
        explainer.compile(optimizer=default_optimizer(learning_rate))
        return
    # The one-cycle schedule spans the epochs actually run.
    recipe = dataclasses.replace(
        recipe,
        epochs=epochs,
        learning_rate=recipe.learning_rate if learning_rate is None else learning_rate,
    )
    explainer.compile(
        optimizer=recipe.optimizer(steps_per_epoch=steps), loss=recipe.loss()
    )
