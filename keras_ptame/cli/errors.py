"""The one error policy of the `ptame` command, shared by every subcommand.

Exit codes: 0 success, 2 a usage or input error (bad argument, missing or
unreadable file, existing output, missing optional package), 130
interrupted, 1 an internal error (printed with its traceback). A user error
is reported in one line on stderr, without a traceback.
"""

import sys
import traceback

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# The errors a user can cause and fix: reported in one line, exit code 2.
USER_ERRORS = (ValueError, OSError)


class UsageError(ValueError):
    """A user error: reported in one line, exit code 2."""


def run_guarded(command, function):
    """Runs `function()` under the error policy; returns the exit code.

    Args:
        command: optional str, the subcommand's name, for the messages.
        function: callable without arguments returning an exit code (or
            `None` for success).

    Returns:
        int: `function`'s code, or the code of the error it raised.
    """
    prefix = f"ptame {command}" if command else "ptame"
    try:
        return int(function() or EXIT_OK)
    except SystemExit as exit:
        return _exit_code(exit)
    except KeyboardInterrupt:
        say(True, f"{prefix}: interrupted.")
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as error:
        if (error.name or "").startswith("keras_ptame"):
            return _internal(prefix)
        say(
            True,
            f"{prefix}: error: this needs the package {error.name!r}, which is not "
            "installed (`pip install keras-ptame[all]` installs every optional one).",
        )
        return EXIT_USAGE
    except USER_ERRORS as error:
        say(True, f"{prefix}: error: {one_line(error)}")
        return EXIT_USAGE
    except Exception:
        return _internal(prefix)


def one_line(error):
    """The message of `error` on one line, at most 500 characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= 500 else text[:497] + "..."


def say(enabled, message):
    """Prints a progress or status line to stderr when `enabled`."""
    if enabled:
        print(message, file=sys.stderr, flush=True)


def _exit_code(exit):
    # argparse exits 0 on --help and 2 on a bad argument.
    code = exit.code
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    say(True, str(code))
    return EXIT_USAGE


def _internal(prefix):
    traceback.print_exc()
    say(True, f"{prefix}: internal error (the traceback above); please report it.")
    return EXIT_INTERNAL
