"""Work in shards that survive a kill: the bookkeeping of `ptame explain-dataset`.

A collection is split into shards of consecutive images, fixed once by a
manifest (`manifest.json`: the files, their output names, the shard size and
the settings that change the results). A shard is finished when its table
(`shards/<index>.csv`) exists: the table is written under a temporary name
and renamed into place after the shard's maps, so a killed run leaves every
shard either finished or not started as far as a rerun can tell. A rerun with
the same manifest skips the finished shards and redoes the others (their maps
are rewritten under the same names: nothing is duplicated); the summary table
is the finished shards' tables in order, written once all are finished.

Pure Python (numpy and Pillow for the PNG maps): no Keras, no engine, so the
bookkeeping is the same whichever engine runs the shards.
"""

import csv
import io
import json
import os

import numpy as np

from keras_ptame.utils.files import atomic_path, read_json_object, write_text

MANIFEST = "manifest.json"
SHARDS_FOLDER = "shards"
MAPS_FOLDER = "maps"
# Bumped when the layout of an output folder changes.
MANIFEST_VERSION = 1


def plan_shards(count, shard_size):
    """Consecutive `(start, stop)` ranges covering `count` items, `shard_size` each.

    Args:
        count: int. The number of items (images), at least 1.
        shard_size: int. Items per shard (the last may hold fewer).

    Returns:
        A list of `(start, stop)` pairs, in order.

    Examples:
    ```python
    from keras_ptame.utils.shards import plan_shards

    plan_shards(5, 2)   # [(0, 2), (2, 4), (4, 5)]
    ```
    """
    if shard_size < 1:
        raise ValueError(f"`shard_size` must be positive. Received: {shard_size}")
    return [
        (start, min(start + shard_size, count)) for start in range(0, count, shard_size)
    ]


def shard_table_path(output, index):
    """The table of shard `index` in `output`, which marks it finished."""
    return os.path.join(output, SHARDS_FOLDER, f"{index:05d}.csv")


def map_path(output, stem):
    """Where the map named `stem` (an output name without suffix) goes."""
    return os.path.join(output, MAPS_FOLDER, stem + ".png")


def open_manifest(output, manifest):
    """Writes `manifest` (a dict) into `output`, or checks the one there.

    Args:
        output: str. The output folder (created if need be).
        manifest: dict of JSON values: `files`, `names`, `shard_size` and the
            settings that change the results.

    Returns:
        bool: whether `output` already held this manifest (a resumed run).

    Raises:
        ValueError: `output` holds another run's manifest (other images,
            shard size or settings), or files of a run without one.
    """
    # As JSON reads it back (tuples become lists).
    manifest = json.loads(json.dumps({"version": MANIFEST_VERSION, **manifest}))
    path = os.path.join(output, MANIFEST)
    if os.path.lexists(path):
        found = read_json_object(path)
        if found == manifest:
            return True
        if _any_finished(output):
            changed = sorted(
                key
                for key in set(found) | set(manifest)
                if found.get(key) != manifest.get(key)
            )
            raise ValueError(
                f"{output!r} holds another run (its {MANIFEST} differs in "
                f"{', '.join(changed)}): choose another output folder, or delete "
                "this one to start again."
            )
        # A run that finished no shard here: its manifest is replaced.
        write_text(path, json.dumps(manifest, indent=1))
        return False
    leftovers = [
        name
        for name in (SHARDS_FOLDER, MAPS_FOLDER)
        if os.path.lexists(os.path.join(output, name))
    ]
    if leftovers:
        raise ValueError(
            f"{output!r} holds {', '.join(leftovers)} but no {MANIFEST}: not a "
            "run this command can resume. Choose another output folder."
        )
    os.makedirs(os.path.join(output, SHARDS_FOLDER), exist_ok=True)
    write_text(path, json.dumps(manifest, indent=1))
    return False


def _any_finished(output):
    folder = os.path.join(output, SHARDS_FOLDER)
    return os.path.isdir(folder) and any(
        name.endswith(".csv") for name in os.listdir(folder)
    )


def finished_shards(output, count):
    """The indices (a set) of the `count` shards whose table is in `output`."""
    return {
        index
        for index in range(count)
        if os.path.isfile(shard_table_path(output, index))
    }


def commit_shard(output, index, columns, rows):
    """Marks shard `index` finished: writes its table atomically.

    Call it once every map of the shard is in place.

    Args:
        output: str. The output folder.
        index: int. The shard.
        columns: sequence of str, the table's columns.
        rows: list of dicts with those keys, one per map.
    """
    write_text(shard_table_path(output, index), table_text(columns, rows))


def table_text(columns, rows):
    """CSV text of `rows` (dicts) under a header of `columns`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def merge_shard_tables(output, count, target):
    """Writes the `count` shards' tables, in order, as one CSV `target`.

    Returns:
        int: the number of rows written.

    Raises:
        FileNotFoundError: a shard is not finished.
    """
    header, lines = None, []
    for index in range(count):
        with open(shard_table_path(output, index), newline="") as file:
            reader = csv.reader(file)
            found = next(reader)
            if header is not None and found != header:
                raise ValueError(f"Shard {index}'s table has other columns: {found}")
            header = found
            lines.extend(reader)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(lines)
    with atomic_path(target) as temporary:
        with open(temporary, "w", newline="") as file:
            file.write(buffer.getvalue())
    return len(lines)


def write_map_png(path, saliency):
    """Writes a uint8 map `(H, W)` as a lossless grayscale PNG at `path`."""
    from PIL import Image

    saliency = np.asarray(saliency)
    if saliency.dtype != np.uint8 or saliency.ndim != 2:
        raise ValueError(
            "A PNG map must be uint8 `(H, W)`. Received: "
            f"dtype={saliency.dtype}, shape={saliency.shape}"
        )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(saliency).save(path, format="PNG")


def read_map_png(path):
    """The uint8 map `(H, W)` that `write_map_png` wrote at `path`."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L"))
