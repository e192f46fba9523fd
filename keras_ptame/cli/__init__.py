"""The `ptame` command: train, tune, explain, evaluate, export, demo from a shell.

```
ptame train --classifier classifier.keras --auxiliary resnet_18_imagenet \\
    --data images/ --epochs 1 --output explainer.keras
ptame tune --classifier classifier.keras --auxiliary resnet_18_imagenet \\
    --data images/ --validation-data held_out/ --directory tuning
ptame explain --model explainer.keras photo.jpg more_photos/ --output maps/
ptame explain-dataset --model explainer.keras photos/ --output collection/ --workers 2
ptame evaluate --classifier classifier.keras --data data.npz \\
    --method P-TAME=explainer.keras --method rise --output results
ptame export --model explainer.keras --output models/ptame/1
ptame demo --quick
```

One module per subcommand (`train`, `tune`, `explain`, `explain_dataset`,
`evaluate`, `export`, `demo`), each with `add_parser(subcommands)` and
`run(args)` (`explain_dataset`'s engine side in `shard_explainer` and
`ray_pipeline`);
`arguments` builds each option that several take (one builder, one meaning),
`training` holds what `train` and `tune` share, `loading` loads explainers
(through `kp.load_explainer`) and networks for all of them, and `errors`
holds the one error policy: exit code 0 success, 2 a usage or input error
(one line on stderr, no traceback), 130 interrupted (one line saying what
was written), 1 an internal error (with its traceback). The Keras backend is chosen by the
`KERAS_BACKEND` environment variable; the native libraries' log lines are
hidden unless `--native-logs` is given.
"""

import argparse
import sys

from keras_ptame.cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    run_guarded,
)
from keras_ptame.cli.startup import (
    add_native_logs,
    native_logs_filtered,
    quiet_native_logs,
)

# Importing the command changes nothing (no environment, no log filter):
# `main` quiets the native logs, and the `ptame` launcher
# (`keras_ptame_launcher.py`) does so before Keras first loads.
try:
    from keras_ptame.cli import (
        demo,
        evaluate,
        explain,
        explain_dataset,
        export,
        train,
        tune,
    )
except KeyboardInterrupt:
    # Ctrl-C while the libraries load: the same exit as any interrupt.
    print("ptame: interrupted while starting; nothing was written.", file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED) from None

COMMANDS = (train, tune, explain, explain_dataset, evaluate, export, demo)

__all__ = ["UsageError", "build_parser", "main"]


def main(argv=None):
    """Runs the `ptame` command; returns its exit code.

    Args:
        argv: optional list of str, the arguments without the program name.
            Defaults to `None` (`sys.argv[1:]`).

    Returns:
        int: 0 on success, 2 on a usage or input error, 130 when
        interrupted, 1 on an internal error.

    Examples:
    ```python
    from keras_ptame import cli

    cli.main(["demo", "--quick", "--output", "demo_output"])   # 0
    ```
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet = quiet_native_logs(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    with native_logs_filtered(quiet):
        return run_guarded(command, lambda: _parse_and_run(argv))


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
    add_native_logs(parser)
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subcommands)
    for subparser in subcommands.choices.values():
        add_native_logs(subparser)
    return parser


def _parse_and_run(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return args.run(args)
