import json

import keras
import numpy as np
import pytest

from keras_ptame import demo
from keras_ptame.datasets import make_shapes

TINY = {
    "image_size": 32,
    "train_count": 32,
    "test_count": 8,
    "classifier_epochs": 1,
    "auxiliary_epochs": 1,
    "explainer_epochs": 1,
    "batch_size": 16,
    "grid_count": 4,
}

KEYS = {
    "backend",
    "seed",
    "classifier_accuracy",
    "auxiliary_accuracy",
    "kept",
    "pointing_game",
    "mass_inside",
    "baselines",
    "timings_s",
    "settings",
    "loss",
    "files",
}


def _check_outputs(folder, metrics):
    for name in ("explanations.png", "examples.png", "metrics.json", "metrics.md"):
        assert (folder / name).stat().st_size > 0, name
    saved = json.loads((folder / "metrics.json").read_text())
    assert KEYS <= set(saved)
    assert saved["pointing_game"] == metrics["pointing_game"]
    for key in ("classifier_accuracy", "kept", "pointing_game", "mass_inside"):
        assert 0.0 <= saved[key] <= 1.0, key
    assert set(demo.PHASES) | {"total"} <= set(saved["timings_s"])
    assert saved["timings_s"]["total"] >= saved["timings_s"]["explainer"] > 0
    markdown = (folder / "metrics.md").read_text()
    assert "pointing game" in markdown and "total" in markdown


def test_tiny_run_writes_pictures_and_metrics(tmp_path):
    lines = []
    metrics = demo.run(tmp_path / "out", verbose=0, log=lines.append, **TINY)
    _check_outputs(tmp_path / "out", metrics)
    # Progress is reported phase by phase.
    assert sum(line.startswith("[") for line in lines) == 6
    assert metrics["settings"]["train_count"] == 32
    # The trained explainer is saved and explains the same after loading.
    explainer = keras.saving.load_model(tmp_path / "out" / "ptame.keras")
    images, _, _ = make_shapes(3, image_size=32, seed=5)
    maps = explainer.explain(images)
    assert maps.shape == (3, 32, 32)
    classifier = keras.saving.load_model(tmp_path / "out" / "classifier.keras")
    predicted = np.argmax(classifier.predict(images, verbose=0), axis=-1)
    np.testing.assert_array_equal(
        explainer.explain_outputs(images)["classes"], predicted
    )


def test_main_rejects_bad_settings_before_writing(tmp_path, capsys):
    output = tmp_path / "out"
    code = demo.main(["--output", str(output), "--train-count", "0", "--quiet"])
    assert code == 2
    assert "train_count" in capsys.readouterr().err
    assert not output.exists()


def test_unknown_setting_is_named(tmp_path):
    with pytest.raises(ValueError, match="Unknown demo setting"):
        demo.run(tmp_path, log=lambda *_: None, epochs=3)


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--help"])
    assert exit_info.value.code == 0
    assert "--output" in capsys.readouterr().out


@pytest.mark.slow
def test_full_demo_points_at_the_objects(tmp_path):
    code = demo.main(["--output", str(tmp_path), "--quiet"])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    _check_outputs(tmp_path, metrics)
    assert metrics["classifier_accuracy"] >= 0.95
    assert metrics["pointing_game"] >= 0.9
    assert metrics["mass_inside"] > 2 * metrics["baselines"]["mass_inside_uniform"]
