"""Hostile but realistic use (issue 14): nothing lost, nothing silently wrong.

Each test reproduces one way a user lost data or got a wrong result without
a word, and checks the error, warning or guarantee that replaced it: outputs
that replace only what the package wrote, loads that verify themselves,
checked pixel ranges and classifier outputs, a saved training-state record,
one interrupt policy for every command, compile settings that stay with
their backend.
"""

import csv
import json
import os
import signal
import sys
import time
import warnings
import zipfile

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame import cli
from keras_ptame.cli import errors
from keras_ptame.cli.startup import native_logs_filtered
from keras_ptame.layers.mask_decoder import MaskDecoder
from keras_ptame.utils.images import read_image
from keras_ptame.utils.validation import check_images
from tests.helpers import (
    IMAGE_SIZE,
    NUM_CLASSES,
    random_images,
    tiny_classifier,
    tiny_explainer,
    tiny_feature_model,
)

Image = pytest.importorskip("PIL.Image")


# === Fixtures ===


def softmax_classifier(num_classes=NUM_CLASSES):
    """`tiny_classifier` ending in a softmax: it returns probabilities."""
    logits = tiny_classifier(num_classes)
    return keras.Model(
        logits.inputs, keras.layers.Softmax()(logits.outputs[0]), name="softmax"
    )


def trained_explainer(**kwargs):
    explainer = tiny_explainer(**kwargs)
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-3, amsgrad=True))
    explainer.fit(random_images(8, seed=5), epochs=1, batch_size=4, verbose=0)
    return explainer


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Saved networks and explainers, and a folder of images."""
    root = tmp_path_factory.mktemp("adversarial")
    tiny_classifier().save(root / "classifier.keras")
    softmax_classifier().save(root / "softmax.keras")
    tiny_feature_model().save(root / "auxiliary.keras")
    trained_explainer().save(root / "explainer.keras")
    untrained = tiny_explainer()
    untrained.ensure_built((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    untrained.save(root / "untrained.keras")
    (root / "images").mkdir()
    for index, image in enumerate(random_images(4, seed=6)):
        Image.fromarray(image).save(root / "images" / f"image_{index}.png")
    keras.backend.clear_session()
    return root


@pytest.fixture
def ptame(capsys):
    """Runs `ptame ARG...` in this process; returns (code, stdout, stderr)."""

    def run(*argv):
        code = cli.main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def assert_one_line_error(result, match, code=2):
    exit_code, _, err = result
    assert exit_code == code, err
    assert "Traceback" not in err
    assert match in err.strip().splitlines()[-1], err


def train_argv(root, output, *options):
    return [
        "train", "--classifier", root / "classifier.keras",
        "--auxiliary", root / "auxiliary.keras", "--data", root / "images",
        "--output", output, "--epochs", 1, "--batch-size", 2, "--verbose", 0,
        *options,
    ]  # fmt: skip


def explain_argv(root, output, *options, model="explainer.keras"):
    return [
        "explain", "--model", root / model, root / "images",
        "--output", output, "--quiet", *options,
    ]  # fmt: skip


def files_under(folder):
    return sorted(
        os.path.relpath(os.path.join(base, name), folder)
        for base, _, names in os.walk(folder)
        for name in names
    )


# === 1. --overwrite replaces only what the package wrote ===


def test_train_overwrite_never_replaces_a_folder(workspace, tmp_path, ptame):
    target = tmp_path / "models.keras"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = ptame(*train_argv(workspace, target, "--overwrite"))
    assert_one_line_error(result, "is a folder")
    assert (target / "notes.txt").read_text() == "mine"


def test_train_refuses_a_backup_dir_holding_other_files(workspace, tmp_path, ptame):
    # BackupAndRestore removes its whole folder after training: `--backup-dir .`
    # emptied the working folder.
    backup = tmp_path / "work"
    backup.mkdir()
    (backup / "notes.txt").write_text("mine")
    argv = train_argv(workspace, tmp_path / "e.keras", "--backup-dir", backup)
    assert_one_line_error(ptame(*argv), "holds files other than a backup")
    assert (backup / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "e.keras").exists()


def test_explain_overwrite_keeps_other_files(workspace, tmp_path, ptame):
    output = tmp_path / "maps"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    assert ptame(*explain_argv(workspace, output))[0] == 0
    assert ptame(*explain_argv(workspace, output, "--overwrite"))[0] == 0
    assert (output / "notes.txt").read_text() == "mine"
    # A folder where an output file would go is never replaced.
    os.remove(output / "image_0.png")
    (output / "image_0.png").mkdir()
    (output / "image_0.png" / "keep.txt").write_text("mine")
    result = ptame(*explain_argv(workspace, output, "--overwrite"))
    assert_one_line_error(result, "would replace a folder")
    assert (output / "image_0.png" / "keep.txt").read_text() == "mine"


# === 2. Loads that verify themselves ===


def _failing_once(monkeypatch, error):
    original = MaskDecoder.build
    calls = []

    def build(self, features_shape):
        if not calls:
            calls.append(1)
            raise error
        return original(self, features_shape)

    monkeypatch.setattr(MaskDecoder, "build", build)


@pytest.mark.parametrize("error", [MemoryError("out of memory"), KeyboardInterrupt])
def test_load_raises_when_the_decoder_cannot_be_built(workspace, monkeypatch, error):
    # Keras catches every exception of a model's `build` while loading: the
    # decoder then took no weights and `explain` gave random maps.
    _failing_once(monkeypatch, error)
    with pytest.raises(type(error) if isinstance(error, Exception) else error):
        keras.saving.load_model(workspace / "explainer.keras")
    # The next load is whole, and gives the saved maps.
    loaded = keras.saving.load_model(workspace / "explainer.keras")
    again = keras.saving.load_model(workspace / "explainer.keras")
    images = random_images(2, seed=3)
    np.testing.assert_allclose(loaded.explain(images), again.explain(images))


def test_load_raises_when_a_part_is_left_without_weights(workspace, monkeypatch):
    # A build that returns without creating the decoder's layers.
    monkeypatch.setattr(MaskDecoder, "build", lambda self, shape: None)
    with pytest.raises(ValueError, match="decoder could not be built"):
        keras.saving.load_model(workspace / "explainer.keras")


def test_cli_load_failure_is_a_clear_error(workspace, tmp_path, monkeypatch, ptame):
    _failing_once(monkeypatch, MemoryError("out of memory"))
    result = ptame(*explain_argv(workspace, tmp_path / "maps"))
    assert_one_line_error(result, "Cannot load the explainer")
    assert "MemoryError" in result[2]
    assert not (tmp_path / "maps").exists()


# === 3. Pixel range ===


@pytest.mark.parametrize(
    "images, match",
    [
        (random_images(2).astype("uint16") * 257, "16-bit"),
        (np.full((2, 8, 8, 3), 3e38, "float32"), "Rescale"),
        (random_images(2).astype("float32") / 127.5 - 1, "before normalisation"),
    ],
)
def test_pixels_outside_0_255_are_refused(images, match):
    with pytest.raises(ValueError, match=match):
        check_images(images)
    explainer = tiny_explainer(size=images.shape[1])
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        explainer.explain(images)


def test_pixels_in_0_1_warn():
    images = random_images(2).astype("float32") / 255
    with pytest.warns(UserWarning, match=r"multiply them by 255"):
        check_images(images)
    # `explain` scans the pixels beside its forward pass, and says so too.
    explainer = tiny_explainer()
    explainer.mark_trained()
    with pytest.warns(UserWarning, match=r"multiply them by 255"):
        explainer.explain(images)
    # A constant image (all black) is no sign of scaling.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        check_images(np.zeros((1, 4, 4, 3), "float32"))
        check_images(random_images(2))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    notes = []
    original, _ = read_image(tmp_path / "deep.png", notes=notes)
    expected = np.round(values / 257.0)
    np.testing.assert_allclose(original[..., 0], expected, atol=1)
    assert (original[..., 0] == original[..., 2]).all()
    # Clipped, 99% of the pixels were white.
    assert (original == 255).mean() < 0.05
    assert "scaled to 8 bits" in notes[0]


def test_decompression_bomb_is_a_one_line_error(
    workspace, tmp_path, monkeypatch, ptame
):
    Image.fromarray(random_images(1, size=64)[0]).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ValueError, match="DecompressionBombError"):
        read_image(tmp_path / "bomb.png")
    result = ptame(
        "explain", "--model", workspace / "explainer.keras", tmp_path / "bomb.png",
        "--output", tmp_path / "maps", "--quiet",
    )  # fmt: skip
    assert_one_line_error(result, "bomb.png")
    assert not (tmp_path / "maps").exists()


# === 4. The classifier's outputs ===


def test_probabilities_read_as_logits_warn():
    with pytest.warns(UserWarning, match="look like probabilities"):
        kp.PTAME(kp.Backbone(softmax_classifier()), tiny_feature_model()).ensure_built(
            (None, IMAGE_SIZE, IMAGE_SIZE, 3)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        tiny_explainer().ensure_built((None, IMAGE_SIZE, IMAGE_SIZE, 3))


def test_declared_probabilities_give_the_classifier_scores(tmp_path):
    classifier = softmax_classifier()
    explainer = kp.PTAME(
        kp.Backbone(classifier, output_type="probabilities"), tiny_feature_model()
    )
    images = random_images(4, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # never trained
        outputs = explainer.explain_outputs(images)
    probabilities = keras.ops.convert_to_numpy(classifier(images.astype("float32")))
    np.testing.assert_array_equal(outputs["classes"], probabilities.argmax(-1))
    np.testing.assert_allclose(outputs["scores"], probabilities.max(-1), atol=1e-5)
    # The loss sees log-probabilities: cross-entropy from logits is then the
    # cross-entropy of the probabilities themselves.
    log_probabilities = explainer.backbone(images)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.softmax(log_probabilities)),
        probabilities,
        atol=1e-5,
    )
    explainer.save(tmp_path / "e.keras")
    loaded = keras.saving.load_model(tmp_path / "e.keras")
    assert loaded.backbone.output_type == "probabilities"


def test_one_class_classifier_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        tiny_explainer(num_classes=1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        kp.PTAME(kp.Backbone(tiny_classifier(2)), tiny_feature_model(), num_classes=1)


def test_cli_train_declares_probabilities(workspace, tmp_path, ptame):
    output = tmp_path / "e.keras"
    argv = train_argv(workspace, output, "--classifier-outputs", "probabilities")
    argv[2] = workspace / "softmax.keras"
    code, _, err = ptame(*argv)
    assert code == 0, err
    assert "look like probabilities" not in err
    assert keras.saving.load_model(output).backbone.output_type == "probabilities"


# === 5. Training is never lost at the end ===


def test_train_keeps_the_backup_until_the_explainer_is_saved(
    workspace, tmp_path, monkeypatch, ptame
):
    backup = tmp_path / "backup"
    output = tmp_path / "e.keras"

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(kp.PTAME, "save", killed)
    argv = train_argv(workspace, output, "--backup-dir", backup)
    code, _, err = ptame(*argv)
    assert code == 130 and "Traceback" not in err
    assert "nothing was written" in err and "resumes training" in err
    # The backup survived the interrupted save; no temporary file is left.
    assert (backup / "latest.weights.h5").is_file()
    assert os.listdir(tmp_path) == ["backup"]
    monkeypatch.undo()
    code, _, err = ptame(*argv)
    assert code == 0, err
    assert output.is_file() and not backup.exists()
    # Ordinary permissions, as `open` gives under the umask.
    umask = os.umask(0)
    os.umask(umask)
    assert output.stat().st_mode & 0o777 == 0o666 & ~umask


def test_train_checks_the_output_folder_before_training(
    workspace, tmp_path, monkeypatch, ptame
):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(
        kp.PTAME, "fit", lambda *a, **k: pytest.fail("trained before the check")
    )
    result = ptame(*train_argv(workspace, tmp_path / "file" / "e.keras"))
    assert_one_line_error(result, "Cannot write to --output")


# === 6. Untrained explainers are marked ===


def test_untrained_explainer_warns_once(tmp_path):
    explainer = tiny_explainer()
    assert not explainer.is_trained
    with pytest.warns(UserWarning, match="never trained"):
        explainer.explain(random_images(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        explainer.explain(random_images(2))
    explainer.save(tmp_path / "untrained.keras")
    with pytest.warns(UserWarning, match="never trained"):
        keras.saving.load_model(tmp_path / "untrained.keras").explain(random_images(2))


def test_trained_state_is_saved(tmp_path):
    explainer = trained_explainer()
    assert explainer.is_trained
    assert int(keras.ops.convert_to_numpy(explainer.trained_steps.value)) == 2
    explainer.save(tmp_path / "e.keras")
    loaded = keras.saving.load_model(tmp_path / "e.keras")
    assert int(keras.ops.convert_to_numpy(loaded.trained_steps.value)) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        loaded.explain(random_images(2))
    explainer.save_to_preset(tmp_path / "preset")
    assert kp.PTAME.from_preset(tmp_path / "preset").is_trained


def test_file_saved_before_the_record_loads_as_trained(tmp_path, monkeypatch):
    explainer = trained_explainer()
    # What an older version wrote: no variable of the explainer's own.
    monkeypatch.setattr(kp.PTAME, "save_own_variables", lambda self, store: None)
    explainer.save(tmp_path / "old.keras")
    monkeypatch.undo()
    loaded = keras.saving.load_model(tmp_path / "old.keras")
    assert loaded.is_trained
    images = random_images(2)
    np.testing.assert_allclose(
        loaded.explain(images), explainer.explain(images), atol=1e-5
    )


def test_cli_warns_about_an_untrained_explainer(workspace, tmp_path, ptame):
    code, _, err = ptame(
        *explain_argv(workspace, tmp_path / "maps", model="untrained.keras")
    )
    assert code == 0, err
    lines = [line for line in err.splitlines() if "never trained" in line]
    assert len(lines) == 1 and lines[0].startswith("ptame explain: warning:")


# === 7. One interrupt policy ===


def test_interrupted_explain_leaves_nothing(workspace, tmp_path, monkeypatch, ptame):
    output = tmp_path / "maps"
    calls = []

    def overlay(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)

    monkeypatch.setattr(kp.visualize, "overlay", overlay)
    code, _, err = ptame(*explain_argv(workspace, output, "--batch-size", 1))
    assert code == 130
    assert "Traceback" not in err
    assert (
        err.strip().splitlines()[-1]
        == "ptame explain: interrupted; nothing was written."
    )
    assert not output.exists()
    monkeypatch.undo()
    # The rerun is not blocked by leftovers.
    code, _, err = ptame(*explain_argv(workspace, output))
    assert code == 0, err
    assert len(files_under(output)) == 2 * 4 + 1
    with open(output / "summary.csv") as file:
        assert {row["flat"] for row in csv.DictReader(file)} <= {"True", "False"}


def test_bad_cmap_is_refused_before_writing(workspace, tmp_path, ptame):
    result = ptame(*explain_argv(workspace, tmp_path / "maps", "--cmap", "nosuchmap"))
    assert_one_line_error(result, "Unknown colormap")
    assert not (tmp_path / "maps").exists()


def test_error_caused_by_an_interrupt_exits_130(monkeypatch, ptame):
    def run(args):
        try:
            # What a terminal's Ctrl-C delivers.
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            # e.g. a worker process killed by the same Ctrl-C.
            raise RuntimeError("the worker died") from None

    monkeypatch.setattr(cli.demo, "run", run)
    code, _, err = ptame("demo")
    assert code == 130
    assert "Traceback" not in err and "interrupted" in err


def test_swallowed_interrupt_still_exits_130(monkeypatch, ptame):
    def run(args):
        errors.track_outputs()
        errors.wrote("result.txt")
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            pass

    monkeypatch.setattr(cli.demo, "run", run)
    code, _, err = ptame("demo")
    assert code == 130
    assert "written before the interrupt: result.txt" in err


def test_interrupt_while_importing_exits_130(monkeypatch, capsys):
    # `ptame` imports Keras (and TensorFlow) on start: seconds in which a
    # Ctrl-C printed a long traceback.
    class Interrupting:
        def find_spec(self, name, path=None, target=None):
            if name == "keras_ptame.cli.train":
                raise KeyboardInterrupt
            return None

    for name in list(sys.modules):
        if name == "keras_ptame.cli" or name.startswith("keras_ptame.cli."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    with pytest.raises(SystemExit) as exit_info:
        import keras_ptame.cli  # noqa: F401
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == (
        "ptame: interrupted while starting; nothing was written."
    )


# === 7 (also): native logs, flat maps in the summary ===


def test_native_logs_are_quiet_unless_asked(monkeypatch, ptame):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert ptame("demo", "--help")[0] == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    assert ptame("--native-logs", "demo", "--help")[0] == 0
    assert ptame("demo", "--native-logs", "--help")[0] == 0
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert ptame("demo", "--help")[0] == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_native_log_lines_are_filtered_from_stderr(capfd):
    native = b"I0000 00:00:1795728592.418436    4698 port.cc:153] oneDNN is on.\n"
    with native_logs_filtered():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() ...\n")
        os.write(2, native)
        os.write(2, b"ptame: a line of ours\n")
        os.write(2, b"E0000 00:00:17.2    1 cuda_platform.cc:52] failed call\n")
        os.write(2, b"F0000 00:00:17.2    1 fatal.cc:1] kept\n")
        os.write(2, b"a partial line")
    assert capfd.readouterr().err == (
        "ptame: a line of ours\nF0000 00:00:17.2    1 fatal.cc:1] kept\na partial line"
    )
    with native_logs_filtered(enabled=False):
        os.write(2, native)
    assert capfd.readouterr().err == native.decode()


def test_explain_marks_flat_maps(workspace, tmp_path, monkeypatch, ptame):
    original = kp.PTAME.explain_outputs

    def explain_outputs(self, images, *args, **kwargs):
        outputs = original(self, images, *args, **kwargs)
        outputs["flat"] = np.arange(len(images)) % 2 == 0
        outputs["evidence"] = np.where(outputs["flat"], 0.01, 0.5)
        return outputs

    monkeypatch.setattr(kp.PTAME, "explain_outputs", explain_outputs)
    output = tmp_path / "maps"
    argv = explain_argv(workspace, output)
    argv.remove("--quiet")
    code, _, err = ptame(*argv)
    assert code == 0, err
    assert "2 of 4 maps flat: the classifier needed no evidence" in err
    with open(output / "summary.csv") as file:
        rows = {row["output"]: row for row in csv.DictReader(file)}
    assert rows["image_0"]["flat"] == "True" and rows["image_1"]["flat"] == "False"
    assert float(rows["image_1"]["evidence"]) == pytest.approx(0.5)


# === 8. Compile settings stay with their backend ===


def _with_compile_backend(path, backend):
    """Rewrites the compile config of the `.keras` file at `path`."""
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(contents["config.json"])
    if backend is None:
        config["compile_config"].pop("backend", None)
    else:
        config["compile_config"]["backend"] = backend
    contents["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)


def test_jit_compile_is_not_carried_to_another_backend(tmp_path):
    reference = tiny_explainer()
    reference.compile(jit_compile="auto")
    default = reference.jit_compile
    explainer = tiny_explainer()
    explainer.ensure_built((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    explainer.compile(jit_compile=not default)
    explainer.save(tmp_path / "e.keras")
    assert keras.saving.load_model(tmp_path / "e.keras").jit_compile == (not default)
    other = "torch" if keras.config.backend() == "jax" else "jax"
    for backend in (other, None):
        _with_compile_backend(tmp_path / "e.keras", backend)
        assert keras.saving.load_model(tmp_path / "e.keras").jit_compile == default
