"""Writing files and folders so that no reader ever sees half of one.

Everything the package writes (saved explainers, SavedModels, maps, tables,
pictures) is first written under a temporary name beside its target and
renamed into place once complete: a rename within one folder is atomic, so an
interrupted or failed write leaves the target as it was. The rules of what a
write may replace live here too: never a link out of its folder
(`check_no_links`), never one of the command's inputs (`check_not_inputs`),
and with `overwrite` only what the package wrote itself (`check_replaceable`).
"""

import contextlib
import json
import os
import shutil
import signal
import socket
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
    prefix = f".{os.path.basename(path)}.tmp-"
    with staging_folder(os.path.dirname(path), prefix) as staging:
        temporary = os.path.join(staging, "new" + os.path.splitext(path)[1])
        yield temporary
        if not os.path.lexists(temporary):
            raise FileNotFoundError(f"Nothing was written for {path!r}.")
        if directory:
            replace_directory(temporary, path)
        else:
            os.replace(temporary, path)


@contextlib.contextmanager
def staging_folder(folder, prefix):
    """Yields a new hidden folder in `folder`, removed when the block ends.

    Its name holds this process' id and host (`<prefix><pid>-<host>-<random>`)
    so that a later run can tell a folder left by a killed run (SIGKILL, a
    power cut: nothing removes it then) from one of a run still going: the
    ones of `prefix` whose process is gone from this host are removed first.

    Args:
        folder: str or path-like. Where to create it (created if need be).
        prefix: str. The start of its name, such as `".ptame-explain-"`.
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    remove_stale_staging(folder, prefix)
    name = f"{prefix}{os.getpid()}-{_host()}-"
    staging = tempfile.mkdtemp(prefix=name, dir=folder)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(folder, prefix):
    """Removes the staging folders of `prefix` in `folder` whose run is dead.

    Only those named by `staging_folder` on this host whose process no longer
    exists; a folder of a live run, of another host or of another naming is
    left alone.
    """
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if not name.startswith(prefix) or os.path.islink(path):
            continue
        pid, _, rest = name[len(prefix) :].partition("-")
        host = rest.rpartition("-")[0]
        if pid.isdigit() and host == _host() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _host():
    # Host names may hold "-" but not "/"; the random suffix holds no "-".
    return socket.gethostname().replace(os.sep, "_") or "localhost"


def _alive(pid):
    if os.name == "nt":
        return True  # `os.kill` would end the process there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True


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


def check_no_links(path, folder, option):
    """Raises a `ValueError` if writing `path` would follow a link below `folder`.

    Every folder between `folder` and `path`, and `path` itself, must be a
    real one, not a symbolic link: a linked folder would take the write out of
    `folder`, and a linked file would be cut from what it points to. `folder`
    itself may be a link.

    Args:
        path: str or path-like. The file to write, inside `folder`.
        folder: str or path-like. The folder the write belongs to.
        option: str. What `folder` is (`"--output"`), for the message.
    """
    folder = os.path.abspath(os.fspath(folder))
    current = folder
    for part in os.path.relpath(os.path.abspath(os.fspath(path)), folder).split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise ValueError(
                f"{option}: {current!r} is a symbolic link; nothing is written "
                f"through links inside {option}. Remove the link or choose "
                f"another {option}."
            )


def check_not_inputs(targets, inputs, option):
    """Raises a `ValueError` if a file of `targets` is one of `inputs`.

    The same file by any name counts: a path, a symbolic link to it, a hard
    link. A target that does not exist yet is none of them.

    Args:
        targets: paths the command writes (or replaces).
        inputs: paths the command reads; `None` entries and missing paths are
            skipped.
        option: str. The option naming the targets, for the message.
    """
    read = {}
    for path in inputs:
        if path is not None and os.path.exists(path):
            info = os.stat(path)
            read.setdefault((info.st_dev, info.st_ino), os.fspath(path))
    for path in targets:
        if os.path.exists(path):
            info = os.stat(path)
            source = read.get((info.st_dev, info.st_ino))
            if source is not None:
                raise ValueError(
                    f"{option} would write over an input of this command: "
                    f"{os.fspath(path)!r} is {source!r}. Choose another {option}."
                )


def check_replaceable(path, overwrite, is_own, what):
    """Raises a `FileExistsError` unless writing `path` replaces nothing foreign.

    A missing `path` may be written; an existing one only with `overwrite`,
    and only if `is_own(path)` says the package wrote it and nothing else is
    in it.

    Args:
        path: str or path-like. The file or folder to write.
        overwrite: bool. Whether the caller asked to replace `path`.
        is_own: callable taking `path`, returning whether it is the
            package's own (see `is_own_folder`).
        what: str. What the package writes there (`"an explainer preset"`),
            for the message.
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        return
    if not overwrite:
        raise FileExistsError(
            f"{path!r} exists. Choose another path or pass `overwrite=True`."
        )
    if not is_own(path):
        raise FileExistsError(
            f"{path!r} exists and is not {what} written by keras_ptame, or holds "
            "other files beside it: overwriting replaces only that. Choose "
            "another path, or remove it yourself."
        )


def is_own_folder(path, entries, is_marked):
    """Whether `path` is a real folder holding nothing but `entries`, marked ours.

    Args:
        path: str or path-like.
        entries: the names the package writes in it.
        is_marked: callable taking `path`, returning whether the package's
            marker (a manifest, a metadata field) is there.
    """
    return (
        os.path.isdir(path)
        and not os.path.islink(path)
        and set(os.listdir(path)) <= set(entries)
        and is_marked(path)
    )


def check_outputs(folder, names, overwrite, inputs=(), option="output_dir"):
    """Raises unless writing the files `names` into `folder` replaces nothing foreign.

    The rules of a command writing fixed names into a folder the user chose:
    `folder` must be a folder (or not exist yet); no file is written through
    a symbolic link inside it (`check_no_links`), over one of `inputs`
    (`check_not_inputs`) or in a folder's place; and an existing file is
    replaced only with `overwrite`.

    Args:
        folder: str or path-like. The output folder.
        names: the file names (relative paths) written into `folder`.
        overwrite: bool. Whether existing files may be replaced.
        inputs: paths the command reads. Defaults to `()`.
        option: str. What `folder` is, for the messages: `"--output"` for a
            `ptame` command (which then says `--overwrite`), else the
            argument's name. Defaults to `"output_dir"`.
    """
    folder = os.fspath(folder)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"{option} must be a folder. Received: a file {folder!r}")
    targets = [os.path.join(folder, name) for name in names]
    # `folder` itself may be a link; nothing inside it is written through one.
    for path in targets:
        check_no_links(path, folder, option)
    check_not_inputs(targets, inputs, option)
    folders = [path for path in targets if os.path.isdir(path)]
    if folders:
        raise FileExistsError(
            f"An output would replace a folder: {folders[0]!r}; nothing was "
            f"written. Choose another {option}."
        )
    existing = [path for path in targets if os.path.lexists(path)]
    if existing and not overwrite:
        flag = "--overwrite" if option.startswith("--") else "`overwrite=True`"
        raise FileExistsError(
            f"{len(existing)} output file(s) exist, e.g. {existing[0]!r}; nothing "
            f"was written. Choose another {option} or pass {flag}."
        )
