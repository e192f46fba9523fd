"""`ptame train --backup-dir`: a damaged backup falls back or says what to delete."""

import os

import keras
import pytest

import keras_ptame as kp
from tests.cli.test_train import train_argv


class _Epochs(keras.callbacks.Callback):
    """Counts the epochs run; interrupts after epoch `stop` (0-based)."""

    def __init__(self, stop=None):
        super().__init__()
        self.stop = stop
        self.run = []

    def on_epoch_end(self, epoch, logs=None):
        self.run.append(epoch)
        if epoch == self.stop:
            raise KeyboardInterrupt


@pytest.fixture
def counted(monkeypatch):
    """Adds an `_Epochs` callback, after the backup's, to every `PTAME.fit`."""
    counter = _Epochs()
    fit = kp.PTAME.fit

    def counted_fit(self, *args, callbacks=(), **kwargs):
        return fit(self, *args, callbacks=[*callbacks, counter], **kwargs)

    monkeypatch.setattr(kp.PTAME, "fit", counted_fit)
    return counter


def damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        # What a kill or a full disk mid-write leaves: the start of the file.
        path.write_bytes(data[: len(data) // 3])
    else:
        path.write_bytes(os.urandom(len(data)))


def interrupted_run(root, output, backup, counted, ptame, stop):
    counted.stop = stop
    argv = train_argv(root, output, epochs=3, batch_size=2, backup_dir=backup)
    assert ptame(*argv).code == 130
    counted.stop, counted.run[:] = None, []
    return argv


# Issue 22, case 7
# A garbage backup is told apart from a truncated one by the same file check on
# every backend: it runs once, under JAX, in `make test` (slow).
@pytest.mark.parametrize(
    "how", ["truncated", pytest.param("garbage", marks=pytest.mark.slow)]
)
def test_a_damaged_backup_falls_back_to_the_state_before_it(
    workspace, tmp_path, ptame, counted, how
):
    root, _ = workspace
    backup, output = tmp_path / "backup", tmp_path / "e.keras"
    # Backups after epochs 0 and 1: the latest and the one before it.
    argv = interrupted_run(root, output, backup, counted, ptame, stop=1)
    assert {"latest.weights.h5", "latest.weights.h5.bkp"} <= set(os.listdir(backup))
    damage(backup / "latest.weights.h5", how)
    result = ptame(*argv)
    assert result.code == 0, result.err
    # Resumed after epoch 0, from the state before the damaged one.
    assert counted.run == [1, 2]
    assert output.is_file() and not backup.exists()


# Issue 22, case 7
# A garbage backup is told apart from a truncated one by the same file check on
# every backend: it runs once, under JAX, in `make test` (slow).
@pytest.mark.parametrize(
    "how", ["truncated", pytest.param("garbage", marks=pytest.mark.slow)]
)
def test_a_damaged_backup_without_an_earlier_one_says_what_to_delete(
    workspace, tmp_path, ptame, counted, how, snapshot
):
    root, _ = workspace
    backup, output = tmp_path / "backup", tmp_path / "e.keras"
    argv = interrupted_run(root, output, backup, counted, ptame, stop=0)
    damage(backup / "latest.weights.h5", how)
    before = snapshot(backup)
    result = ptame(*argv)
    result.assert_user_error(f"delete the folder {str(backup)!r}")
    assert "latest.weights.h5" in result.err.strip().splitlines()[-1]
    assert snapshot(backup) == before and not output.exists()
    # Doing as told trains from the start.
    for name in os.listdir(backup):
        os.remove(backup / name)
    os.rmdir(backup)
    assert ptame(*argv).code == 0
    assert counted.run == [0, 1, 2]


# Issue 22, case 7
def test_a_backup_is_written_whole_or_not_at_all(
    workspace, tmp_path, ptame, counted, monkeypatch
):
    root, _ = workspace
    backup, output = tmp_path / "backup", tmp_path / "e.keras"
    argv = interrupted_run(root, output, backup, counted, ptame, stop=0)
    before = (backup / "latest.weights.h5").read_bytes()
    save_weights = kp.PTAME.save_weights

    def disk_full(self, path, *args, **kwargs):
        # Half a file written, then the disk is full.
        save_weights(self, path, *args, **kwargs)
        with open(path, "r+b") as file:
            file.truncate(os.path.getsize(path) // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kp.PTAME, "save_weights", disk_full)
    result = ptame(*argv)
    result.assert_user_error("Cannot write the training backup")
    assert (backup / "latest.weights.h5").read_bytes() == before
    assert "staged.weights.h5" not in os.listdir(backup)
    monkeypatch.setattr(kp.PTAME, "save_weights", save_weights)
    counted.run[:] = []
    assert ptame(*argv).code == 0
    assert counted.run == [1, 2]
