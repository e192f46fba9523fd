"""`ptame demo`: the demo's settings and errors through the one error policy."""

import json

import pytest


def test_demo_help_lists_its_settings(ptame):
    result = ptame("demo", "--help")
    assert result.code == 0
    for option in ("--output", "--seed", "--train-count", "--test-count"):
        assert option in result.out
    for part in ("classifier", "auxiliary", "explainer"):
        assert f"--{part}-epochs" in result.out
    # The defaults shown are DemoConfig's; a switch reads --name / --no-name.
    assert "(default: 5000)" in result.out
    assert "--no-none-class" in result.out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--train-count", "0"], "`train_count` must be an integer >= 1"),
        (["--quick", "--test-count", "-3"], "`test_count`"),
    ],
)
def test_demo_rejects_bad_settings_before_writing(tmp_path, ptame, argv, match):
    output = tmp_path / "out"
    ptame("demo", "--output", output, *argv).assert_user_error(match)
    assert not output.exists()


def test_demo_output_that_is_a_file(tmp_path, ptame):
    output = tmp_path / "taken"
    output.write_text("a file")
    ptame("demo", "--quick", "--quiet", "--output", output).assert_user_error("taken")
    assert output.read_text() == "a file"


@pytest.mark.slow
def test_quick_demo(tmp_path, ptame):
    result = ptame("demo", "--quick", "--quiet", "--seed", 1, "--output", tmp_path)
    assert result.code == 0, result.err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["seed"] == 1
    assert metrics["settings"]["train_count"] == 64
    assert 0 <= metrics["pointing_game"] <= 1
    assert (tmp_path / "ptame.keras").exists()


# Issue 22, "no command deletes or overwrites a file it did not write"
def test_demo_refuses_a_user_s_metrics_file_without_overwrite(tmp_path, ptame):
    output = tmp_path / "out"
    output.mkdir()
    (output / "metrics.json").write_text("user's own")
    result = ptame("demo", "--quick", "--quiet", "--output", output)
    result.assert_user_error(f"{output / 'metrics.json'}")
    assert "--overwrite" in result.err.strip().splitlines()[-1]
    assert (output / "metrics.json").read_text() == "user's own"
    assert [p.name for p in output.iterdir()] == ["metrics.json"]
    assert "--overwrite" in ptame("demo", "--help").out
