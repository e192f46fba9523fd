"""The training backup of `ptame train --backup-dir`.

Keras' `BackupAndRestore`, with three changes so that a kill, a full disk or
a damaged file never stops the next run: each state is written under staging
names and renamed into place (a kill mid-write leaves the state before), the
state before is kept as Keras' `.bkp` files (`double_checkpoint`), and a
state that cannot be read falls back to the one before it; if that cannot be
read either, the error names the folder to delete.
"""

import json
import os
import shutil

import keras

from keras_ptame.utils.files import deferred_interrupts

LATEST = ("latest.weights.h5", "training_metadata.json")
PREVIOUS = tuple(name + ".bkp" for name in LATEST)
# The next state while it is written; left behind only by a kill.
STAGED = ("staged.weights.h5", "staged_metadata.json")
# All that a backup folder may hold.
FILES = (*LATEST, *PREVIOUS, *STAGED)


class TrainingBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backup survives a kill, a full disk or damage.

    The backup is kept after training (`delete_checkpoint=False`): `ptame
    train` removes it once the explainer is saved.

    Args:
        backup_dir: str. The folder of the backup; it holds nothing else.
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir, double_checkpoint=True, delete_checkpoint=False)

    def on_train_begin(self, logs=None):
        if not any(os.path.exists(self._path(name)) for name in LATEST + PREVIOUS):
            return
        try:
            self._load_state(LATEST)
            return
        except Exception as error:
            damage = error
        try:
            self._load_previous()
        except Exception:
            raise ValueError(
                f"The training backup {self._path(LATEST[0])!r} cannot be read "
                f"({_reason(damage)}) and no earlier state can: delete the folder "
                f"{self.backup_dir!r} to train from the start."
            ) from damage

    def _load_previous(self):
        """Loads the `.bkp` state, which then replaces the damaged one."""
        # Keras loads weights only from files named `*.weights.h5`.
        try:
            for previous, staged in zip(PREVIOUS, STAGED):
                shutil.copyfile(self._path(previous), self._path(staged))
            self._load_state(STAGED)
        except BaseException:
            _remove(map(self._path, STAGED))
            raise
        with deferred_interrupts():
            for staged, latest in zip(STAGED, LATEST):
                os.replace(self._path(staged), self._path(latest))

    def _load_state(self, names):
        weights, metadata = (self._path(name) for name in names)
        # Keras' own load starts afresh on a missing file.
        for path in (weights, metadata):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{os.path.basename(path)} is missing")
        self._weights_path, self._training_metadata_path = weights, metadata
        try:
            self._load_model()
        finally:
            self._weights_path, self._training_metadata_path = map(self._path, LATEST)

    def _save_model(self):
        weights, metadata = (self._path(name) for name in STAGED)
        try:
            os.makedirs(self.backup_dir, exist_ok=True)
            self.model.save_weights(weights, overwrite=True)
            with open(metadata, "w") as file:
                json.dump(
                    {"epoch": self._current_epoch, "batch": self._last_batch_seen},
                    file,
                )
        except OSError as error:
            _remove((weights, metadata))
            raise OSError(
                f"Cannot write the training backup in {self.backup_dir!r} "
                f"({_reason(error)}); the last one is kept."
            ) from error
        with deferred_interrupts():
            for latest, previous in zip(LATEST, PREVIOUS):
                if os.path.exists(self._path(latest)):
                    os.replace(self._path(latest), self._path(previous))
            for staged, latest in zip(STAGED, LATEST):
                os.replace(self._path(staged), self._path(latest))

    def _path(self, name):
        return os.path.join(self.backup_dir, name)


def _reason(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else repr(error)


def _remove(paths):
    for path in paths:
        if os.path.exists(path):
            os.remove(path)
