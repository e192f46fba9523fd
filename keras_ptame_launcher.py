"""The `ptame` command's entry point, outside the package on purpose.

Importing `keras_ptame` imports Keras, and under `KERAS_BACKEND=tensorflow`
TensorFlow prints its native log lines while it loads, before any code of
the command could quiet them; a Ctrl-C then ends in a traceback. This module
imports nothing of the package until the log filter of
`keras_ptame.cli.startup` (stdlib only, loaded here from its file) is in
place, and turns a Ctrl-C during the import into the command's exit 130.
"""

import importlib.util
import os
import sys

EXIT_INTERRUPTED = 130


def main():
    """Runs `ptame` with the native logs quiet from the first import, and
    TensorFlow's oneDNN CPU kernels on (see `startup.onednn_kernels`)."""
    argv = sys.argv[1:]
    startup = _load_startup()
    startup.onednn_kernels()
    quiet = startup.quiet_native_logs(argv)
    with startup.native_logs_filtered(quiet):
        try:
            from keras_ptame import cli
        except KeyboardInterrupt:
            print(
                "ptame: interrupted while starting; nothing was written.",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        return cli.main(argv)


def _load_startup():
    """`keras_ptame.cli.startup`, executed without the package's `__init__`.

    Registered under its own name, so that the package uses this one copy.
    """
    name = "keras_ptame.cli.startup"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("keras_ptame")
    path = os.path.join(package.submodule_search_locations[0], "cli", "startup.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(main())
