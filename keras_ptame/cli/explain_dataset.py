"""`ptame explain-dataset`: a whole image collection explained on Ray Data, resumably."""

import csv
import os

import keras

from keras_ptame.cli import ray_pipeline
from keras_ptame.cli.arguments import (
    add_forward_batch_size,
    add_image_size,
    add_model,
    add_quiet,
    add_unsafe,
    positive_int,
)
from keras_ptame.cli.errors import UsageError, note, say, track_outputs, wrote
from keras_ptame.cli.explain import SUMMARY, output_names
from keras_ptame.cli.shard_explainer import CollectionSettings
from keras_ptame.utils.images import IMAGE_EXTENSIONS, find_images
from keras_ptame.utils.shards import (
    MANIFEST,
    MAPS_FOLDER,
    SHARDS_FOLDER,
    finished_shards,
    merge_shard_tables,
    open_manifest,
    plan_shards,
)


def add_parser(subcommands):
    """Adds `explain-dataset` and its options to the `ptame` subcommands."""
    parser = subcommands.add_parser(
        "explain-dataset",
        help="explain a whole image collection on Ray Data, in resumable shards",
        description=(
            "Explains every image of a collection with a trained explainer on "
            "Ray Data (map_batches over the explainer, one explainer per "
            f"worker). Writes {MAPS_FOLDER}/<name>.png, each map as a lossless "
            "grayscale PNG (round(255 x map), the values of `ptame explain "
            f"--dtype uint8`), and {SUMMARY} with `ptame explain`'s columns. "
            "The images are split into shards; each finished shard is kept "
            f"({SHARDS_FOLDER}/<index>.csv, renamed into place after its maps), "
            "so the same command run again after a kill or an error explains "
            f"only the shards left. {MANIFEST} fixes the images and settings of "
            "the folder: another run is refused there. Needs Ray Data "
            f"(pip install '{ray_pipeline.RAY_REQUIREMENT}')."
        ),
    )
    add_model(parser)
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE_OR_FOLDER",
        help="image files, or folders searched recursively for "
        f"{', '.join(IMAGE_EXTENSIONS)}, read as `ptame explain` reads them. On "
        "a cluster, paths every worker can read",
    )
    parser.add_argument(
        "--output", required=True, help="output folder (created if need be)"
    )
    _add_engine_options(parser)
    parser.add_argument(
        "--top-k",
        type=positive_int,
        default=None,
        metavar="K",
        help="explain each image's K highest-scoring classes: maps "
        "<name>_top1.png to <name>_topK.png, as `ptame explain --top-k` "
        "(default: the predicted class)",
    )
    add_image_size(
        parser,
        "of the images once resized (default: the explainer's input size)",
    )
    add_unsafe(parser)
    add_quiet(parser)
    parser.set_defaults(run=run)


def _add_engine_options(parser):
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="Ray actors, each holding the explainer (default: %(default)s)",
    )
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=256,
        help="images per shard, the unit of work kept after a kill "
        "(default: %(default)s)",
    )
    add_forward_batch_size(parser)
    parser.add_argument(
        "--address",
        default=None,
        help="a Ray cluster to run on (`auto`, or ray://HEAD:10001); the "
        "workers must read the images and --output at the same paths "
        "(default: a local Ray with --workers CPUs)",
    )


def run(args):
    """Explains the collection `args` names, resuming a run killed before."""
    files = find_images(args.inputs)
    settings = CollectionSettings(
        model=args.model,
        output=os.path.abspath(args.output),
        files=tuple(files),
        names=tuple(output_names(files, args.inputs)),
        safe_mode=not args.unsafe,
        classifier_weights=args.classifier_weights,
        auxiliary_weights=args.auxiliary_weights,
        image_size=args.image_size,
        batch_size=args.batch_size,
        top_k=args.top_k,
    )
    shards = plan_shards(len(files), args.shard_size)
    _open_output(settings, args)
    finished = finished_shards(settings.output, len(shards))
    pending = [(i, *shard) for i, shard in enumerate(shards) if i not in finished]
    done = len(files) - sum(stop - start for _, start, stop in pending)
    if finished:
        say(
            not args.quiet,
            f"Resuming: {len(finished)} of {len(shards)} shards finished, "
            f"{len(files) - done} of {len(files)} images left.",
        )
    track_outputs()
    note(f"finished shards are kept in {args.output}: run the command again to resume")
    if pending:
        progress = None
        if not args.quiet:
            progress = keras.utils.Progbar(len(files), unit_name="image")
            progress.update(done)
        ray_pipeline.explain_on_ray(
            settings, pending, args.workers, args.address, progress
        )
    summary = os.path.join(settings.output, SUMMARY)
    merge_shard_tables(settings.output, len(shards), summary)
    wrote(summary)
    _report_collection(summary, args)


def _open_output(settings, args):
    """Writes the output's manifest, or checks the one of the run resumed."""
    manifest = {
        "model": os.path.abspath(args.model),
        "model_stamp": _model_stamp(args.model),
        "classifier_weights": args.classifier_weights,
        "auxiliary_weights": args.auxiliary_weights,
        "image_size": args.image_size,
        "top_k": args.top_k,
        "shard_size": args.shard_size,
        "files": list(settings.files),
        "names": list(settings.names),
    }
    try:
        open_manifest(settings.output, manifest)
    except ValueError as error:
        raise UsageError(f"--output: {error}") from None


def _model_stamp(path):
    """Size and modification time of the model file: a retrained model is
    another run (`None` for a handle that is not a local path)."""
    if not os.path.exists(path):
        return None
    found = os.stat(path)
    return [found.st_size, found.st_mtime_ns]


def _report_collection(summary, args):
    with open(summary, newline="") as file:
        rows = list(csv.DictReader(file))
    say(not args.quiet, f"Wrote {len(rows)} map(s) and {SUMMARY} to {args.output}")
    for flag, meaning in (
        ("flat", "no evidence: all zeros"),
        ("misranked", "their class failed the removal check in training"),
    ):
        count = sum(row[flag] == "True" for row in rows)
        if count:
            say(
                not args.quiet,
                f"{count} of {len(rows)} maps {flag} ({meaning}; the `{flag}` "
                f"column of {SUMMARY}, see the README, 'Honest maps')",
            )
