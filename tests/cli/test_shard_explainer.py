"""`ptame explain-dataset` without an engine: shards run in this process.

Ray's `explain_on_ray` is replaced by a loop over `ShardExplainer`, the
callable each Ray actor runs, so the command's sharding, resume bookkeeping
and tables are checked on every backend where Ray is not installed. The same
command on Ray itself, killed for real, is in `test_explain_dataset.py`.
"""

import csv
import importlib.util
import os

import numpy as np
import pytest

from keras_ptame.cli import ray_pipeline
from keras_ptame.cli.shard_explainer import CollectionSettings, ShardExplainer
from keras_ptame.utils.shards import read_map_png, shard_table_path


class Crash(RuntimeError):
    """The engine failing midway (a lost worker, a full disk)."""


@pytest.fixture
def engine(monkeypatch):
    """`explain_on_ray` as a loop in this process; records the shards asked,
    and with `fail_after=n` fails after `n` shards."""
    asked, limits = [], {}

    def explain_here(settings, shards, workers=1, address=None, progress=None):
        asked.append([index for index, _, _ in shards])
        worker = ShardExplainer(settings)
        for count, (index, start, stop) in enumerate(shards):
            if count == limits.get("fail_after"):
                raise Crash("the engine failed")
            worker({"shard": [index], "start": [start], "stop": [stop]})
        return sum(stop - start for _, start, stop in shards)

    monkeypatch.setattr(ray_pipeline, "explain_on_ray", explain_here)
    return asked, limits


def _explain_both(ptame, root, tmp_path, *options):
    """`explain-dataset` and `explain --dtype uint8` on the same images."""
    model, images = root / "explainer.keras", root / "images"
    ours, theirs = tmp_path / "dataset", tmp_path / "explain"
    result = ptame(
        "explain-dataset", "--model", model, images, "--output", ours,
        "--shard-size", 2, "--batch-size", 2, "--quiet", *options,
    )  # fmt: skip
    assert result.code == 0, result.err
    result = ptame(
        "explain", "--model", model, images, "--output", theirs,
        "--dtype", "uint8", "--batch-size", 2, "--quiet", *options,
    )  # fmt: skip
    assert result.code == 0, result.err
    return ours, theirs


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("options", [(), ("--top-k", "2")], ids=["predicted", "top2"])
def test_the_collection_equals_explain(workspace, tmp_path, ptame, engine, options):
    root, _ = workspace
    ours, theirs = _explain_both(ptame, root, tmp_path, *options)
    # Shards of whole batches: the same batches as `explain`, the same bytes.
    with open(ours / "summary.csv", "rb") as a, open(theirs / "summary.csv", "rb") as b:
        assert a.read() == b.read()
    rows = _rows(ours / "summary.csv")
    assert len(rows) == 5 * (2 if options else 1)
    for row in rows:
        expected = np.load(theirs / f"{row['output']}.npy")
        np.testing.assert_array_equal(
            read_map_png(ours / "maps" / f"{row['output']}.png"), expected
        )
    assert engine[0] == [[0, 1, 2]]
    assert sorted(os.listdir(ours)) == [
        "manifest.json",
        "maps",
        "shards",
        "summary.csv",
    ]


def test_a_rerun_explains_only_the_shards_left(workspace, tmp_path, ptame, engine):
    root, _ = workspace
    asked, limits = engine
    output = tmp_path / "out"
    command = (
        "explain-dataset", "--model", root / "explainer.keras", root / "images",
        "--output", output, "--shard-size", 2, "--quiet",
    )  # fmt: skip
    limits["fail_after"] = 2
    assert ptame(*command).code == 1
    assert not (output / "summary.csv").exists()
    kept = {i: os.stat(shard_table_path(str(output), i)) for i in (0, 1)}
    assert not os.path.exists(shard_table_path(str(output), 2))

    limits.clear()
    result = ptame(*command[:-1])
    assert result.code == 0, result.err
    assert "Resuming: 2 of 3 shards finished, 1 of 5 images left." in result.err
    assert asked == [[0, 1, 2], [2]]
    for index, before in kept.items():
        after = os.stat(shard_table_path(str(output), index))
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    files = [row["file"] for row in _rows(output / "summary.csv")]
    assert sorted(files) == sorted(set(files)) and len(files) == 5

    # Once finished, a rerun explains nothing and writes the same summary.
    summary = (output / "summary.csv").read_bytes()
    assert ptame(*command).code == 0
    assert asked[-1] == [2] and (output / "summary.csv").read_bytes() == summary


def test_another_run_into_a_finished_folder_is_refused(
    workspace, tmp_path, ptame, engine
):
    root, _ = workspace
    output = tmp_path / "out"
    base = ("explain-dataset", "--model", root / "explainer.keras", root / "images")
    assert ptame(*base, "--output", output, "--quiet").code == 0
    before = (output / "manifest.json").read_bytes()
    result = ptame(*base, "--output", output, "--top-k", 2, "--quiet")
    result.assert_user_error(
        "manifest.json differs in top_k): choose another output folder"
    )
    assert (output / "manifest.json").read_bytes() == before


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is not None, reason="Ray is installed here"
)
def test_without_ray_the_command_says_what_to_install(workspace, tmp_path, ptame):
    root, _ = workspace
    result = ptame(
        "explain-dataset", "--model", root / "explainer.keras", root / "images",
        "--output", tmp_path / "out",
    )  # fmt: skip
    result.assert_user_error("pip install 'ray[data]>=2.60'")


def test_an_unreadable_image_leaves_its_shard_unfinished(workspace, tmp_path):
    root, images = workspace
    folder = tmp_path / "images"
    folder.mkdir()
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(images[0]).save(folder / "good.png")
    (folder / "bad.png").write_text("not an image")
    files = (str(folder / "good.png"), str(folder / "bad.png"))
    settings = CollectionSettings(
        model=str(root / "explainer.keras"),
        output=str(tmp_path / "out"),
        files=files,
        names=("good", "bad"),
    )
    found = ShardExplainer(settings)({"shard": [0, 1], "start": [0, 1], "stop": [1, 2]})
    assert list(found["images"]) == [1, 0]
    assert found["error"][0] == ""
    assert "Cannot read" in found["error"][1] and "bad.png" in found["error"][1]
    assert os.path.exists(shard_table_path(settings.output, 0))
    assert not os.path.exists(shard_table_path(settings.output, 1))
    assert os.listdir(tmp_path / "out" / "maps") == ["good.png"]
