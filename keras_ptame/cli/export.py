"""`ptame export`: a trained explainer as a TensorFlow SavedModel for TF
Serving, or as a LiteRT model (`--format litert`) for phones and edge devices."""

import os

from keras_ptame import export
from keras_ptame.cli.arguments import (
    add_image_size,
    add_model,
    add_overwrite,
    add_unsafe,
)
from keras_ptame.cli.errors import track_outputs, wrote
from keras_ptame.cli.loading import open_explainer
from keras_ptame.models.loading import CHECKPOINT_SUFFIXES


def add_parser(subcommands):
    """Adds `export` and its options to the `ptame` subcommands."""
    parser = subcommands.add_parser(
        "export",
        help="export a trained explainer as a TensorFlow SavedModel for TF Serving "
        "or a LiteRT model",
        description=(
            "Writes a TensorFlow SavedModel with the signatures "
            f"{', '.join(export.SIGNATURES)} (images, or images and classes, or "
            "JPEG/PNG bytes -> classes, scores, maps), or with --format litert "
            "a LiteRT model (.tflite, LiteRT's builtin operations only) with "
            f"{', '.join(export.LITERT_SIGNATURES)}, or with --format onnx an "
            "ONNX model (.onnx) with serving_default, from any Keras backend; "
            "checks that it reproduces the explainer, then moves it into place "
            "atomically."
        ),
    )
    add_model(parser)
    parser.add_argument(
        "--output",
        required=True,
        help="the SavedModel folder to create (TF Serving expects "
        "<model_base_path>/<version>, e.g. models/ptame/1), or with --format "
        "litert or onnx the .tflite or .onnx file",
    )
    parser.add_argument(
        "--format",
        choices=("savedmodel", "litert", "onnx"),
        default="savedmodel",
        help="savedmodel (TF Serving), litert (a .tflite file for the LiteRT "
        "runtime; its check needs ai-edge-litert) or onnx (a .onnx file, by "
        "tf2onnx; its check needs onnxruntime) (default: %(default)s)",
    )
    add_image_size(
        parser,
        "of the signatures' square images, and that a P-TAME authors' "
        "checkpoint (.ckpt) is imported for (default: the explainer's input "
        "size; 224 for a checkpoint)",
    )
    add_overwrite(
        parser,
        "--output (only a SavedModel keras_ptame exported, files you added to "
        "it, e.g. assets.extra/tf_serving_warmup_requests, kept; or a LiteRT or "
        "ONNX model)",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the check that the export reproduces the explainer",
    )
    add_unsafe(parser)
    parser.set_defaults(run=run)


def run(args):
    """Exports the explainer `args.model` to `args.output`."""
    explainer = open_explainer(
        args.model,
        safe_mode=not args.unsafe,
        classifier_weights=args.classifier_weights,
        auxiliary_weights=args.auxiliary_weights,
        # The square side a checkpoint is imported for; a saved explainer has its own.
        image_size=args.image_size
        if args.model.endswith(CHECKPOINT_SUFFIXES)
        else None,
    )
    explainer.warn_if_untrained()
    track_outputs()
    if args.format == "savedmodel":
        path = _export_with(export.export_saved_model, explainer, args)
        kept = export.user_files(path)
        signatures = export.exported_signatures(explainer.input_channels)
        print(
            f"Exported a SavedModel to {path} (signatures: {', '.join(signatures)})"
            + (f"; kept your files: {', '.join(kept)}." if kept else ".")
        )
        return
    write, name, signatures = _FILE_FORMATS[args.format]
    path = _export_with(write, explainer, args)
    size = os.path.getsize(path) / 2**20
    print(
        f"Exported the explainer to {path}: {name} model, {size:.1f} MiB, "
        f"signatures {', '.join(signatures)}."
    )


# The one-file formats: what writes each, its name and its signatures.
_FILE_FORMATS = {
    "litert": (export.export_litert, "a LiteRT", export.LITERT_SIGNATURES),
    "onnx": (export.export_onnx, "an ONNX", export.ONNX_SIGNATURES),
}


def _export_with(write, explainer, args):
    """Runs the export `write`; returns its path."""
    before = _stamp(args.output)
    try:
        return write(
            explainer,
            args.output,
            image_size=(args.image_size,) * 2 if args.image_size else None,
            overwrite=args.overwrite,
            verify=not args.no_verify,
            safe_mode=not args.unsafe,
        )
    finally:
        # The export is moved into place as its last step: an interrupt may
        # come just after it, and the summary must say so.
        if _stamp(args.output) != before:
            wrote(args.output)


def _stamp(path):
    """What tells one export at `path` from another: the time and size of
    its SavedModel's marker, or of its file."""
    marker = os.path.join(path, export.MARKER) if os.path.isdir(path) else path
    if not os.path.isfile(marker):
        return None
    status = os.stat(marker)
    return (status.st_mtime_ns, status.st_size, status.st_ino)
