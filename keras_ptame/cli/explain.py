"""`ptame explain`: saliency overlays (PNG), raw maps (.npy) and a summary."""

import contextlib
import csv
import os

import keras
import numpy as np

from keras_ptame import visualize
from keras_ptame.cli.arguments import (
    add_forward_batch_size,
    add_image_size,
    add_model,
    add_overwrite,
    add_quiet,
    add_unsafe,
    positive_int,
)
from keras_ptame.cli.errors import UsageError, say, track_outputs, wrote
from keras_ptame.cli.loading import open_explainer
from keras_ptame.models.explain_options import MAP_DTYPES
from keras_ptame.utils.files import (
    check_outputs,
    deferred_interrupts,
    staging_folder,
)
from keras_ptame.utils.images import IMAGE_EXTENSIONS, find_images, read_image

SUMMARY = "summary.csv"
SUFFIXES = (".png", ".npy")
# The hidden folder a run writes into before moving its files into place;
# one left by a killed run is removed by the next (see `staging_folder`).
STAGING_PREFIX = ".ptame-explain-"
# The columns of the summary, one row per image (per image and class with
# --top-k, which adds each class's rank, 1 for the highest score).
COLUMNS = ("file", "output", "class", "score", "evidence", "flat", "misranked")
TOP_K_COLUMNS = ("file", "output", "rank", *COLUMNS[2:])


def add_parser(subcommands):
    """Adds `explain` and its options to the `ptame` subcommands."""
    parser = subcommands.add_parser(
        "explain",
        help="write saliency overlays (PNG) and raw maps (.npy) for images",
        description=(
            "Explains images with a trained explainer. For each image writes "
            "<name>.png (the map over the image) and <name>.npy (the raw map "
            "at the explainer's input size: float32 in [0, 1], or uint8 in "
            "[0, 255] with --dtype uint8), and a "
            f"{SUMMARY} of the explained classes, their scores, each map's "
            "evidence, whether it is flat (no evidence: all zeros) and whether "
            "it is misranked (its class failed the removal check in training: "
            "its maps do not carry it). The "
            "files are moved into place only once every image is explained: "
            "an interrupted run writes nothing."
        ),
    )
    add_model(parser)
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE_OR_FOLDER",
        help="image files, or folders searched recursively for "
        f"{', '.join(IMAGE_EXTENSIONS)}. Grayscale and RGBA images are "
        "converted to RGB (alpha is dropped); images of another size are "
        "resized to the explainer's input size",
    )
    parser.add_argument(
        "--output",
        default="ptame_explanations",
        help="output folder (default: %(default)s)",
    )
    parser.add_argument(
        "--classes",
        type=int,
        nargs="+",
        default=None,
        help="the class to explain: one for all images, or one per image "
        "(default: each image's predicted class)",
    )
    parser.add_argument(
        "--top-k",
        type=positive_int,
        default=None,
        metavar="K",
        help="explain each image's K highest-scoring classes, in one pass of "
        "each network: writes <name>_top1.png/.npy (the highest) to "
        "<name>_topK.png/.npy, and one summary row per image and class, with "
        "its rank (default: one class per image; not with --classes)",
    )
    parser.add_argument(
        "--dtype",
        choices=MAP_DTYPES,
        default="float32",
        help="the type of the .npy maps: float32 in [0, 1], or uint8 in "
        "[0, 255] (round(255 x map), made where the networks run: a quarter "
        "of the bytes) (default: %(default)s)",
    )
    _add_picture_options(parser)
    add_overwrite(parser, "output files that exist")
    add_unsafe(parser)
    add_quiet(parser)
    parser.set_defaults(run=run)


def _add_picture_options(parser):
    add_image_size(
        parser,
        "of the images once resized, and that a P-TAME authors' checkpoint "
        "(.ckpt) is imported for (default: the explainer's input size; 224 for "
        "a checkpoint)",
    )
    add_forward_batch_size(parser)
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.5,
        help="opacity of the map in the overlay, in [0, 1] (default: %(default)s)",
    )
    parser.add_argument(
        "--cmap",
        default="jet",
        help="matplotlib colormap of the overlay (default: %(default)s)",
    )


def run(args):
    """Explains the images `args` name and writes the outputs.

    Everything is written into a hidden folder inside `--output` and moved
    into place once every image is explained: an interrupted or failed run
    leaves `--output` as it was.
    """
    _check_picture_options(args)
    explainer = open_explainer(
        args.model,
        safe_mode=not args.unsafe,
        classifier_weights=args.classifier_weights,
        auxiliary_weights=args.auxiliary_weights,
        image_size=args.image_size,
    )
    size = explained_image_size(explainer, args.image_size)
    files = find_images(args.inputs)
    names = output_names(files, args.inputs)
    classes = _expand_classes(args.classes, len(files), explainer.num_classes)
    _check_top_k(args, explainer.num_classes)
    stems = [stem for name in names for stem in output_stems(name, args.top_k)]
    inputs = [*files, args.model, args.classifier_weights, args.auxiliary_weights]
    _refuse_existing(args.output, stems, args.overwrite, inputs)
    # Every image is read once before anything is written, so that a bad
    # file stops the run with the outputs untouched.
    notes = []
    for path in files:
        read_image(path, size, notes, explainer.input_channels or 3)
    for note in notes:
        say(not args.quiet, note)
    track_outputs()
    with _staging_folder(args.output) as staging:
        rows = _explain_all(explainer, files, names, classes, size, args, staging)
        columns = COLUMNS if args.top_k is None else TOP_K_COLUMNS
        _write_summary(rows, os.path.join(staging, SUMMARY), columns)
        _move_into_place(staging, args.output, stems)
    _report(rows, args)


def _check_picture_options(args):
    # Checked before any work, so that a bad option writes nothing.
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1]. Received: {args.alpha}")
    try:
        visualize.colorize(np.zeros((2, 2), np.float32), cmap=args.cmap)
    except ValueError as error:
        raise UsageError(f"--cmap: {error}") from None


def _explain_all(explainer, files, names, classes, size, args, folder):
    progress = (
        None if args.quiet else keras.utils.Progbar(len(files), unit_name="image")
    )
    rows = []
    for start in range(0, len(files), args.batch_size):
        stop = min(start + args.batch_size, len(files))
        rows += _explain_chunk(
            explainer,
            files[start:stop],
            names[start:stop],
            None if classes is None else classes[start:stop],
            size,
            args,
            folder,
        )
        if progress is not None:
            progress.add(stop - start)
    return rows


@contextlib.contextmanager
def _staging_folder(output):
    """A hidden folder inside `output` (created if need be), removed at the end."""
    created = not os.path.isdir(output)
    try:
        with staging_folder(output, STAGING_PREFIX) as staging:
            yield staging
    finally:
        if created and os.path.isdir(output) and not os.listdir(output):
            os.rmdir(output)


def _move_into_place(staging, output, names):
    """Moves the finished files from `staging` to `output`, uninterrupted."""
    with deferred_interrupts():
        for name in names:
            for suffix in SUFFIXES:
                target = os.path.join(output, name + suffix)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(os.path.join(staging, name + suffix), target)
                wrote(target)
        os.replace(os.path.join(staging, SUMMARY), os.path.join(output, SUMMARY))
        wrote(os.path.join(output, SUMMARY))


def _report(rows, args):
    say(not args.quiet, f"Wrote {len(rows)} explanation(s) to {args.output}")
    flat = [row for row in rows if row["flat"]]
    if flat:
        say(
            not args.quiet,
            f"{len(flat)} of {len(rows)} maps flat: the classifier needed no "
            "evidence for them, and their maps are all zeros (the `flat` column "
            f"of {SUMMARY}; their overlays are labelled), e.g. {flat[0]['output']}",
        )
    misranked = [row for row in rows if row["misranked"]]
    if misranked:
        classes = ", ".join(str(c) for c in sorted({row["class"] for row in misranked}))
        say(
            not args.quiet,
            f"{len(misranked)} of {len(rows)} maps misranked, of class(es) {classes}: "
            "the removal check in training found that these classes' maps do not "
            "carry their class (removing their top half cost it no more than "
            "removing their bottom half; typically they cover the background; see "
            "the README, 'Honest maps'), e.g. "
            f"{misranked[0]['output']} (the `misranked` column of {SUMMARY}; their "
            "overlays are labelled)",
        )


def explained_image_size(explainer, image_size):
    if image_size is not None:
        return (image_size, image_size)
    if explainer.input_size is None:
        raise UsageError(
            "This explainer takes images of any size and was saved unbuilt: "
            "choose their size with --image-size."
        )
    return tuple(explainer.input_size)


def _check_top_k(args, num_classes):
    if args.top_k is None:
        return
    if args.classes is not None:
        raise UsageError("Pass either --classes or --top-k, not both.")
    if args.top_k > num_classes:
        raise UsageError(
            f"--top-k must be at most the number of classes ({num_classes}). "
            f"Received: {args.top_k}"
        )


def output_stems(name, top_k):
    """The output names (without suffix) of one image: `name`, or with
    `top_k`, `name_top1` to `name_top<top_k>` (its classes, highest first)."""
    if top_k is None:
        return [name]
    return [f"{name}_top{rank}" for rank in range(1, top_k + 1)]


def summary_rows(outputs, files, names, top_k=None):
    """The rows of `ptame explain`'s summary for `explain_outputs`' `outputs`.

    Args:
        outputs: dict of numpy arrays, as `explain_outputs` returns them
            (`(N,)` per image, or `(N, K)` with `top_k=K`).
        files: the `N` image files.
        names: their output names without suffix.
        top_k: optional int, as passed to `explain_outputs`.

    Returns:
        A list of dicts, one per map, image by image (and rank by rank):
        `file`, `output` (the map's name, `name_top<rank>` with `top_k`),
        `class`, `score`, `evidence`, `flat`, `misranked` and, with `top_k`,
        `rank` (1 for the highest score).
    """
    if top_k is None:
        outputs = {key: np.asarray(value)[:, None] for key, value in outputs.items()}
    rows = []
    for index, (path, name) in enumerate(zip(files, names)):
        for rank, stem in enumerate(output_stems(name, top_k)):
            row = {
                "file": path,
                "output": stem,
                "class": int(outputs["classes"][index, rank]),
                "score": float(outputs["scores"][index, rank]),
                "evidence": float(outputs["evidence"][index, rank]),
                "flat": bool(outputs["flat"][index, rank]),
                "misranked": bool(outputs["misranked"][index, rank]),
            }
            if top_k is not None:
                row["rank"] = rank + 1
            rows.append(row)
    return rows


def _row_places(files, top_k):
    """`(image index, rank)` of each of `summary_rows`' rows, in order."""
    return [(i, rank) for i in range(len(files)) for rank in range(top_k or 1)]


def _explain_chunk(explainer, files, names, classes, size, args, folder):
    """Explains one batch of files, writes their outputs, returns summary rows."""
    originals, resized = zip(
        *(
            read_image(path, size, channels=explainer.input_channels or 3)
            for path in files
        )
    )
    outputs = explainer.explain_outputs(
        np.stack(resized),
        classes=classes,
        batch_size=args.batch_size,
        top_k=args.top_k,
        dtype=args.dtype,
    )
    rows = summary_rows(outputs, files, names, args.top_k)
    maps = np.asarray(outputs["maps"])
    maps = maps[:, None] if args.top_k is None else maps
    for row, (index, rank) in zip(rows, _row_places(files, args.top_k)):
        _write_map(originals[index], maps[index, rank], row, args, folder)
    return rows


def _write_map(original, saliency, row, args, folder):
    """Writes one map (.npy) and its overlay on `original` (.png)."""
    target = os.path.join(folder, row["output"])
    os.makedirs(os.path.dirname(target), exist_ok=True)
    np.save(target + ".npy", saliency)
    if saliency.dtype == np.uint8:
        saliency = saliency / np.float32(255)
    picture = visualize.overlay(original, saliency, cmap=args.cmap, alpha=args.alpha)
    visualize.save_png(_labelled(picture, row), target + ".png")


def _labelled(picture, row):
    """The overlay, labelled if its map is flat or misranked (never both)."""
    if row["flat"]:
        return visualize.label(picture, "flat: no evidence")
    if row["misranked"]:
        return visualize.label(picture, "misranked: check failed")
    return picture


def output_names(files, inputs):
    """Output names without suffix: relative to their folder, unique."""
    folders = [os.path.abspath(item) for item in inputs if os.path.isdir(item)]
    names, seen = [], set()
    for path in files:
        absolute = os.path.abspath(path)
        base = os.path.basename(path)
        for folder in folders:
            if absolute.startswith(folder + os.sep):
                base = os.path.relpath(absolute, folder)
                break
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


def _refuse_existing(output, names, overwrite, inputs):
    files = [name + suffix for name in names for suffix in SUFFIXES] + [SUMMARY]
    check_outputs(output, files, overwrite, inputs, "--output")


def _write_summary(rows, path, columns=COLUMNS):
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)
