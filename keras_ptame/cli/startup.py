"""What the `ptame` command settles before it imports Keras: native logs,
and TensorFlow's CPU kernels.

The native libraries under Keras (TensorFlow's C++ runtime, XLA, gRPC) print
lines a user cannot act on (CPU features, missing CUDA drivers). `ptame`
quiets them unless `--native-logs` is given: log settings in the environment
for the libraries that honour them (settings already there are kept), and a
filter on the process's stderr for the lines TensorFlow prints before its
logging reads any setting.

TensorFlow reads whether to use oneDNN's CPU kernels once, as it loads: the
`ptame` launcher turns them on (`onednn_kernels`) before Keras is imported.
"""

import contextlib
import os
import platform
import re
import sys
import threading

NATIVE_LOGS_OPTION = "--native-logs"

# Errors only. Set with `setdefault`: a user's own settings win.
QUIET_NATIVE_LOGS = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "2",
}


def quiet_native_logs(argv):
    """Sets the quiet log settings unless `argv` holds `--native-logs`.

    Args:
        argv: list of str, the command's arguments.

    Returns:
        bool: whether the logs were quieted.
    """
    if NATIVE_LOGS_OPTION in argv:
        return False
    for name, value in QUIET_NATIVE_LOGS.items():
        os.environ.setdefault(name, value)
    return True


def onednn_kernels():
    """Turns on TensorFlow's oneDNN CPU kernels on x86-64, unless set.

    TensorFlow turns them on by itself on Linux only for CPUs with
    AVX512-VNNI, AVX-VNNI or AMX (`DefaultOneDnnPolicy` in its
    `core/util/port.cc`). On a 2-core AVX2 CPU its own kernels took 3.4
    forward passes of a ResNet-50 for the gradient to its input that P-TAME's
    training step takes, oneDNN's 2.1, and a training step ran 1.4x as fast
    (issue 27; README, "Speed"). `TF_ENABLE_ONEDNN_OPTS=0` in the environment
    keeps TensorFlow's own.

    Returns:
        bool: whether the setting was made here.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        return False
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return True


def add_native_logs(parser):
    """`--native-logs`: show the native libraries' log lines."""
    parser.add_argument(
        NATIVE_LOGS_OPTION,
        action="store_true",
        default=False,
        help="show the log lines of TensorFlow's, XLA's and other native "
        "libraries (hidden by default; the environment's own TF_CPP_MIN_LOG_LEVEL "
        "is kept)",
    )


# absl/glog lines ("I0000 00:00:1795.. 4443 port.cc:153] ...", info, warning
# or error; fatal ones are kept), absl's notice before them, and the second
# line of TensorFlow's CPU-features note.
_NATIVE_LINE = re.compile(
    rb"[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog"
    rb"|To enable the following instructions:"
)
# Whether stderr goes through a filter already (nested calls add none).
_filtering = False
_NATIVE_START = re.compile(rb"[IWE]\d{0,4}( |$)|WARNING: All|To enable")


@contextlib.contextmanager
def native_logs_filtered(enabled=True):
    """Drops native libraries' log lines from stderr (file descriptor 2).

    Everything else written to stderr, by Python or by a native library,
    passes unchanged. Nothing is filtered when `enabled` is false or stderr
    has no file descriptor.

    Args:
        enabled: bool. Whether to filter. Defaults to `True`.
    """
    global _filtering
    try:
        # Already filtered (the `ptame` launcher filters from its start).
        saved = os.dup(2) if enabled and not _filtering else None
    except OSError:
        saved = None
    if saved is None:
        yield
        return
    _filtering = True
    read, write = os.pipe()
    _flush_stderr()
    os.dup2(write, 2)
    os.close(write)
    pump = threading.Thread(target=_pump, args=(read, saved), daemon=True)
    pump.start()
    try:
        yield
    finally:
        _flush_stderr()
        # The pipe's last write end closes: the pump forwards the rest, ends.
        os.dup2(saved, 2)
        # (A library holding a copy of the descriptor would keep it open.)
        pump.join(timeout=2)
        os.close(saved)
        _filtering = False


def _pump(read, target):
    pending, passing = b"", False
    with os.fdopen(read, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if passing or not _NATIVE_LINE.match(line):
                    os.write(target, line + b"\n")
                passing = False
            # A partial line that cannot be a log line goes out now.
            if pending and (passing or not _NATIVE_START.match(pending)):
                os.write(target, pending)
                pending, passing = b"", True
    if pending:
        os.write(target, pending)


def _flush_stderr():
    with contextlib.suppress(Exception):
        sys.stderr.flush()
