"""The one error policy of the `ptame` command, shared by every subcommand.

Exit codes: 0 success, 2 a usage or input error (bad argument, missing or
unreadable file, existing output, missing optional package), 130
interrupted, 1 an internal error (printed with its traceback). A user error
is reported in one line on stderr, without a traceback; so is a warning.

An interrupted command (Ctrl-C) exits 130 without a traceback, whatever was
running when the interrupt came (an error it caused on the way out, e.g. a
killed worker process, counts as the interrupt), and says what it had
written: each command writes its outputs under temporary names and moves
them into place at the end, and reports each move with `wrote`.
"""

import contextlib
import signal
import sys
import traceback
import warnings

from keras_ptame.utils.install import module_install_hint

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# The errors a user can cause and fix: reported in one line, exit code 2.
USER_ERRORS = (ValueError, OSError)


class UsageError(ValueError):
    """A user error: reported in one line, exit code 2."""


class _Run:
    """What the running command has written, for the interrupt's summary."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.interrupted = False
        self.tracked = False
        self.written = []
        self.notes = []


_run = _Run()


def track_outputs():
    """Declares that the running command reports its outputs with `wrote`."""
    _run.tracked = True


def wrote(path):
    """Records that `path` was moved into place (complete)."""
    _run.tracked = True
    _run.written.append(str(path))


def note(text):
    """A sentence added to the summary of an interrupted run."""
    _run.notes.append(text)


def run_guarded(command, function):
    """Runs `function()` under the error policy; returns the exit code.

    Args:
        command: optional str, the subcommand's name, for the messages.
        function: callable without arguments returning an exit code (or
            `None` for success).

    Returns:
        int: `function`'s code, or the code of the error it raised.
    """
    _run.reset()
    prefix = f"ptame {command}" if command else "ptame"
    with _one_line_warnings(prefix), _watching_interrupts():
        try:
            code = int(function() or EXIT_OK)
        except SystemExit as exit:
            code = _exit_code(exit)
        except KeyboardInterrupt:
            _run.interrupted = True
            code = EXIT_INTERRUPTED
        except BaseException as error:
            code = None if _run.interrupted else _error_code(prefix, error)
    if _run.interrupted:
        say(True, interrupted_summary(prefix))
        return EXIT_INTERRUPTED
    return code


def interrupted_summary(prefix):
    """The line an interrupted command ends with: what it had written."""
    text = f"{prefix}: interrupted"
    if _run.written:
        shown = ", ".join(_run.written[:3])
        more = len(_run.written) - 3
        text += f"; written before the interrupt: {shown}"
        text += f" and {more} more" if more > 0 else ""
    elif _run.tracked:
        text += "; nothing was written"
    return " ".join([text + ".", *_run.notes])


def _error_code(prefix, error):
    if isinstance(error, ModuleNotFoundError) and not (error.name or "").startswith(
        "keras_ptame"
    ):
        say(
            True,
            f"{prefix}: error: this needs the package {error.name!r}, which is not "
            f"installed: {module_install_hint(error.name)}.",
        )
        return EXIT_USAGE
    if isinstance(error, USER_ERRORS) and not isinstance(error, ModuleNotFoundError):
        say(True, f"{prefix}: error: {one_line(error)}")
        return EXIT_USAGE
    if not isinstance(error, Exception):
        raise error
    return _internal(prefix)


@contextlib.contextmanager
def _watching_interrupts():
    # Python's own handler, which also records the interrupt: an error
    # raised while unwinding from it is then reported as the interrupt.
    def interrupt(signum, frame):
        _run.interrupted = True
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _one_line_warnings(prefix):
    def show(message, category, filename, lineno, file=None, line=None):
        say(True, f"{prefix}: warning: {one_line(message)}")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


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
