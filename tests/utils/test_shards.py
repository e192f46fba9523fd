"""Shard bookkeeping of `ptame explain-dataset`: plans, manifests, commits, tables."""

import csv
import json
import os

import numpy as np
import pytest

from keras_ptame.utils import shards

pytest.importorskip("PIL.Image")

COLUMNS = ("file", "output", "score")


def test_plan_covers_every_item_once_in_order():
    assert shards.plan_shards(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert shards.plan_shards(4, 4) == [(0, 4)]
    covered = [
        i for start, stop in shards.plan_shards(301, 20) for i in range(start, stop)
    ]
    assert covered == list(range(301))
    with pytest.raises(ValueError, match="`shard_size` must be positive"):
        shards.plan_shards(3, 0)


def test_manifest_is_written_then_resumed_and_another_run_refused(tmp_path):
    output = str(tmp_path / "out")
    manifest = {"files": ("a.png", "b.png"), "shard_size": 1, "top_k": None}
    assert shards.open_manifest(output, manifest) is False
    with open(os.path.join(output, shards.MANIFEST)) as file:
        assert json.load(file)["files"] == ["a.png", "b.png"]
    # The same run: resumed (tuples and lists alike, as JSON stores them).
    assert shards.open_manifest(output, {**manifest, "files": ["a.png", "b.png"]})
    # Another run before any shard is finished: nothing to lose, replaced.
    other = {**manifest, "top_k": 2}
    assert shards.open_manifest(output, other) is False
    shards.commit_shard(output, 0, COLUMNS, [{"file": "a", "output": "a", "score": 1}])
    with pytest.raises(ValueError, match="differs in files, top_k"):
        shards.open_manifest(output, {**manifest, "files": ["c.png"]})
    with open(os.path.join(output, shards.MANIFEST)) as file:
        assert json.load(file)["top_k"] == 2


def test_a_folder_of_maps_without_a_manifest_is_refused(tmp_path):
    (tmp_path / shards.MAPS_FOLDER).mkdir()
    with pytest.raises(ValueError, match="holds maps but no manifest.json"):
        shards.open_manifest(str(tmp_path), {"files": []})


def test_finished_shards_are_those_with_a_table_merged_in_order(tmp_path):
    output = str(tmp_path)
    shards.open_manifest(output, {"files": []})
    rows = {
        index: [
            {"file": f"{index}-{i}.png", "output": f"{index}-{i}", "score": 0.1 * i}
        ]
        for index in range(3)
        for i in range(1)
    }
    # Committed out of order, as workers finish them.
    for index in (2, 0):
        shards.commit_shard(output, index, COLUMNS, rows[index])
    assert shards.finished_shards(output, 3) == {0, 2}
    # Nothing of the atomic writes is left beside the tables.
    assert sorted(os.listdir(tmp_path / shards.SHARDS_FOLDER)) == [
        "00000.csv",
        "00002.csv",
    ]
    target = str(tmp_path / "summary.csv")
    with pytest.raises(FileNotFoundError):
        shards.merge_shard_tables(output, 3, target)
    assert not os.path.exists(target)
    shards.commit_shard(output, 1, COLUMNS, rows[1])
    assert shards.merge_shard_tables(output, 3, target) == 3
    with open(target, newline="") as file:
        found = list(csv.DictReader(file))
    assert [row["output"] for row in found] == ["0-0", "1-0", "2-0"]
    # The bytes `csv.DictWriter` gives, as `ptame explain` writes its summary.
    with open(target, newline="") as file:
        assert file.read() == shards.table_text(
            COLUMNS, [row for index in range(3) for row in rows[index]]
        )


def test_a_map_round_trips_through_its_png_exactly(tmp_path):
    saliency = np.random.default_rng(0).integers(0, 256, (7, 5)).astype("uint8")
    path = str(tmp_path / "maps" / "nested" / "x.png")
    shards.write_map_png(path, saliency)
    found = shards.read_map_png(path)
    assert found.dtype == np.uint8
    np.testing.assert_array_equal(found, saliency)
    with pytest.raises(ValueError, match="must be uint8"):
        shards.write_map_png(path, saliency.astype("float32"))
