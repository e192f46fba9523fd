"""`ptame train`: an explainer trained on a folder or a tfds dataset, saved."""

import json
import os

import keras
import numpy as np
import pytest

import keras_ptame as kp
from tests.helpers import IMAGE_SIZE, random_images


def train_argv(root, output, **options):
    argv = [
        "train",
        "--classifier",
        root / "classifier.keras",
        "--auxiliary",
        root / "auxiliary.keras",
        "--data",
        root / "images",
        "--output",
        output,
        "--verbose",
        0,
    ]
    for key, value in options.items():
        argv += ["--" + key.replace("_", "-"), value]
    return argv


def test_train_writes_an_explainer_and_refuses_to_overwrite(workspace, ptame):
    root, _ = workspace
    output = root / "trained.keras"
    argv = train_argv(
        root,
        output,
        recipe="resnet_50_imagenet",
        epochs=2,
        batch_size=2,
        fill="mean",
        backup_dir=root / "backup",
    )
    result = ptame(*argv)
    assert result.code == 0, result.err
    explainer = keras.saving.load_model(output)
    assert isinstance(explainer, kp.PTAME)
    assert explainer.fill == "mean"
    assert explainer.input_size == (IMAGE_SIZE, IMAGE_SIZE)
    assert explainer.explain(random_images(2)).shape == (2, IMAGE_SIZE, IMAGE_SIZE)
    # The recipe's loss coefficients were used.
    assert explainer.perturbation_loss.area_coeff == pytest.approx(0.838571)
    # BackupAndRestore removes its backup once training completes.
    assert not (root / "backup").exists() or not os.listdir(root / "backup")
    # Nothing is left of the atomic write.
    assert sorted(os.listdir(root)) == sorted(
        ["auxiliary.keras", "classifier.keras", "explainer.keras", "images"]
        + ["trained.keras"]
    )

    before = output.read_bytes()
    ptame(*argv).assert_user_error("exists")
    assert output.read_bytes() == before


# Issue 22, case 4
@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_train_never_writes_over_its_classifier(workspace, tmp_path, ptame, link):
    root, _ = workspace
    classifier = tmp_path / "c.keras"
    classifier.write_bytes((root / "classifier.keras").read_bytes())
    output = {"same": classifier, "symlink": tmp_path / "s.keras"}.get(
        link, tmp_path / "h.keras"
    )
    if link == "symlink":
        os.symlink(classifier, output)
    elif link == "hardlink":
        os.link(classifier, output)
    argv = [*train_argv(root, output, epochs=1, batch_size=2), "--overwrite"]
    argv[argv.index("--classifier") + 1] = classifier
    before = classifier.read_bytes()
    ptame(*argv).assert_user_error("--output would write over an input")
    assert classifier.read_bytes() == before


@pytest.mark.parametrize(
    "change, match",
    [
        ({"recipe": "no_such_recipe"}, "Unknown recipe"),
        ({"data": "missing_folder/"}, "No such image folder"),
        ({"classifier": "missing.keras"}, "No such .keras file"),
        ({"classifier": "not_a_real_preset_name"}, "Cannot load the classifier"),
        ({"output": "explainer.h5"}, "must end in .keras"),
        ({"data": "corrupt"}, "Cannot read"),
        ({"data": "empty"}, "No image files"),
        ({"image_size": 24}, "must be 16x16 pixels"),
        ({"max_images": 3, "batch_size": 4}, "No training batches"),
        ({"fill": "grey"}, "invalid choice"),
    ],
)
def test_train_user_errors(workspace, tmp_path, ptame, change, match):
    root, _ = workspace
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "empty").mkdir()
    if change.get("data") in ("corrupt", "empty"):
        change["data"] = tmp_path / change["data"]
    output = tmp_path / "out.keras"
    options = {"epochs": 1, **change}
    if "output" in options:
        output = options.pop("output")
    ptame(*train_argv(root, output, **options)).assert_user_error(match)
    assert not (tmp_path / "out.keras").exists()


@pytest.mark.slow
def test_train_on_a_tfds_dataset(workspace, tmp_path, ptame):
    tfds = pytest.importorskip("tensorflow_datasets")
    root, _ = workspace
    output = tmp_path / "tfds.keras"
    argv = train_argv(root, output, max_images=8, batch_size=4, verbose=2)
    argv[argv.index("--data") + 1] = "cifar10"
    # Offline: tfds generates random examples with cifar10's features.
    with tfds.testing.mock_data(
        num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE
    ):
        result = ptame(*argv)
    assert result.code == 0, result.err
    assert "2 batch(es)" in result.err
    assert isinstance(keras.saving.load_model(output), kp.PTAME)


# Issue 22, cases 8 and 12
@pytest.mark.parametrize("rate", ["nan", "inf", "0", "-0.001"])
def test_train_refuses_a_learning_rate_that_is_not_a_positive_finite_number(
    workspace, tmp_path, ptame, rate
):
    root, _ = workspace
    output = tmp_path / "out.keras"
    argv = train_argv(root, output, epochs=1, learning_rate=rate)
    ptame(*argv).assert_user_error("--learning-rate: expected a positive finite")
    assert not output.exists()


# Issue 22, cases 8, 11 and 12
@pytest.mark.parametrize(
    "change, match",
    [
        ({"ce_coeff": float("nan")}, "`ce_coeff` must be a finite number"),
        ({"epochs": "2"}, "`epochs` must be a positive integer"),
        ({"ce_coeff": None}, "lacks the fields ['ce_coeff']"),
        ("{not json", "is not valid JSON"),
    ],
)
def test_train_names_the_recipe_file_and_field_that_is_wrong(
    workspace, tmp_path, ptame, change, match
):
    root, _ = workspace
    fields = json.loads(kp.recipes.get("resnet_50_imagenet").to_json())
    recipe = tmp_path / "tuned.json"
    if isinstance(change, str):
        recipe.write_text(change)
    else:
        fields.update(change)
        recipe.write_text(
            json.dumps({k: v for k, v in fields.items() if v is not None})
        )
    output = tmp_path / "out.keras"
    result = ptame(*train_argv(root, output, batch_size=2, recipe=recipe))
    result.assert_user_error(match)
    assert "tuned.json" in result.err.strip().splitlines()[-1]
    assert not output.exists()


# Issue 22, case 8
def test_train_that_diverges_stops_with_an_error_and_writes_nothing(
    workspace, tmp_path, ptame
):
    root, _ = workspace
    output = tmp_path / "out.keras"
    argv = train_argv(root, output, epochs=2, batch_size=2, learning_rate=1e30)
    ptame(*argv).assert_user_error("Training diverged: the loss was nan")
    assert os.listdir(tmp_path) == []


# Issue 22, case 8
def test_train_refuses_a_classifier_file_with_nan_weights(workspace, tmp_path, ptame):
    root, _ = workspace
    classifier = keras.saving.load_model(root / "classifier.keras")
    kernel = classifier.get_layer("stage2").kernel
    kernel.assign(np.where(np.arange(kernel.shape[-1]) == 3, np.nan, kernel))
    classifier.save(tmp_path / "nan.keras")
    output = tmp_path / "out.keras"
    argv = train_argv(root, output, epochs=1, classifier=tmp_path / "nan.keras")
    ptame(*argv).assert_user_error("'stage2/kernel' of the classifier")
    assert not output.exists()


# Issue 24: --log-maps writes the maps of the data's first images after every
# epoch; the last table is what the saved explainer says of them.
def test_train_logs_maps_while_training(workspace, tmp_path, ptame):
    import csv

    root, _ = workspace
    output, logged = tmp_path / "out.keras", tmp_path / "maps"
    argv = train_argv(root, output, epochs=2, batch_size=2, log_maps=logged)
    result = ptame(*argv)
    assert result.code == 0, result.err
    maps = sorted(n for n in os.listdir(logged) if not n.startswith("events."))
    assert maps == [
        f"maps_epoch_{epoch:03d}.{ext}" for epoch in (1, 2) for ext in ("csv", "png")
    ]
    # The five images of the folder, read as evaluation reads them.
    (images,) = list(
        kp.data.image_folder(
            root / "images", batch_size=8, image_size=IMAGE_SIZE, resize=18
        )
    )
    outputs = keras.saving.load_model(output).explain_outputs(np.asarray(images))
    with open(logged / "maps_epoch_002.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 5
    np.testing.assert_array_equal([int(r["class"]) for r in rows], outputs["classes"])
    np.testing.assert_allclose(
        [float(r["score"]) for r in rows], outputs["scores"], rtol=1e-4, atol=1e-6
    )
    # Earlier maps are replaced only with --overwrite; the data folder is refused.
    ptame(
        *train_argv(root, tmp_path / "again.keras", log_maps=logged)
    ).assert_user_error("maps file")
    ptame(
        *train_argv(root, tmp_path / "again.keras", log_maps=root / "images" / "maps")
    ).assert_user_error("inside the --data folder")
    assert not (tmp_path / "again.keras").exists()


# Issue 24: `--classifier-outputs multilabel_logits` trains a multi-label
# explainer, saved with its classifier's output type.
def test_train_a_multilabel_explainer(workspace, ptame):
    root, _ = workspace
    output = root / "multilabel.keras"
    argv = train_argv(
        root,
        output,
        classifier_outputs="multilabel_logits",
        epochs=1,
        batch_size=2,
    )
    result = ptame(*argv)
    assert result.code == 0, result.err
    explainer = keras.saving.load_model(output)
    assert explainer.backbone.output_type == "multilabel_logits"
    out = explainer.explain_outputs(random_images(2), classes=np.array([0, 1]))
    logits = keras.ops.convert_to_numpy(explainer.backbone(random_images(2)))
    np.testing.assert_allclose(
        out["scores"], 1 / (1 + np.exp(-logits[[0, 1], [0, 1]])), rtol=1e-5
    )
