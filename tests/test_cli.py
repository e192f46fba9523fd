"""The `ptame` command: each subcommand, its exit codes and its messages."""

import csv
import os
import shutil
import subprocess
import sys
import types

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame import cli
from tests.helpers import (
    IMAGE_SIZE,
    random_images,
    tiny_classifier,
    tiny_explainer,
    tiny_feature_model,
)

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Saved classifier, auxiliary network and explainer, and a folder of images."""
    root = tmp_path_factory.mktemp("cli")
    tiny_classifier().save(root / "classifier.keras")
    tiny_feature_model().save(root / "auxiliary.keras")
    explainer = tiny_explainer()
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-3, amsgrad=True))
    explainer.fit(random_images(8, seed=5), epochs=1, batch_size=4, verbose=0)
    explainer.save(root / "explainer.keras")
    images = random_images(5, seed=6)
    (root / "images" / "nested").mkdir(parents=True)
    for index, image in enumerate(images[:4]):
        Image.fromarray(image).save(root / "images" / f"rgb_{index}.png")
    Image.fromarray(images[4]).save(root / "images" / "nested" / "deep.png")
    # Not an image extension: ignored when a folder is scanned.
    (root / "images" / "notes.txt").write_text("not an image")
    return root, images


def run(argv, capsys):
    code = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code, err, match):
    assert code == 2, err
    assert "Traceback" not in err
    # The message is one line, the last one written.
    assert match in err.strip().splitlines()[-1], err


def snapshot(folder):
    return {
        os.path.relpath(os.path.join(base, name), folder): open(
            os.path.join(base, name), "rb"
        ).read()
        for base, _, names in os.walk(folder)
        for name in names
    }


# === Help and arguments ===


def test_help_lists_every_command(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in ("train", "explain", "evaluate", "export", "demo"):
        assert command in out
    assert "Exit codes" in out


@pytest.mark.parametrize(
    "command, options",
    [
        ("train", ["--classifier", "--auxiliary", "--data", "--recipe", "--epochs"]),
        ("explain", ["--model", "--output", "--classes", "--alpha", "--overwrite"]),
        ("export", ["--model", "--output", "--overwrite", "--image-size"]),
    ],
)
def test_subcommand_help_explains_options(capsys, command, options):
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    for option in options:
        assert option in out


def test_no_command_is_a_usage_error(capsys):
    code, _, err = run([], capsys)
    assert code == 2
    assert "usage" in err


def test_bad_argument_is_a_usage_error(capsys):
    code, _, err = run(
        ["explain", "--model", "x.keras", "a.png", "--batch-size", "0"], capsys
    )
    assert code == 2
    assert "positive integer" in err
    assert "Traceback" not in err


# === train ===


def test_train_writes_an_explainer_and_refuses_to_overwrite(workspace, capsys):
    root, _ = workspace
    output = root / "trained.keras"
    argv = [
        "train",
        "--classifier",
        root / "classifier.keras",
        "--auxiliary",
        root / "auxiliary.keras",
        "--data",
        root / "images",
        "--recipe",
        "resnet_50_imagenet",
        "--epochs",
        2,
        "--batch-size",
        2,
        "--backup-dir",
        root / "backup",
        "--output",
        output,
        "--verbose",
        0,
    ]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    explainer = keras.saving.load_model(output)
    assert isinstance(explainer, kp.PTAME)
    assert explainer.explain(random_images(2)).shape == (2, IMAGE_SIZE, IMAGE_SIZE)
    # The recipe's loss coefficients were used.
    assert explainer.perturbation_loss.area_coeff == pytest.approx(0.838571)
    # BackupAndRestore removes its backup once training completes.
    assert not (root / "backup").exists() or not os.listdir(root / "backup")
    assert [p for p in os.listdir(root) if p.startswith("tmp")] == []

    before = output.read_bytes()
    code, _, err = run(argv, capsys)
    assert_user_error(code, err, "exists")
    assert output.read_bytes() == before


@pytest.mark.parametrize(
    "change, match",
    [
        ({"--recipe": "no_such_recipe"}, "Unknown recipe"),
        ({"--data": "missing_folder/"}, "No such image folder"),
        ({"--classifier": "missing.keras"}, "No such .keras file"),
        ({"--classifier": "not_a_real_preset_name"}, "Cannot load the classifier"),
        ({"--output": "explainer.h5"}, "must end in .keras"),
        ({"--data": "corrupt"}, "Cannot read"),
    ],
)
def test_train_user_errors(workspace, tmp_path, capsys, change, match):
    root, _ = workspace
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    options = {
        "--classifier": str(root / "classifier.keras"),
        "--auxiliary": str(root / "auxiliary.keras"),
        "--data": str(root / "images"),
        "--output": str(tmp_path / "out.keras"),
    }
    options.update(change)
    if options["--data"] == "corrupt":
        options["--data"] = str(corrupt)
    argv = ["train", "--epochs", "1", "--verbose", "0"]
    for key, value in options.items():
        argv += [key, value]
    code, _, err = run(argv, capsys)
    assert_user_error(code, err, match)
    assert not (tmp_path / "out.keras").exists()


@pytest.mark.slow
def test_train_on_a_tfds_dataset(workspace, tmp_path, capsys):
    tfds = pytest.importorskip("tensorflow_datasets")
    root, _ = workspace
    output = tmp_path / "tfds.keras"
    # Offline: tfds generates random examples with cifar10's features.
    with tfds.testing.mock_data(
        num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE
    ):
        code, _, err = run(
            [
                "train",
                "--classifier",
                root / "classifier.keras",
                "--auxiliary",
                root / "auxiliary.keras",
                "--data",
                "cifar10",
                "--max-images",
                8,
                "--batch-size",
                4,
                "--output",
                output,
                "--verbose",
                2,
            ],
            capsys,
        )
    assert code == 0, err
    assert "2 batch(es)" in err
    assert isinstance(keras.saving.load_model(output), kp.PTAME)


# === explain ===


def test_explain_writes_overlays_maps_and_summary(workspace, tmp_path, capsys):
    root, images = workspace
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.fromarray(images[0][..., 0]).resize((30, 24)).save(extra / "gray.png")
    Image.fromarray(images[1]).convert("RGBA").save(extra / "rgba.png")
    Image.fromarray(images[2]).save(extra / "photo.jpg", quality=95)
    output = tmp_path / "out"
    code, _, err = run(
        [
            "explain",
            "--model",
            root / "explainer.keras",
            root / "images",
            extra,
            "--output",
            output,
        ],
        capsys,
    )
    assert code == 0, err
    assert "converted from mode L to RGB" in err
    assert "resized from 24x30 to 16x16" in err
    assert "converted from mode RGBA to RGB" in err

    names = ["rgb_0", "rgb_1", "rgb_2", "rgb_3", os.path.join("nested", "deep")]
    names += ["gray", "photo", "rgba"]
    for name in names:
        saliency = np.load(output / f"{name}.npy")
        assert saliency.shape == (IMAGE_SIZE, IMAGE_SIZE)
        assert saliency.dtype == np.float32
        assert np.isfinite(saliency).all()
        assert saliency.min() >= 0 and saliency.max() <= 1
        picture = np.asarray(Image.open(output / f"{name}.png"))
        assert picture.dtype == np.uint8 and picture.shape[-1] == 3
    # The overlay is drawn at the image's own size.
    assert np.asarray(Image.open(output / "gray.png")).shape == (24, 30, 3)

    explainer = keras.saving.load_model(root / "explainer.keras")
    expected = explainer.explain_outputs(images)
    for index, name in enumerate(names[:5]):
        np.testing.assert_allclose(
            np.load(output / f"{name}.npy"), expected["maps"][index], atol=1e-5
        )
    with open(output / "summary.csv") as file:
        rows = {row["output"]: row for row in csv.DictReader(file)}
    assert sorted(rows) == sorted(names)
    for index, name in enumerate(names[:5]):
        assert int(rows[name]["class"]) == expected["classes"][index]
        assert float(rows[name]["score"]) == pytest.approx(
            expected["scores"][index], abs=1e-5
        )


def test_explain_given_classes(workspace, tmp_path, capsys):
    root, _ = workspace
    output = tmp_path / "out"
    code, _, err = run(
        [
            "explain",
            "--model",
            root / "explainer.keras",
            root / "images",
            "--classes",
            3,
            "--output",
            output,
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    with open(output / "summary.csv") as file:
        assert {row["class"] for row in csv.DictReader(file)} == {"3"}


def test_explain_refuses_to_overwrite(workspace, tmp_path, capsys):
    root, _ = workspace
    output = tmp_path / "out"
    argv = [
        "explain",
        "--model",
        root / "explainer.keras",
        root / "images",
        "--output",
        output,
        "--quiet",
    ]
    assert run(argv, capsys)[0] == 0
    (output / "rgb_0.png").write_bytes(b"user's own file")
    before = snapshot(output)
    code, _, err = run(argv, capsys)
    assert_user_error(code, err, "exist")
    assert snapshot(output) == before
    assert run(argv + ["--overwrite"], capsys)[0] == 0
    assert Image.open(output / "rgb_0.png").size == (IMAGE_SIZE, IMAGE_SIZE)


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing_model", "No such explainer file"),
        ("corrupted_model", "Cannot load"),
        ("truncated_model", "Cannot load"),
        ("not_an_explainer", "not a keras_ptame.PTAME"),
        ("fake_png", "Cannot read"),
        ("text_file", "Cannot read"),
        ("missing_image", "No such image file or folder"),
        ("empty_folder", "No image files"),
        ("class_out_of_range", "--classes must lie in"),
        ("classes_count", "one per image"),
        ("alpha", "--alpha"),
    ],
)
def test_explain_bad_inputs(workspace, tmp_path, capsys, case, match):
    root, _ = workspace
    model = root / "explainer.keras"
    inputs = [root / "images"]
    extra = []
    if case == "missing_model":
        model = tmp_path / "missing.keras"
    elif case == "corrupted_model":
        model = tmp_path / "corrupted.keras"
        model.write_bytes(os.urandom(2000))
    elif case == "truncated_model":
        model = tmp_path / "truncated.keras"
        data = (root / "explainer.keras").read_bytes()
        model.write_bytes(data[: len(data) // 2])
    elif case == "not_an_explainer":
        model = root / "classifier.keras"
    elif case == "fake_png":
        (tmp_path / "fake.png").write_text("this is text")
        inputs.append(tmp_path / "fake.png")
    elif case == "text_file":
        inputs = [root / "images" / "notes.txt"]
    elif case == "missing_image":
        inputs = [tmp_path / "missing.png"]
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        inputs = [tmp_path / "empty"]
    elif case == "class_out_of_range":
        extra = ["--classes", "9"]
    elif case == "classes_count":
        extra = ["--classes", "1", "2"]
    elif case == "alpha":
        extra = ["--alpha", "2"]
    model_bytes = model.read_bytes() if model.exists() else None
    output = tmp_path / "out"
    code, _, err = run(
        ["explain", "--model", model, *inputs, "--output", output, *extra], capsys
    )
    assert_user_error(code, err, match)
    assert not output.exists()
    if model_bytes is not None:
        assert model.read_bytes() == model_bytes


# === export ===


def test_export_command(workspace, tmp_path, capsys):
    tf = pytest.importorskip("tensorflow")
    root, images = workspace
    target = tmp_path / "models" / "ptame" / "1"
    argv = ["export", "--model", root / "explainer.keras", "--output", target]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "serving_default" in out
    served = tf.saved_model.load(str(target))
    explainer = keras.saving.load_model(root / "explainer.keras")
    got = served.signatures["serving_default"](images=tf.constant(images, tf.float32))
    np.testing.assert_allclose(
        got["maps"].numpy(), explainer.explain(images), atol=1e-4
    )

    before = snapshot(target)
    code, _, err = run(argv, capsys)
    assert_user_error(code, err, "export path exists")
    assert snapshot(target) == before


# === delegated commands and exit codes ===


def test_delegated_commands_get_their_arguments(monkeypatch, capsys):
    received = {}

    def fake_main(argv):
        received["argv"] = argv
        return 0

    module = types.ModuleType("keras_ptame.evaluation")
    module.main = fake_main
    monkeypatch.setitem(sys.modules, "keras_ptame.evaluation", module)
    code, _, _ = run(["evaluate", "--model", "m.keras", "--help"], capsys)
    assert code == 0
    assert received["argv"] == ["--model", "m.keras", "--help"]

    module.main = lambda argv: 2
    assert run(["evaluate"], capsys)[0] == 2


def test_delegated_command_without_its_module(monkeypatch, capsys):
    monkeypatch.setitem(
        cli.DELEGATED, "evaluate", ("keras_ptame._no_such_module", "summary")
    )
    code, _, err = run(["evaluate", "--help"], capsys)
    assert code == 1
    assert "no keras_ptame._no_such_module module" in err


def test_demo_help(capsys):
    pytest.importorskip("keras_ptame.demo")
    assert run(["demo", "--help"], capsys)[0] == 0


def test_internal_error_exits_1_with_traceback(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "run_export", broken)
    code, _, err = run(["export", "--model", "m.keras", "--output", "x"], capsys)
    assert code == 1
    assert "Traceback" in err and "internal error" in err


def test_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_export", interrupted)
    code, _, err = run(["export", "--model", "m.keras", "--output", "x"], capsys)
    assert code == 130
    assert "interrupted" in err


def test_console_script(tmp_path):
    script = shutil.which("ptame")
    if script is None:
        pytest.skip("the `ptame` script is not installed (pip install -e .)")
    result = subprocess.run(
        [script, "explain", "--model", str(tmp_path / "missing.keras"), "x.png"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "No such explainer file" in result.stderr
    assert "Traceback" not in result.stderr
