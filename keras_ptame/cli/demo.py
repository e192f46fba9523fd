"""`ptame demo`: the offline end-to-end demo on synthetic shapes."""

import argparse
import dataclasses
import functools

from keras_ptame import demo
from keras_ptame.cli.arguments import add_overwrite, add_quiet
from keras_ptame.demo import DEMO_FILES, DemoConfig
from keras_ptame.utils.files import check_outputs


def add_parser(subcommands):
    """Adds `demo` and its options (one per `DemoConfig` field) to `ptame`."""
    parser = subcommands.add_parser(
        "demo",
        help="the offline demo: train on synthetic shapes, write pictures and metrics",
        description=(
            "Trains a classifier, an auxiliary network and a P-TAME explainer on "
            "synthetic shapes with known object masks, offline, then writes "
            "explanation pictures and metrics (accuracy, kept, pointing game, "
            "mass inside, timings) to an output folder."
        ),
    )
    parser.add_argument(
        "--output", default="demo_output", help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=DemoConfig.quick.__doc__.splitlines()[0].rstrip(".")
        + " (the settings given here still apply)",
    )
    add_overwrite(parser, "the demo's files that exist in --output")
    add_quiet(parser)
    settings = parser.add_argument_group("settings (DemoConfig)")
    for field in dataclasses.fields(DemoConfig):
        # Checked by `DemoConfig`, which names the setting in its error. A
        # switch comes as `--name` / `--no-name` (`type=bool` would read
        # any text as True).
        kind = (
            {"action": argparse.BooleanOptionalAction}
            if field.type is bool
            else {"type": field.type}
        )
        settings.add_argument(
            "--" + field.name.replace("_", "-"),
            default=None,
            help=f"{field.metadata['help']} (default: {field.default})",
            **kind,
        )
    parser.set_defaults(run=run)


def run(args):
    """Runs the demo with the settings `args` give."""
    given = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(DemoConfig)
        if getattr(args, field.name) is not None
    }
    config = (DemoConfig.quick() if args.quick else DemoConfig()).replace(**given)
    check_outputs(args.output, DEMO_FILES, args.overwrite, option="--output")
    demo.run(
        args.output,
        config=config,
        overwrite=args.overwrite,
        verbose=0 if args.quiet else None,
        log=_silent if args.quiet else functools.partial(print, flush=True),
    )


def _silent(*_):
    pass
