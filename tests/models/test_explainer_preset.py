import json
import os

import keras
import numpy as np
import pytest

import keras_ptame as kp
from tests.helpers import random_images, tiny_classifier, tiny_explainer
from tests.helpers.files import snapshot


def _trained_looking(explainer, size=16, seed=0):
    """Builds `explainer` and gives its decoder non-default weights."""
    explainer.build((None, size, size, 3))
    rng = np.random.default_rng(seed)
    for variable in explainer.decoder.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    for norm in explainer.decoder.norms:
        variance = keras.ops.convert_to_numpy(norm.moving_variance)
        norm.moving_variance.assign(np.abs(variance) + 0.5)
    return explainer


def test_a_preset_round_trip_gives_identical_maps(tmp_path):
    explainer = _trained_looking(tiny_explainer())
    images = random_images(4)
    expected = explainer.explain_outputs(images)
    explainer.save_to_preset(tmp_path / "preset")
    restored = kp.PTAME.from_preset(str(tmp_path / "preset"))
    actual = restored.explain_outputs(images)
    np.testing.assert_array_equal(actual["classes"], expected["classes"])
    np.testing.assert_allclose(actual["scores"], expected["scores"], atol=1e-6)
    np.testing.assert_allclose(actual["maps"], expected["maps"], atol=1e-6)


def test_a_preset_holds_config_weights_and_metadata(tmp_path):
    explainer = _trained_looking(tiny_explainer())
    explainer.save_to_preset(tmp_path / "preset")
    names = sorted(path.name for path in (tmp_path / "preset").iterdir())
    assert names == ["config.json", "metadata.json", "model.weights.h5"]
    config = json.loads((tmp_path / "preset" / "config.json").read_text())
    assert config["registered_name"] == "keras_ptame>PTAME"
    # The classifier and the auxiliary network travel inside the preset.
    assert "classifier" in json.dumps(config["config"]["backbone"])
    assert config["config"]["decoder_options"]["upsampling"] == "doubling"
    metadata = json.loads((tmp_path / "preset" / "metadata.json").read_text())
    assert metadata["class_name"] == "PTAME"
    assert metadata["keras_ptame_version"] == kp.__version__
    assert metadata["parameter_count"] == explainer.count_params()
    assert metadata["input_shape"] == [None, 16, 16, 3]


def test_the_decoder_s_numerics_survive_a_preset(tmp_path):
    explainer = tiny_explainer(
        decoder_options={"upsampling": "doubling", "batch_norm_epsilon": 1e-4}
    )
    _trained_looking(explainer)
    explainer.save_to_preset(tmp_path / "preset")
    restored = kp.PTAME.from_preset(str(tmp_path / "preset"))
    assert restored.decoder.upsampling == "doubling"
    assert [n.epsilon for n in restored.decoder.norms] == [1e-4, 1e-4]


def test_an_imported_checkpoint_round_trips_with_identical_maps(tmp_path):
    pytest.importorskip("torch")
    from tests.converters.test_ptame_checkpoint import authors_checkpoint

    explainer = kp.PTAME.from_official_checkpoint(authors_checkpoint(), image_size=64)
    images = random_images(2, size=64)
    classes = np.array([1, 7])
    expected = explainer.explain(images, classes=classes)
    explainer.save_to_preset(tmp_path / "authors")
    restored = kp.PTAME.from_preset(str(tmp_path / "authors"))
    assert restored.decoder.upsampling == "doubling"
    np.testing.assert_allclose(
        restored.explain(images, classes=classes), expected, atol=1e-6
    )


def test_an_extractor_that_taps_the_classifier_round_trips(tmp_path):
    classifier = tiny_classifier()
    explainer = kp.PTAME(
        kp.Backbone(classifier),
        kp.AuxiliaryExtractor(classifier, layer_names=["stage1", "stage2"]),
    )
    _trained_looking(explainer)
    images = random_images(3)
    expected = explainer.explain(images)
    explainer.save_to_preset(tmp_path / "preset")
    restored = kp.PTAME.from_preset(str(tmp_path / "preset"))
    assert restored.extractor.model is restored.backbone.classifier
    np.testing.assert_allclose(restored.explain(images), expected, atol=1e-6)


# Issue 22, case 2
def test_saving_again_replaces_the_preset_only_with_overwrite(tmp_path):
    first = _trained_looking(tiny_explainer(), seed=1)
    second = _trained_looking(tiny_explainer(), seed=2)
    first.save_to_preset(tmp_path / "preset")
    before = snapshot(tmp_path / "preset")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        second.save_to_preset(tmp_path / "preset")
    assert snapshot(tmp_path / "preset") == before
    second.save_to_preset(tmp_path / "preset", overwrite=True)
    images = random_images(2)
    restored = kp.PTAME.from_preset(str(tmp_path / "preset"))
    np.testing.assert_allclose(
        restored.explain(images), second.explain(images), atol=1e-6
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preset"]


# Issue 22, case 2
@pytest.mark.parametrize("case", ["user_folder", "preset_and_more", "file", "link"])
def test_overwrite_replaces_nothing_but_a_preset_it_wrote(tmp_path, case):
    explainer = _trained_looking(tiny_explainer())
    target = tmp_path / "target"
    elsewhere = tmp_path / "elsewhere"
    if case == "user_folder":
        (target / "photos").mkdir(parents=True)
        (target / "photos" / "cat.png").write_bytes(b"user's own")
        (target / "config.json").write_text("{}")
    elif case == "preset_and_more":
        explainer.save_to_preset(target)
        (target / "README.md").write_text("model card")
    elif case == "file":
        target.write_bytes(b"user's own")
    else:
        explainer.save_to_preset(elsewhere)
        os.symlink(elsewhere, target)
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="not an explainer preset written"):
        explainer.save_to_preset(target, overwrite=True)
    assert snapshot(tmp_path) == before
    assert os.path.islink(target) == (case == "link")


def test_a_handle_is_fetched_through_keras_hub(tmp_path, monkeypatch):
    preset_utils = pytest.importorskip("keras_hub.src.utils.preset_utils")
    explainer = _trained_looking(tiny_explainer())
    explainer.save_to_preset(tmp_path / "preset")
    fetched = []

    def get_file(preset, path):
        fetched.append((preset, path))
        return str(tmp_path / "preset" / path)

    monkeypatch.setattr(preset_utils, "get_file", get_file)
    restored = kp.PTAME.from_preset("hf://someone/explainer")
    assert fetched == [
        ("hf://someone/explainer", "config.json"),
        ("hf://someone/explainer", "model.weights.h5"),
    ]
    images = random_images(2)
    np.testing.assert_allclose(
        restored.explain(images), explainer.explain(images), atol=1e-6
    )


def test_an_unbuilt_explainer_is_not_saved(tmp_path):
    with pytest.raises(ValueError, match="built"):
        tiny_explainer().save_to_preset(tmp_path / "preset")
    assert not (tmp_path / "preset").exists()


def test_a_preset_of_something_else_is_refused(tmp_path):
    folder = tmp_path / "classifier"
    folder.mkdir()
    config = keras.saving.serialize_keras_object(tiny_classifier())
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a PTAME"):
        kp.PTAME.from_preset(str(folder))


def test_missing_presets_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="No explainer preset"):
        kp.PTAME.from_preset(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        kp.PTAME.from_preset(str(tmp_path / "empty"))


def test_code_in_a_preset_loads_only_outside_safe_mode(tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="stage1")(x)
    logits = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    classifier = keras.Model(inputs, logits)
    explainer = kp.PTAME(
        kp.Backbone(classifier), kp.AuxiliaryExtractor(classifier, ["stage1"])
    )
    _trained_looking(explainer)
    explainer.save_to_preset(tmp_path / "preset")
    with pytest.raises(ValueError, match="safe_mode"):
        kp.PTAME.from_preset(str(tmp_path / "preset"))
    images = random_images(2)
    restored = kp.PTAME.from_preset(str(tmp_path / "preset"), safe_mode=False)
    np.testing.assert_allclose(
        restored.explain(images), explainer.explain(images), atol=1e-6
    )


# Issue 22, case 8
def test_a_preset_with_nan_weights_is_refused_naming_the_weight(tmp_path):
    explainer = _trained_looking(tiny_explainer())
    kernel = explainer.decoder.weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    explainer.save_to_preset(tmp_path / "preset")
    with pytest.raises(ValueError, match=rf"{kernel.path}' of the preset .*NaN"):
        kp.PTAME.from_preset(str(tmp_path / "preset"))


def _edited_preset(tmp_path, edit):
    """A saved tiny preset whose config.json is replaced by `edit(config)`."""
    folder = tmp_path / "preset"
    _trained_looking(tiny_explainer()).save_to_preset(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(edit(config)))
    return folder


# Issue 22, case 11
@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda config: [config], "must hold a JSON object"),
        (lambda config: "PTAME", "must hold a JSON object"),
        (lambda config: {**config, "module": "tests_e_marker"}, "names the module"),
        (
            lambda config: {
                **config,
                "config": {
                    **config["config"],
                    "backbone": {
                        "module": "tests_e_marker",
                        "class_name": "run",
                        "config": {},
                        "registered_name": None,
                    },
                },
            },
            "config.json' does not describe an explainer",
        ),
    ],
)
def test_a_preset_config_of_another_shape_or_module_is_refused_unrun(
    tmp_path, monkeypatch, edit, match
):
    # A module on the path that leaves a trace if it is ever imported.
    (tmp_path / "tests_e_marker.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('IMPORTED').touch()\n"
        "def run(*args, **kwargs):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = _edited_preset(tmp_path, edit)
    with pytest.raises(ValueError, match=match) as error:
        kp.load_explainer(folder)
    assert "config.json" in str(error.value) or "module" in str(error.value)
    assert not (tmp_path / "IMPORTED").exists()


# Issue 22, case 12
@pytest.mark.parametrize("name", ["config.json", "metadata.json"])
def test_a_damaged_preset_file_is_named(tmp_path, name):
    folder = _edited_preset(tmp_path, lambda config: config)
    (folder / name).write_text('{"name": "cut sh')
    with pytest.raises(ValueError, match="is not JSON") as error:
        kp.load_explainer(folder)
    assert str(folder / name) in str(error.value)
