"""`ptame explain-dataset` on Ray Data: a few hundred images, a real SIGKILL
midway, the rerun, and the result against `explain_outputs`.

These need Ray (`make batch` runs them in .venv-batch, which has it); the
bookkeeping without Ray is tested on every backend in
`test_shard_explainer.py`.
"""

import csv
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_ptame.datasets.synthetic import make_shapes
from keras_ptame.utils.images import find_images, read_image
from keras_ptame.utils.shards import read_map_png, shard_table_path

pytest.importorskip(
    "ray.data",
    reason="Ray Data is not installed here; `make batch` runs these tests in "
    ".venv-batch, which has it",
)
Image = pytest.importorskip("PIL.Image")

COUNT, SHARD = 300, 10


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """A folder of `COUNT` synthetic 16x16 shape images, and the images."""
    folder = tmp_path_factory.mktemp("collection") / "images"
    images = make_shapes(COUNT, image_size=16, num_classes=4, size_range=(0.5, 0.75))[0]
    for index, image in enumerate(images):
        # Two folders: output names keep them apart.
        sub = folder / ("a" if index % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(sub / f"shape_{index:04d}.png")
    return folder


def _command(model, images, output, workers=2):
    return [
        sys.executable, "-m", "keras_ptame.cli", "explain-dataset", "--model",
        str(model), str(images), "--output", str(output), "--workers", str(workers),
        "--shard-size", str(SHARD), "--batch-size", str(SHARD),
    ]  # fmt: skip


def _finished(output):
    return sum(
        os.path.exists(shard_table_path(str(output), i)) for i in range(COUNT // SHARD)
    )


def _kill_after_first_shards(command, output, log):
    """Starts `command`, SIGKILLs it and every process it started once a
    shard is committed; returns the number of shards finished then."""
    with open(log, "w") as stream:
        child = subprocess.Popen(command, stdout=stream, stderr=stream)
    deadline = time.monotonic() + 600
    while _finished(output) == 0 and child.poll() is None:
        assert time.monotonic() < deadline, "no shard finished in 10 minutes"
        time.sleep(0.01)
    # As a machine going down: the command and every process it started
    # (Ray's raylet and its actors put themselves in process groups of their
    # own), all at once.
    for pid in [child.pid, *_descendants(child.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    child.wait()
    return _finished(output)


def _descendants(pid):
    """The ids of the processes below `pid` (children, their children...)."""
    parents = {}
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as file:
                # The parent follows the command's name, in parentheses.
                parents[int(name)] = int(file.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


# Slow: two runs of the command, each starting Ray and two actors that each
# load Keras and the explainer (about a minute on 2 cores).
@pytest.mark.slow
def test_killed_midway_the_rerun_explains_every_image_once(
    workspace, collection, tmp_path
):
    root, _ = workspace
    output = tmp_path / "out"
    command = _command(root / "explainer.keras", collection, output)
    finished = _kill_after_first_shards(command, output, tmp_path / "killed.log")
    assert 0 < finished < COUNT // SHARD, (tmp_path / "killed.log").read_text()
    assert not (output / "summary.csv").exists()
    kept = {
        i: os.stat(shard_table_path(str(output), i)).st_mtime_ns
        for i in range(COUNT // SHARD)
        if os.path.exists(shard_table_path(str(output), i))
    }

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"Resuming: {len(kept)} of {COUNT // SHARD} shards finished" in rerun.stderr
    # The shards finished before the kill were not explained again.
    for index, stamp in kept.items():
        assert os.stat(shard_table_path(str(output), index)).st_mtime_ns == stamp

    with open(output / "summary.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    files = find_images([str(collection)])
    assert [row["file"] for row in rows] == files
    maps = sorted(
        os.path.relpath(os.path.join(folder, name), output / "maps")
        for folder, _, names in os.walk(output / "maps")
        for name in names
    )
    assert maps == sorted(f"{row['output']}.png" for row in rows)
    # Nothing left of the killed run's staging folders.
    assert sorted(os.listdir(output)) == [
        "manifest.json",
        "maps",
        "shards",
        "summary.csv",
    ]
    _assert_equals_explain(root / "explainer.keras", files, rows, output)


def _assert_equals_explain(model, files, rows, output):
    """The maps and table values are those of `explain_outputs` on the same
    batches (a shard is one batch)."""
    explainer = keras.saving.load_model(model)
    images = np.stack([read_image(path, (16, 16))[1] for path in files])
    expected = explainer.explain_outputs(images, batch_size=SHARD, dtype="uint8")
    for index, row in enumerate(rows):
        np.testing.assert_array_equal(
            read_map_png(output / "maps" / f"{row['output']}.png"),
            expected["maps"][index],
        )
        assert int(row["class"]) == expected["classes"][index]
        assert float(row["score"]) == float(expected["scores"][index])
        assert float(row["evidence"]) == float(expected["evidence"][index])
        assert row["flat"] == str(bool(expected["flat"][index]))
        assert row["misranked"] == str(bool(expected["misranked"][index]))
