"""Writing files and folders so that no reader ever sees half of one.

Everything the package writes (saved explainers, SavedModels, maps, tables,
pictures) is first written under a temporary name beside its target and
renamed into place once complete: a rename within one folder is atomic, so an
interrupted or failed write leaves the target as it was.
"""

import contextlib
import os
import shutil
import tempfile


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
    from keras_ptame.files import atomic_path

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
