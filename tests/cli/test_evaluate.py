"""`ptame evaluate`: one table of explainers, loaded as `explain` loads them."""

import csv
import os

import numpy as np
import pytest

from tests.helpers import random_images


@pytest.fixture
def data_file(tmp_path):
    """Four images with their object masks, as an .npz file."""
    masks = np.zeros((4, 16, 16), bool)
    masks[:, 4:12, 4:12] = True
    path = tmp_path / "data.npz"
    np.savez(path, images=random_images(4, seed=7), masks=masks)
    return path


def test_evaluate_writes_one_table(workspace, tmp_path, ptame, data_file):
    root, _ = workspace
    output = tmp_path / "results"
    result = ptame(
        "evaluate", "--classifier", root / "classifier.keras", "--data", data_file,
        "--method", f"P-TAME={root / 'explainer.keras'}", "--method", "rise:20",
        "--method", "gradcam:stage2", "--method", "random", "--method", "centre",
        "--limit", 3, "--batch-size", 2, "--output", output, "--intervals", 0.9,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "| P-TAME |" in result.out
    assert "the 90% confidence interval" in result.out
    with open(output / "evaluation.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["method"] for row in rows] == [
        "P-TAME", "RISE", "Grad-CAM", "random", "centre",
    ]  # fmt: skip
    for row in rows:
        assert 0 <= float(row["pointing_game"]) <= 100
        assert float(row["seconds"]) > 0
        low, high = float(row["MoRF_low"]), float(row["MoRF_high"])
        assert low <= float(row["MoRF"]) <= high
    assert "3 images of 16x16" in (output / "evaluation.md").read_text()
    # And per explained class, with each method's shares of flat and misranked maps.
    with open(output / "evaluation_per_class.csv") as file:
        per_class = list(csv.DictReader(file))
    assert {row["method"].split(" / ")[0] for row in per_class} == {
        "P-TAME", "RISE", "Grad-CAM", "random", "centre",
    }  # fmt: skip
    counts = [float(row["count"]) for row in per_class if row["method"].startswith("P")]
    assert sum(counts) == 3
    assert all(0 <= float(row["flat"]) <= 100 for row in per_class)
    assert all(0 <= float(row["misranked"]) <= 100 for row in per_class)
    assert all(0 <= float(row["misranked"]) <= 100 for row in rows)
    assert "`misranked`: maps that do not carry their class" in result.out
    assert "| P-TAME / class " in result.out


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing_classifier", "No such .keras file"),
        ("missing_data", "No such file"),
        ("data_not_npz", "Cannot read"),
        ("data_without_images", "'images'"),
        ("unknown_method", "Unknown method"),
        ("gradcam_without_layer", "gradcam:LAYER"),
        ("missing_explainer", "No such explainer file"),
        # The same loader as `ptame explain`: a .keras file must hold a PTAME.
        ("not_an_explainer", "not a keras_ptame.PTAME"),
        ("corrupted_explainer", "Cannot load the explainer"),
        ("intervals_in_percent", "confidence level in (0, 1)"),
    ],
)
def test_evaluate_user_errors(workspace, tmp_path, ptame, data_file, case, match):
    root, _ = workspace
    classifier, data = root / "classifier.keras", data_file
    method = "random"
    if case == "missing_classifier":
        classifier = tmp_path / "missing.keras"
    elif case == "missing_data":
        data = tmp_path / "missing.npz"
    elif case == "data_not_npz":
        data = tmp_path / "data.txt"
        data.write_text("not an archive")
    elif case == "data_without_images":
        data = tmp_path / "other.npz"
        np.savez(data, pictures=random_images(2))
    elif case == "unknown_method":
        method = "lime"
    elif case == "gradcam_without_layer":
        method = "gradcam"
    elif case == "missing_explainer":
        method = f"P-TAME={tmp_path / 'missing.keras'}"
    elif case == "not_an_explainer":
        method = f"P-TAME={root / 'classifier.keras'}"
    elif case == "corrupted_explainer":
        (tmp_path / "corrupted.keras").write_bytes(b"PK\x03\x04 not a zip")
        method = f"P-TAME={tmp_path / 'corrupted.keras'}"
    options = ["--intervals", 95] if case == "intervals_in_percent" else []
    output = tmp_path / "results"
    result = ptame(
        "evaluate", "--classifier", classifier, "--data", data, "--method", method,
        "--output", output, "--quiet", *options,
    )  # fmt: skip
    result.assert_user_error(match)
    assert not output.exists()


# Issue 22, "no command deletes or overwrites a file it did not write"
def test_evaluate_refuses_a_user_s_table_without_overwrite(
    workspace, tmp_path, ptame, data_file
):
    root, _ = workspace
    output = tmp_path / "results"
    output.mkdir()
    (output / "evaluation.md").write_text("user's own")
    argv = ["evaluate", "--classifier", root / "classifier.keras"]
    argv += ["--data", data_file, "--method", "centre", "--output", output]
    result = ptame(*argv, "--quiet")
    result.assert_user_error(f"{output / 'evaluation.md'}")
    assert "--overwrite" in result.err.strip().splitlines()[-1]
    assert (output / "evaluation.md").read_text() == "user's own"
    assert [p.name for p in output.iterdir()] == ["evaluation.md"]
    # Never over an input, --overwrite or not: here --data, by a hard link.
    (output / "evaluation.md").unlink()
    os.link(data_file, output / "evaluation.csv")
    result = ptame(*argv, "--quiet", "--overwrite")
    result.assert_user_error("--output would write over an input")
    (output / "evaluation.csv").unlink()
    (output / "evaluation.csv").write_text("user's own")
    assert ptame(*argv, "--quiet", "--overwrite").code == 0
    assert "centre" in (output / "evaluation.csv").read_text()
