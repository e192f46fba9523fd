"""Interrupted training, degenerate inputs and broken files: no NaN, no loss."""

import os

import keras
import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame import export
from tests.helpers import IMAGE_SIZE, random_images, tiny_explainer, weights_of

STEPS = 4  # batches per epoch in the interruption tests


class Interrupted(Exception):
    """Stands for a killed process."""


class StopMidEpoch(keras.callbacks.Callback):
    """Raises `Interrupted` after `batch` batches of epoch `epoch` (0-based)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch + 1 == self.batch:
            raise Interrupted(f"killed in epoch index {self.epoch}")


class Recorder(keras.callbacks.Callback):
    """Records, per epoch, the decoder's weights and the optimizer's step."""

    def __init__(self):
        super().__init__()
        self.began, self.start, self.end, self.steps = [], {}, {}, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.began.append(epoch)
        self.start[epoch] = weights_of(self.model.decoder)
        self.steps[epoch] = int(
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        )

    def on_epoch_end(self, epoch, logs=None):
        self.end[epoch] = weights_of(self.model.decoder)


def new_explainer(seed):
    # A fresh process builds the explainer again: its decoder starts from a
    # different random draw, so equal weights can only come from the backup.
    explainer = tiny_explainer()
    keras.utils.set_random_seed(seed)
    explainer.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    return explainer


# === Interrupted training ===


def test_backup_and_restore_loses_at_most_the_current_epoch(tmp_path):
    images = random_images(STEPS * 4, seed=2)
    backup = str(tmp_path / "backup")

    first = new_explainer(seed=10)
    recorder = Recorder()
    with pytest.raises(Interrupted):
        first.fit(
            images,
            epochs=3,
            batch_size=4,
            shuffle=False,
            verbose=0,
            callbacks=[
                keras.callbacks.BackupAndRestore(backup),
                recorder,
                StopMidEpoch(epoch=1, batch=2),
            ],
        )
    assert recorder.began == [0, 1]
    assert sorted(recorder.end) == [0]
    assert os.listdir(backup)

    second = new_explainer(seed=20)
    resumed = Recorder()
    history = second.fit(
        images,
        epochs=3,
        batch_size=4,
        shuffle=False,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup), resumed],
    )
    # Epoch 2 (index 1), the interrupted one, is run again; epoch 1 is not.
    assert resumed.began == [1, 2]
    assert history.epoch == [1, 2]
    assert resumed.steps[1] == STEPS
    for restored, saved in zip(resumed.start[1], recorder.end[0], strict=True):
        np.testing.assert_allclose(restored, saved, rtol=1e-6, atol=1e-7)
    # And training went on from there.
    changed = [
        not np.allclose(after, before)
        for after, before in zip(resumed.end[2], resumed.start[1], strict=True)
    ]
    assert any(changed)
    assert int(keras.ops.convert_to_numpy(second.optimizer.iterations)) == 3 * STEPS
    assert all(np.isfinite(w).all() for w in weights_of(second.decoder))
    # A completed run removes its backup, so a new run starts from scratch.
    assert not os.path.exists(backup) or not os.listdir(backup)


# === Never NaN ===


def _constant_maps(explainer):
    kernel = explainer.decoder.fuser.kernel
    kernel.assign(np.zeros(kernel.shape, "float32"))


def _scale_weights(layer, factor):
    layer.set_weights([w * factor for w in layer.get_weights()])


@pytest.mark.parametrize(
    "case",
    [
        "constant_maps",
        "black_images",
        "white_images",
        "extreme_logits",
        "infinite_logits",
        "huge_features",
    ],
)
def test_explain_never_returns_nan(case):
    explainer = tiny_explainer()
    images = random_images(4, seed=3)
    explainer.explain(images)  # builds
    if case == "constant_maps":
        _constant_maps(explainer)
    elif case == "black_images":
        images = np.zeros_like(images)
    elif case == "white_images":
        images = np.full_like(images, 255)
    elif case == "extreme_logits":
        _scale_weights(explainer.backbone.classifier.layers[-1], 1e30)
    elif case == "infinite_logits":
        # Logits overflow float32 to +-inf.
        _scale_weights(explainer.backbone.classifier.layers[-1], 1e38)
    elif case == "huge_features":
        _scale_weights(explainer.extractor.model.get_layer("f1"), 1e30)
    outputs = explainer.explain_outputs(images)
    maps = outputs["maps"]
    assert maps.shape == (4, IMAGE_SIZE, IMAGE_SIZE)
    assert np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.isfinite(outputs["scores"]).all()
    assert ((outputs["classes"] >= 0) & (outputs["classes"] < 4)).all()
    if case == "constant_maps":
        np.testing.assert_array_equal(maps, 0.0)


def test_training_on_black_images_stays_finite():
    explainer = tiny_explainer()
    explainer.compile(optimizer=keras.optimizers.AdamW(1e-2, amsgrad=True))
    history = explainer.fit(
        np.zeros((8, IMAGE_SIZE, IMAGE_SIZE, 3), "uint8"),
        epochs=2,
        batch_size=4,
        verbose=0,
    )
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.isfinite(w).all() for w in weights_of(explainer.decoder))
    assert np.isfinite(explainer.explain(random_images(2))).all()


# === Bad arrays ===


@pytest.mark.parametrize(
    "images, match",
    [
        (random_images(2)[..., 0], "rank 3"),
        (random_images(2)[..., :1], "reads 3-channel images, but receives 1 channel"),
        (
            np.concatenate([random_images(2)] * 2, axis=-1)[..., :4],
            "reads 3-channel images, but receives 4 channels",
        ),
        (np.full((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.nan, "float32"), "finite"),
        (np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), "uint8"), "empty"),
        (np.full((1, IMAGE_SIZE, IMAGE_SIZE, 3), "x"), "numbers"),
    ],
    ids=["grayscale", "one_channel", "rgba", "nan", "empty", "strings"],
)
def test_explain_rejects_bad_arrays_clearly(images, match):
    explainer = tiny_explainer()
    with pytest.raises(ValueError, match=match):
        explainer.explain(images)


def test_wrong_size_images_fail_clearly_and_leave_the_explainer_usable():
    explainer = tiny_explainer()
    images = random_images(2)
    before = explainer.explain(images)
    with pytest.raises(ValueError, match=str(IMAGE_SIZE)):
        explainer.explain(random_images(2, size=IMAGE_SIZE + 4))
    np.testing.assert_allclose(explainer.explain(images), before, atol=1e-6)


# === Broken files and existing targets ===


@pytest.fixture
def saved(tmp_path):
    explainer = tiny_explainer()
    images = random_images(3, seed=4)
    expected = explainer.explain(images)
    path = tmp_path / "explainer.keras"
    explainer.save(path)
    return path, images, expected


def test_saved_explainer_loads_in_safe_mode(saved):
    path, images, expected = saved
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, kp.PTAME)
    np.testing.assert_allclose(loaded.explain(images), expected, atol=1e-6)


@pytest.mark.parametrize("damage", ["missing", "random_bytes", "truncated", "empty"])
def test_broken_keras_file_gives_a_clear_error(saved, damage):
    path, _, _ = saved
    if damage == "missing":
        path = path.with_name("missing.keras")
    elif damage == "random_bytes":
        path.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-500])
    elif damage == "empty":
        path.write_bytes(b"")
    content = path.read_bytes() if path.exists() else None
    error = FileNotFoundError if damage == "missing" else ValueError
    with pytest.raises(error, match="No such explainer file|Cannot load"):
        kp.load_explainer(path)
    if content is not None:
        assert path.read_bytes() == content


def test_export_onto_an_existing_file_changes_nothing(saved, tmp_path):
    path, _, _ = saved
    explainer = keras.saving.load_model(path)
    target = tmp_path / "model"
    target.write_text("not yours")
    with pytest.raises(FileExistsError, match="overwrite"):
        export.export_saved_model(explainer, target)
    assert target.read_text() == "not yours"
    assert sorted(os.listdir(tmp_path)) == ["explainer.keras", "model"]
