"""`ptame evaluate`: score explainers of one classifier in one table."""

import zipfile

import numpy as np

from keras_ptame.cli.arguments import (
    add_checkpoint_weights,
    add_image_size,
    add_overwrite,
    add_quiet,
    add_unsafe,
    positive_int,
)
from keras_ptame.cli.errors import UsageError, one_line
from keras_ptame.cli.loading import METHOD_FORMS, make_explainer
from keras_ptame.evaluation import EVALUATION_FILES, evaluate
from keras_ptame.metrics.imputation import IMPUTATIONS
from keras_ptame.models.loading import CHECKPOINT_SUFFIXES, load_keras_model
from keras_ptame.utils.files import check_outputs


def add_parser(subcommands):
    """Adds `evaluate` and its options to the `ptame` subcommands."""
    parser = subcommands.add_parser(
        "evaluate",
        help="score explainers (AD/IC, ROAD, pointing game, timings) in one table",
        description=(
            "Scores explainers of one classifier (AD/IC, ROAD, pointing game, mass "
            "inside, seconds per explanation) and writes one table as Markdown and "
            "CSV (evaluation.md, evaluation.csv), and the same scores per "
            "explained class with the shares of flat maps (maps that found no "
            "evidence) and of misranked maps (maps that do not carry their "
            "class) in evaluation_per_class.md and .csv."
        ),
    )
    parser.add_argument(
        "--classifier", required=True, help="the classifier, a .keras file"
    )
    parser.add_argument(
        "--data",
        required=True,
        help=".npz file with 'images' (N, H, W, 3) and optional 'masks' (N, H, W) "
        "or 'boxes' (N, 4)",
    )
    parser.add_argument(
        "--method",
        action="append",
        required=True,
        help=f"{METHOD_FORMS}; repeat for each row",
    )
    parser.add_argument(
        "--output", default="evaluation", help="output folder (default: %(default)s)"
    )
    _add_scoring_options(parser)
    add_overwrite(parser, "the table files that exist in --output")
    add_checkpoint_weights(parser)
    add_image_size(
        parser,
        "of the images that the P-TAME authors' checkpoints among the methods "
        "(NAME=PATH.ckpt) are imported for (default: 224)",
    )
    add_unsafe(parser)
    add_quiet(parser)
    parser.set_defaults(run=run)


def _add_scoring_options(parser):
    parser.add_argument(
        "--imputation",
        choices=IMPUTATIONS,
        default="linear",
        help="ROAD's fill of removed pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--box-format",
        default="xyxy",
        help="format of the boxes in --data (default: %(default)s)",
    )
    parser.add_argument(
        "--limit", type=positive_int, default=None, help="use the first N images"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="images per call (default: %(default)s)",
    )
    parser.add_argument(
        "--curves", action="store_true", help="add deletion and insertion areas"
    )
    parser.add_argument(
        "--intervals",
        type=float,
        default=None,
        metavar="LEVEL",
        help="a confidence interval of this level (e.g. 0.95) beside every "
        "value, and each column's winner in bold only where the intervals "
        "decide it (default: none)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of ROAD's noise, RISE's masks and the random maps "
        "(default: %(default)s)",
    )


def run(args):
    """Evaluates the methods `args` name; writes and prints the table."""
    safe_mode = not args.unsafe
    checkpoint_options = _checkpoint_options(args)
    inputs = [args.classifier, args.data, args.classifier_weights]
    inputs += [args.auxiliary_weights, *(s.partition("=")[2] for s in args.method)]
    # Before loading and scoring: a refused --output costs nothing.
    check_outputs(args.output, EVALUATION_FILES, args.overwrite, inputs, "--output")
    classifier = load_keras_model(args.classifier, "classifier", safe_mode)
    data = _read_npz(args.data, args.limit)
    explainers = dict(
        make_explainer(
            spec,
            classifier,
            args.batch_size,
            args.seed,
            safe_mode,
            checkpoint_options=checkpoint_options,
        )
        for spec in args.method
    )
    table = evaluate(
        explainers,
        classifier,
        data,
        box_format=args.box_format,
        imputation=args.imputation,
        curves=args.curves,
        batch_size=args.batch_size,
        output_dir=args.output,
        overwrite=args.overwrite,
        verbose=0 if args.quiet else 1,
        seed=args.seed,
        intervals=args.intervals,
    )
    if not args.quiet:
        print(table.to_markdown())
        print(
            "Per explained class (`flat`: maps that found no evidence; "
            "`misranked`: maps that do not carry their class):\n"
        )
        print(table.per_class.to_markdown())


def _checkpoint_options(args):
    """The options of the authors' checkpoints, refused if no method is one."""
    options = {
        "--classifier-weights": args.classifier_weights,
        "--auxiliary-weights": args.auxiliary_weights,
        "--image-size": args.image_size,
    }
    given = [flag for flag, value in options.items() if value is not None]
    methods = [spec.partition("=")[2] for spec in args.method if "=" in spec]
    if given and not any(m.endswith(CHECKPOINT_SUFFIXES) for m in methods):
        raise UsageError(
            f"{' and '.join(given)}: only for a P-TAME authors' checkpoint "
            "among the methods (--method NAME=PATH.ckpt), and none is."
        )
    return {
        "classifier_weights": args.classifier_weights,
        "auxiliary_weights": args.auxiliary_weights,
        "image_size": args.image_size,
    }


def _read_npz(path, limit):
    """The arrays of an `.npz` file, as a dict, cut to the first `limit` images."""
    with open(path, "rb") as file:
        try:
            archive = np.load(file)
            arrays = (
                {key: archive[key] for key in archive.files}
                if isinstance(archive, np.lib.npyio.NpzFile)
                else None
            )
        except (ValueError, EOFError, zipfile.BadZipFile) as error:
            raise UsageError(
                f"Cannot read {path!r} as an .npz file ({type(error).__name__}: "
                f"{one_line(error)})"
            ) from error
    if arrays is None:
        raise UsageError(
            f"--data must be an .npz file of named arrays. Received: {path!r}"
        )
    if limit is not None:
        arrays = {key: value[:limit] for key, value in arrays.items()}
    return arrays
