"""`ptame` on the P-TAME authors' checkpoints: the decoder-only `.ckpt` they
publish, and torchvision's weight files for its networks."""

import csv

import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.cli.loading import make_explainer
from tests.converters.test_ptame_checkpoint import (
    _images,
    authors_checkpoint,
    resnet_weights,
    write_published,
)

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The authors' files (checkpoint, classifier, ResNet-18) and 64x64 images."""
    folder = tmp_path_factory.mktemp("authors")
    paths = write_published(authors_checkpoint(), folder)
    images = _images(count=3, seed=11)
    (folder / "images").mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / "images" / f"image_{index}.png")
    return folder, paths, images


def test_explain_reads_the_published_files(published, tmp_path, ptame):
    folder, (checkpoint, classifier, auxiliary), images = published
    output = tmp_path / "maps"
    result = ptame(
        "explain", "--model", checkpoint, "--classifier-weights", classifier,
        "--auxiliary-weights", auxiliary, "--image-size", 64, folder / "images",
        "--output", output, "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.err
    explainer = kp.PTAME.from_official_checkpoint(
        checkpoint,
        classifier_weights=classifier,
        auxiliary_weights=auxiliary,
        image_size=64,
    )
    expected = explainer.explain_outputs(images)
    with open(output / "summary.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["class"]) for row in rows] == list(expected["classes"])
    for index in range(len(images)):
        saliency = np.load(output / f"image_{index}.npy")
        assert saliency.shape == (64, 64)
        np.testing.assert_allclose(saliency, expected["maps"][index], atol=1e-5)


def test_the_checkpoint_alone_says_which_files_to_pass(published, tmp_path, ptame):
    folder, (checkpoint, classifier, _), _ = published
    result = ptame(
        "explain", "--model", checkpoint, folder / "images", "--output", tmp_path
    )
    result.assert_user_error("--classifier-weights")
    line = result.err.strip().splitlines()[-1]
    for part in (
        "'explainer.ckpt' holds the decoder alone",
        "IMAGENET1K_V1",
        "resnet50-0676ba61.pth",
        "ResNet-18 with --auxiliary-weights (resnet18-f37072fd.pth)",
        "~/.cache/torch/hub/checkpoints/",
    ):
        assert part in line, part
    assert line.endswith(".state_dict(), PATH).")  # whole, not cut short
    result = ptame(
        "explain", "--model", checkpoint, "--classifier-weights", classifier,
        folder / "images", "--output", tmp_path,
    )  # fmt: skip
    result.assert_user_error("ResNet-18 with --auxiliary-weights")
    assert "--classifier-weights" not in result.err


def test_weights_that_do_not_fit_are_refused_by_file(published, tmp_path, ptame):
    folder, (checkpoint, _, auxiliary), _ = published
    seven = tmp_path / "seven_classes.pth"
    torch.save(resnet_weights(num_classes=7), seven)
    result = ptame(
        "explain", "--model", checkpoint, "--classifier-weights", seven,
        "--auxiliary-weights", auxiliary, "--image-size", 64, folder / "images",
        "--output", tmp_path / "out",
    )  # fmt: skip
    result.assert_user_error("seven_classes.pth")
    assert "7 classes" in result.err
    assert not (tmp_path / "out").exists()
    result = ptame(
        "explain", "--model", checkpoint, "--classifier-weights", seven,
        "--auxiliary-weights", tmp_path / "missing.pth", folder / "images",
        "--output", tmp_path / "out",
    )  # fmt: skip
    result.assert_user_error("No auxiliary weights file")


def test_the_weights_options_are_refused_without_a_checkpoint(tmp_path, ptame):
    result = ptame(
        "explain", "--model", tmp_path / "explainer.keras", "--classifier-weights",
        tmp_path / "resnet50.pth", tmp_path, "--output", tmp_path / "out",
    )  # fmt: skip
    result.assert_user_error("--classifier-weights: only for a P-TAME authors'")
    result = ptame(
        "evaluate", "--classifier", tmp_path / "c.keras", "--data",
        tmp_path / "d.npz", "--method", "rise", "--method", "P=e.keras",
        "--image-size", 64, "--output", tmp_path / "out",
    )  # fmt: skip
    result.assert_user_error("--image-size: only for a P-TAME authors' checkpoint")


@pytest.mark.parametrize("command", ["explain", "evaluate", "export"])
def test_the_commands_that_load_explainers_take_the_weights_options(command, ptame):
    result = ptame(command, "--help")
    assert result.code == 0
    for option in ("--classifier-weights", "--auxiliary-weights", "--image-size"):
        assert option in result.out, option


def test_an_evaluated_method_may_be_an_authors_checkpoint(published):
    _, (checkpoint, classifier, auxiliary), _ = published
    options = {
        "classifier_weights": str(classifier),
        "auxiliary_weights": str(auxiliary),
        "image_size": 64,
    }
    name, explainer = make_explainer(
        f"authors={checkpoint}", None, checkpoint_options=options
    )
    assert name == "authors"
    assert isinstance(explainer, kp.PTAME)
    assert explainer.input_size == (64, 64)
    assert explainer.decoder.upsampling == "doubling"


# Issue 22, case 12
def test_a_truncated_checkpoint_is_a_user_error_naming_it(published, tmp_path, ptame):
    folder, (checkpoint, classifier, auxiliary), _ = published
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:100])
    result = ptame(
        "explain", "--model", truncated, "--classifier-weights", classifier,
        "--auxiliary-weights", auxiliary, "--image-size", 64, folder / "images",
        "--output", tmp_path / "maps", "--quiet",
    )  # fmt: skip
    result.assert_user_error("cut.ckpt' is not a complete P-TAME checkpoint")
    assert not (tmp_path / "maps").exists()
