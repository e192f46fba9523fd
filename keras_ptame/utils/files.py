"""Writing files and folders so that no reader ever sees half of one.

Everything the package writes (saved explainers, SavedModels, maps, tables,
pictures) is first written under a temporary name beside its target and
renamed into place once complete: a rename within one folder is atomic, so an
interrupted or failed write leaves the target as it was.
"""

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading


@contextlib.contextmanager
def atomic_path(path, directory=False):
    """Yields a temporary path beside `path`, moved to `path` if the block succeeds.

    The temporary path, in a private folder beside `path`, has `path`'s
    extension (Keras checks `.keras`) and does not exist yet: the block
    creates it, so it gets the permissions `open` gives, not the owner-only
    mode of a temporary file. If the block raises, whatever was written is
    removed and `path` is left as it was.

    Args:
        path: str or path-like. The file or folder to write.
        directory: bool. Whether the block writes a folder rather than a
            file. Defaults to `False`.

    Examples:
    ```python
    from keras_ptame.utils.files import atomic_path

    with atomic_path("explainer.keras") as temporary:
        explainer.save(temporary)
    ```
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    prefix = f".{os.path.basename(path)}.tmp-"
    staging = tempfile.mkdtemp(prefix=prefix, dir=folder)
    try:
        temporary = os.path.join(staging, "new" + os.path.splitext(path)[1])
        yield temporary
        if not os.path.lexists(temporary):
            raise FileNotFoundError(f"Nothing was written for {path!r}.")
        if directory:
            replace_directory(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text(path, text):
    """Writes `text` (and a final newline) to `path` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as file:
            file.write(text if text.endswith("\n") else text + "\n")


def replace_directory(source, path):
    """Moves the folder `source` to `path`, replacing a folder already there.

    The old folder is kept aside until the new one is in place, so a failure
    in between puts it back.
    """
    if not os.path.lexists(path):
        os.rename(source, path)
        return
    aside_folder = tempfile.mkdtemp(
        prefix=f".{os.path.basename(path)}.old-", dir=os.path.dirname(path)
    )
    aside = os.path.join(aside_folder, "previous")
    os.rename(path, aside)
    try:
        os.rename(source, path)
    except BaseException:
        os.rename(aside, path)
        raise
    finally:
        shutil.rmtree(aside_folder, ignore_errors=True)


def read_json_object(path):
    """The JSON object (a dict) in file `path`; a `ValueError` naming it if not."""
    try:
        with open(path, encoding="utf-8") as file:
            found = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path!r} is not JSON, damaged or cut short ({error})"
        ) from None
    if not isinstance(found, dict):
        raise ValueError(
            f"{path!r} must hold a JSON object. Received: a JSON {type(found).__name__}"
        )
    return found


@contextlib.contextmanager
def deferred_interrupts():
    """Holds back Ctrl-C (SIGINT) until the block ends, then delivers it.

    For the short steps that move finished outputs into place: an interrupt
    in the middle would leave some moved and some not. Outside the main
    thread, where signals cannot be handled, the block runs as it is.

    Examples:
    ```python
    with deferred_interrupts():
        for staged, target in moves:
            os.replace(staged, target)
    ```
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and previous is not signal.SIG_IGN:
            if callable(previous):
                previous(*received[0])
            raise KeyboardInterrupt


def check_writable(folder, what="the output folder"):
    """Raises an `OSError` now if files cannot be created in `folder`.

    For checks before long work whose result would otherwise be lost at the
    end. A folder that does not exist yet counts as writable if its nearest
    existing parent is.

    Args:
        folder: str or path-like.
        what: str. What the folder is, for the message. Defaults to `"the
            output folder"`.
    """
    folder = os.path.abspath(os.fspath(folder))
    existing = folder
    while not os.path.isdir(existing):
        if os.path.lexists(existing):
            raise NotADirectoryError(
                f"Cannot write to {what} {folder!r}: {existing!r} is not a folder."
            )
        existing = os.path.dirname(existing)
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise PermissionError(
            f"Cannot write to {what} {folder!r} ({error.strerror or error}); "
            "nothing was done."
        ) from error
