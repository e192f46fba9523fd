"""The `ptame` command: train, explain, evaluate, export and demo from a shell.

```
ptame train --classifier classifier.keras --auxiliary resnet_18_imagenet \\
    --data images/ --epochs 1 --output explainer.keras
ptame explain --model explainer.keras photo.jpg more_photos/ --output maps/
ptame export --model explainer.keras --output models/ptame/1
ptame evaluate --help
ptame demo --quick
```

Exit codes: 0 success, 2 a usage or input error (bad argument, missing or
unreadable file, existing output), 130 interrupted, 1 an internal error
(printed with its traceback). User errors print one line to stderr, no
traceback. The Keras backend is chosen by the `KERAS_BACKEND` environment
variable.
"""

import argparse
import csv
import dataclasses
import importlib
import os
import sys
import tempfile
import traceback

import keras
import numpy as np

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Subcommands whose arguments belong to another module's own `main(argv)`.
DELEGATED = {
    "evaluate": (
        "keras_ptame.evaluation",
        "score explainers (AD/IC, ROAD, pointing game, timings) in one table; "
        "`ptame evaluate --help` lists its options",
    ),
    "demo": (
        "keras_ptame.demo",
        "the offline demo: train on synthetic shapes, write pictures and "
        "metrics; `ptame demo --help` lists its options",
    ),
}
# The errors a user can cause and fix: reported in one line, exit code 2.
USER_ERRORS = (ValueError, OSError)


class UsageError(ValueError):
    """A user error: reported in one line, exit code 2."""


def main(argv=None):
    """Runs the `ptame` command; returns its exit code.

    Args:
        argv: optional list of str, the arguments without the program name.
            Defaults to `None` (`sys.argv[1:]`).

    Returns:
        int: 0 on success, 2 on a usage or input error, 130 when
        interrupted, 1 on an internal error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command = argv[0] if argv else None
    try:
        if command in DELEGATED:
            return _delegate(command, argv[1:])
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return int(args.handler(args) or EXIT_OK)
    except SystemExit as exit:
        # argparse exits 0 on --help and 2 on a bad argument.
        code = exit.code
        if code is None:
            return EXIT_OK
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"ptame {command}: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as error:
        print(f"ptame {command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        traceback.print_exc()
        print(
            f"ptame {command}: internal error (the traceback above); please report it.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


# === Arguments ===


def build_parser():
    """The `argparse` parser of the `ptame` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="ptame",
        description=(
            "P-TAME: train a saliency explainer for an image classifier, explain "
            "images, evaluate, export for TF Serving. The Keras backend is chosen "
            "by the KERAS_BACKEND environment variable (tensorflow, jax, torch)."
        ),
        epilog=(
            "Exit codes: 0 success, 2 usage or input error, 130 interrupted, "
            "1 internal error."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(commands)
    _add_explain(commands)
    for name, (_, summary) in DELEGATED.items():
        # Listed for `ptame --help`; `main` hands their arguments over as
        # they are, before this parser sees them.
        commands.add_parser(name, help=summary, add_help=False)
    _add_export(commands)
    return parser


def _add_train(commands):
    train = commands.add_parser(
        "train",
        help="train an explainer for a classifier and save it as .keras",
        description=(
            "Trains the P-TAME decoder for a frozen classifier on a folder of "
            "images or a TensorFlow Datasets dataset (labels are never used: "
            "the explained class is the classifier's prediction) and saves the "
            "explainer as a .keras file."
        ),
    )
    train.add_argument(
        "--classifier",
        required=True,
        help="the classifier to explain: a .keras file (a model on raw pixels "
        "in [0, 255] returning logits), a keras-hub preset name such as "
        "resnet_50_imagenet, a local preset directory, or "
        "keras.applications.<Name>",
    )
    train.add_argument(
        "--auxiliary",
        required=True,
        help="the auxiliary feature network: a .keras file (its outputs, or "
        "the layers named by --aux-layers, are the feature maps), a keras-hub "
        "preset such as resnet_18_imagenet (tapped at its pyramid outputs), a "
        "local preset directory, or keras.applications.<Name>",
    )
    train.add_argument(
        "--aux-layers",
        type=_names,
        default=None,
        help="comma-separated layer names of the auxiliary network to tap "
        "(default: its outputs, or a preset's pyramid outputs)",
    )
    train.add_argument(
        "--data",
        required=True,
        help="training images: a folder (searched recursively for "
        f"{', '.join(IMAGE_EXTENSIONS)}; grayscale and RGBA are converted to "
        "RGB, every image is resized to --image-size) or a TensorFlow Datasets "
        "name such as imagenette",
    )
    train.add_argument(
        "--split",
        default="train",
        help="the TensorFlow Datasets split (default: %(default)s)",
    )
    train.add_argument(
        "--image-size",
        type=_positive_int,
        default=None,
        help="side in pixels the images are resized to (default: the "
        "classifier's input size, or 224 for a preset that has none)",
    )
    train.add_argument(
        "--recipe",
        default=None,
        help="the authors' settings for a classifier (loss coefficients, AdamW "
        "weight decay, one-cycle learning rate, epochs, batch size): one of "
        "vgg_16_imagenet, resnet_50_imagenet, vit_base_patch16_224_imagenet "
        "(default: the loss defaults, AdamW with amsgrad)",
    )
    train.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="training epochs (default: the recipe's, else 1)",
    )
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="images per training step (default: the recipe's, else 32)",
    )
    train.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="peak learning rate (default: the recipe's, else 1e-4)",
    )
    train.add_argument(
        "--max-images",
        type=_positive_int,
        default=None,
        help="use at most this many training images (default: all)",
    )
    train.add_argument(
        "--baseline",
        choices=("black", "mean", "blur"),
        default="black",
        help="what replaces masked-out pixels in training (default: %(default)s)",
    )
    train.add_argument(
        "--backup-dir",
        default=None,
        help="folder for a backup at the end of every epoch; if training is "
        "interrupted, the same command resumes from the last completed epoch "
        "(default: no backup)",
    )
    train.add_argument(
        "--output",
        required=True,
        help="the .keras file to write the trained explainer to",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output if it exists (default: refuse)",
    )
    train.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="Keras progress output: 0 none, 1 progress bar, 2 one line per "
        "epoch (default: %(default)s)",
    )
    train.set_defaults(handler=run_train)


def _add_explain(commands):
    explain = commands.add_parser(
        "explain",
        help="write saliency overlays (PNG) and raw maps (.npy) for images",
        description=(
            "Explains images with a trained explainer. For each image writes "
            "<name>.png (the map over the image) and <name>.npy (the raw map, "
            "float32 in [0, 1], at the explainer's input size), and a "
            "summary.csv of the explained classes and their scores."
        ),
    )
    explain.add_argument(
        "--model", required=True, help="the trained explainer, a .keras file"
    )
    explain.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE_OR_FOLDER",
        help="image files, or folders searched recursively for "
        f"{', '.join(IMAGE_EXTENSIONS)}. Grayscale and RGBA images are "
        "converted to RGB (alpha is dropped); images of another size are "
        "resized to the explainer's input size",
    )
    explain.add_argument(
        "--output",
        default="ptame_explanations",
        help="output folder (default: %(default)s)",
    )
    explain.add_argument(
        "--classes",
        type=int,
        nargs="+",
        default=None,
        help="the class to explain: one for all images, or one per image "
        "(default: each image's predicted class)",
    )
    explain.add_argument(
        "--image-size",
        type=_positive_int,
        default=None,
        help="side in pixels the images are resized to (default: the "
        "classifier's input size)",
    )
    explain.add_argument(
        "--batch-size",
        type=_positive_int,
        default=32,
        help="images per forward pass (default: %(default)s)",
    )
    explain.add_argument(
        "--alpha",
        type=float,
        default=0.5,
        help="opacity of the map in the overlay, in [0, 1] (default: %(default)s)",
    )
    explain.add_argument(
        "--cmap",
        default="jet",
        help="matplotlib colormap of the overlay (default: %(default)s)",
    )
    explain.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files that exist (default: refuse, writing nothing)",
    )
    explain.add_argument(
        "--unsafe",
        action="store_true",
        help="load the .keras file with safe_mode=False (only for files you "
        "trust: it allows Lambda layers to run code)",
    )
    explain.add_argument("--quiet", action="store_true", help="no progress output")
    explain.set_defaults(handler=run_explain)


def _add_export(commands):
    export = commands.add_parser(
        "export",
        help="export a trained explainer as a TensorFlow SavedModel for TF Serving",
        description=(
            "Writes a TensorFlow SavedModel with the signatures serving_default "
            "(images -> classes, scores, maps), explain_classes (images and "
            "classes -> the same) and explain_encoded (JPEG/PNG bytes -> the "
            "same), from any Keras backend, checks that it reproduces the "
            "explainer, then moves it into place atomically."
        ),
    )
    export.add_argument(
        "--model", required=True, help="the trained explainer, a .keras file"
    )
    export.add_argument(
        "--output",
        required=True,
        help="the SavedModel folder to create; TF Serving expects "
        "<model_base_path>/<version>, e.g. models/ptame/1",
    )
    export.add_argument(
        "--image-size",
        type=_positive_int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        default=None,
        help="input size of the signatures (default: the classifier's)",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output if it exists (default: refuse)",
    )
    export.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the check that the SavedModel reproduces the explainer",
    )
    export.add_argument(
        "--unsafe",
        action="store_true",
        help="load the .keras file with safe_mode=False (only for files you trust)",
    )
    export.set_defaults(handler=run_export)


def _names(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated names, got {text!r}"
        )
    return names


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# === Subcommands ===


def run_train(args):
    import keras_ptame as kp
    from keras_ptame import recipes

    output = _keras_output(args.output, args.overwrite)
    recipe = recipes.get(args.recipe) if args.recipe else None
    epochs = args.epochs or (recipe.epochs if recipe else 1)
    batch_size = args.batch_size or (recipe.batch_size if recipe else 32)
    backbone = _load_backbone(args.classifier, args.image_size)
    # A classifier with a fixed input size decides; else the recipe's size.
    size = (
        args.image_size
        or _static_size(backbone.classifier)
        or (recipe.image_size if recipe else 224)
    )
    extractor = _load_extractor(args.auxiliary, args.aux_layers, size)
    explainer = kp.PTAME(backbone, extractor, baseline=args.baseline)
    explainer.build((None, size, size, 3))

    data = _training_data(args.data, args.split, size, batch_size, args.max_images)
    try:
        steps = len(data)
    except TypeError:
        # A tf.data pipeline whose length TensorFlow cannot tell.
        raise UsageError(
            f"Cannot tell how many batches {args.data!r} holds; pass --max-images."
        ) from None
    if steps <= 0:
        raise UsageError(f"No training batches in {args.data!r}.")
    if recipe is not None:
        # The one-cycle schedule spans the epochs actually run.
        recipe = dataclasses.replace(
            recipe,
            epochs=epochs,
            learning_rate=args.learning_rate or recipe.learning_rate,
        )
        explainer.compile(
            optimizer=recipe.optimizer(steps_per_epoch=steps), loss=recipe.loss()
        )
    else:
        explainer.compile(
            optimizer=keras.optimizers.AdamW(
                learning_rate=args.learning_rate or 1e-4, amsgrad=True
            )
        )
    callbacks = []
    if args.backup_dir:
        callbacks.append(keras.callbacks.BackupAndRestore(args.backup_dir))
    _say(
        args.verbose,
        f"Training for {epochs} epoch(s) of {steps} batch(es) of {batch_size} "
        f"images at {size}x{size} (KERAS_BACKEND={keras.config.backend()}).",
    )
    # The data shuffle themselves (tf.data and PyDataset ignore `shuffle`).
    explainer.fit(
        data, epochs=epochs, callbacks=callbacks, verbose=args.verbose, shuffle=False
    )
    _save_atomically(explainer, output)
    _say(args.verbose, f"Saved the explainer to {output}")
    return EXIT_OK


def run_explain(args):
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1]. Received: {args.alpha}")
    explainer = load_explainer(args.model, safe_mode=not args.unsafe)
    size = _explainer_size(explainer, args.image_size)
    files = collect_images(args.inputs)
    names = _output_names(files, args.inputs)
    classes = _expand_classes(args.classes, len(files), explainer.num_classes)
    targets = []
    for name in names:
        targets += [
            os.path.join(args.output, name + suffix) for suffix in (".png", ".npy")
        ]
    targets.append(os.path.join(args.output, "summary.csv"))
    existing = [path for path in targets if os.path.lexists(path)]
    if existing and not args.overwrite:
        raise FileExistsError(
            f"{len(existing)} output file(s) exist, e.g. {existing[0]!r}; nothing "
            "was written. Choose another --output or pass --overwrite."
        )
    # Every image is read once before anything is written, so that a bad
    # file stops the run with the outputs untouched.
    notes = []
    for path in files:
        read_image(path, size, notes)
    for note in notes:
        _say(not args.quiet, note)

    visualize = _visualize()
    os.makedirs(args.output, exist_ok=True)
    progress = (
        None if args.quiet else keras.utils.Progbar(len(files), unit_name="image")
    )
    rows = []
    for start in range(0, len(files), args.batch_size):
        chunk = files[start : start + args.batch_size]
        originals, resized = [], []
        for path in chunk:
            original, image = read_image(path, size)
            originals.append(original)
            resized.append(image)
        batch_classes = None if classes is None else classes[start : start + len(chunk)]
        outputs = explainer.explain_outputs(
            np.stack(resized), classes=batch_classes, batch_size=args.batch_size
        )
        for index, path in enumerate(chunk):
            name = names[start + index]
            saliency = outputs["maps"][index].astype(np.float32)
            _save_npy(saliency, os.path.join(args.output, name + ".npy"))
            picture = visualize.overlay(
                originals[index], saliency, cmap=args.cmap, alpha=args.alpha
            )
            visualize.save_png(picture, os.path.join(args.output, name + ".png"))
            rows.append(
                (
                    path,
                    name,
                    int(outputs["classes"][index]),
                    float(outputs["scores"][index]),
                )
            )
        if progress is not None:
            progress.add(len(chunk))
    _write_summary(rows, os.path.join(args.output, "summary.csv"))
    _say(not args.quiet, f"Wrote {len(rows)} explanation(s) to {args.output}")
    return EXIT_OK


def run_export(args):
    from keras_ptame import export

    explainer = load_explainer(args.model, safe_mode=not args.unsafe)
    path = export.export_saved_model(
        explainer,
        args.output,
        image_size=tuple(args.image_size) if args.image_size else None,
        overwrite=args.overwrite,
        verify=not args.no_verify,
        safe_mode=not args.unsafe,
    )
    print(
        f"Exported a SavedModel to {path} (signatures: {', '.join(export.SIGNATURES)})."
    )
    return EXIT_OK


def _delegate(command, argv):
    module_name, _ = DELEGATED[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        print(
            f"ptame {command}: error: this installation has no {module_name} module.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return int(module.main(list(argv)) or EXIT_OK)


# === Loading ===


def load_explainer(path, safe_mode=True):
    """Loads a `PTAME` from a `.keras` file, with a clear error if it cannot."""
    from keras_ptame.models.ptame import PTAME

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such explainer file: {path!r}")
    if os.path.isdir(path) or not path.endswith(".keras"):
        raise UsageError(
            f"The explainer must be a .keras file saved with `explainer.save`. "
            f"Received: {path!r}"
        )
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as error:
        # A truncated or foreign file fails deep inside the loader with
        # zipfile, h5py or deserialisation errors; all mean the same to a user.
        raise UsageError(
            f"Cannot load {path!r} as a Keras model; is it a complete .keras "
            f"file? ({type(error).__name__}: {_one_line(error)})"
        ) from error
    if not isinstance(model, PTAME):
        raise UsageError(
            f"{path!r} holds a {type(model).__name__}, not a keras_ptame.PTAME "
            "explainer."
        )
    return model


def _load_backbone(source, image_size):
    import keras_ptame as kp

    if _is_keras_file(source):
        return kp.Backbone(_load_keras_model(source, "classifier"))
    from_preset = getattr(kp.Backbone, "from_preset", None)
    if from_preset is None:
        raise UsageError(
            f"{source!r} is not a .keras file, and this version of keras_ptame "
            "cannot load presets (no `Backbone.from_preset`)."
        )
    return _from_preset(from_preset, source, "classifier", image_size=image_size)


def _load_extractor(source, layer_names, image_size):
    import keras_ptame as kp

    if _is_keras_file(source):
        return kp.AuxiliaryExtractor(
            _load_keras_model(source, "auxiliary network"), layer_names=layer_names
        )
    from_preset = getattr(kp.AuxiliaryExtractor, "from_preset", None)
    if from_preset is None:
        raise UsageError(
            f"{source!r} is not a .keras file, and this version of keras_ptame "
            "cannot load presets (no `AuxiliaryExtractor.from_preset`)."
        )
    return _from_preset(
        from_preset,
        source,
        "auxiliary network",
        layer_names=layer_names,
        image_size=image_size,
    )


def _from_preset(from_preset, source, what, **kwargs):
    try:
        return from_preset(source, **kwargs)
    except (ValueError, OSError) as error:
        raise UsageError(
            f"Cannot load the {what} preset {source!r}: {_one_line(error)}"
        ) from error
    except ImportError as error:
        raise UsageError(
            f"Loading the {what} preset {source!r} needs keras-hub "
            f"(pip install keras-hub): {_one_line(error)}"
        ) from error


def _is_keras_file(source):
    if source.endswith(".keras"):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"No such .keras file: {source!r}")
        return True
    return False


def _load_keras_model(path, what):
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise UsageError(
            f"Cannot load the {what} from {path!r}; is it a complete .keras file? "
            f"({type(error).__name__}: {_one_line(error)})"
        ) from error


def _static_size(model):
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) == 4 and None not in shape[1:3]:
        if shape[1] != shape[2]:
            raise UsageError(
                f"Only square inputs are supported here. Received: the classifier's "
                f"input shape {shape}"
            )
        return int(shape[1])
    return None


def _explainer_size(explainer, image_size):
    from keras_ptame.export import resolve_image_size

    if image_size is not None:
        return (image_size, image_size)
    return resolve_image_size(explainer)


# === Images ===


def collect_images(inputs):
    """Image files named directly or found recursively under folders, sorted."""
    files = []
    for item in inputs:
        if os.path.isdir(item):
            found = []
            for folder, _, names in os.walk(item):
                found += [
                    os.path.join(folder, name)
                    for name in names
                    if name.lower().endswith(IMAGE_EXTENSIONS)
                ]
            if not found:
                raise UsageError(
                    f"No image files ({', '.join(IMAGE_EXTENSIONS)}) in folder "
                    f"{item!r}."
                )
            files += sorted(found)
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise FileNotFoundError(f"No such image file or folder: {item!r}")
    return files


def read_image(path, size, notes=None):
    """Reads an image file as RGB uint8, and a copy resized to `size`.

    Args:
        path: str, the image file.
        size: `(height, width)` for the resized copy.
        notes: optional list; a sentence is appended when the image is
            converted or resized.

    Returns:
        `(original, resized)`, uint8 arrays `(h, w, 3)` and `(*size, 3)`.

    Raises:
        ValueError: the file is not an image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode != "RGB":
                # Grayscale is repeated on the three channels; alpha is dropped.
                image = image.convert("RGB")
            original = np.asarray(image, dtype=np.uint8)
            resized = original
            if original.shape[:2] != tuple(size):
                resized = np.asarray(
                    image.resize((size[1], size[0]), Image.Resampling.BILINEAR),
                    dtype=np.uint8,
                )
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UsageError(
            f"Cannot read {path!r} as an image ({type(error).__name__}: "
            f"{_one_line(error)})."
        ) from error
    if notes is not None:
        changes = []
        if mode != "RGB":
            changes.append(f"converted from mode {mode} to RGB")
        if original.shape[:2] != tuple(size):
            changes.append(
                f"resized from {original.shape[0]}x{original.shape[1]} to "
                f"{size[0]}x{size[1]}"
            )
        if changes:
            notes.append(f"{path}: {', '.join(changes)}")
    return original, resized


def _output_names(files, inputs):
    """Output names without suffix: relative to their folder, unique."""
    folders = [os.path.abspath(item) for item in inputs if os.path.isdir(item)]
    names, seen = [], set()
    for path in files:
        absolute = os.path.abspath(path)
        base = None
        for folder in folders:
            if absolute.startswith(folder + os.sep):
                base = os.path.relpath(absolute, folder)
                break
        if base is None:
            base = os.path.basename(path)
        name = os.path.splitext(base)[0]
        unique, count = name, 1
        while unique in seen:
            count += 1
            unique = f"{name}_{count}"
        seen.add(unique)
        names.append(unique)
    return names


def _expand_classes(classes, count, num_classes):
    if classes is None:
        return None
    if len(classes) == 1:
        classes = classes * count
    if len(classes) != count:
        raise UsageError(
            f"--classes must give one class for all images or one per image "
            f"({count}). Received: {len(classes)} classes"
        )
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise UsageError(
            f"--classes must lie in [0, {num_classes}). Received: {bad[:5]}"
        )
    return np.asarray(classes, dtype=np.int32)


class FolderImages(keras.utils.PyDataset):
    """Batches of images read from files and resized, for `fit` (no labels)."""

    def __init__(self, files, size, batch_size, shuffle=True, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.files, self.size, self.batch_size = list(files), size, batch_size
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def on_epoch_end(self):
        # Keras does not shuffle a PyDataset: a new order every epoch.
        if self.shuffle:
            self.rng.shuffle(self.files)

    def __len__(self):
        return -(-len(self.files) // self.batch_size)

    def __getitem__(self, index):
        chunk = self.files[index * self.batch_size : (index + 1) * self.batch_size]
        return np.stack([read_image(path, self.size)[1] for path in chunk]).astype(
            "float32"
        )


def _training_data(source, split, size, batch_size, max_images):
    if os.path.isdir(source):
        files = collect_images([source])
        if max_images:
            files = files[:max_images]
        for path in files:
            read_image(path, (size, size))
        return FolderImages(files, (size, size), batch_size)
    if os.path.sep in source or os.path.splitext(source)[1]:
        raise FileNotFoundError(f"No such image folder: {source!r}")
    return _tfds_data(source, split, size, batch_size, max_images)


def _tfds_data(name, split, size, batch_size, max_images):
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise UsageError(
            f"{name!r} is not a folder; reading it as a TensorFlow Datasets name "
            "needs tensorflow-datasets (pip install tensorflow-datasets)."
        ) from error
    try:
        dataset = tfds.load(name, split=split, shuffle_files=True)
    except Exception as error:
        raise UsageError(
            f"Cannot load the TensorFlow Datasets dataset {name!r} (split "
            f"{split!r}): {_one_line(error)}"
        ) from error

    def image_of(example):
        image = example["image"] if isinstance(example, dict) else example[0]
        if image.shape.rank == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        image = tf.cast(image, tf.float32)
        return tf.image.resize(image, (size, size))

    if max_images:
        dataset = dataset.take(max_images)
    return (
        dataset.shuffle(1024, seed=0, reshuffle_each_iteration=True)
        .map(image_of, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


# === Writing ===


def _keras_output(path, overwrite):
    if not path.endswith(".keras"):
        raise UsageError(f"--output must end in .keras. Received: {path!r}")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"The output exists: {path!r}. Choose another --output or pass --overwrite."
        )
    return path


def _save_atomically(explainer, path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".keras", dir=folder)
    os.close(handle)
    try:
        explainer.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _save_npy(array, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.save(path, array)


def _write_summary(rows, path):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["file", "output", "class", "score"])
        writer.writerows(rows)


def _visualize():
    from keras_ptame import visualize

    return visualize


def _say(enabled, message):
    if enabled:
        print(message, file=sys.stderr)


def _one_line(error):
    text = " ".join(str(error).split())
    return text if len(text) <= 500 else text[:497] + "..."


if __name__ == "__main__":
    sys.exit(main())
