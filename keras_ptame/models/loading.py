"""Loading a saved explainer, whichever form it was saved in: one function
for the package and the command line."""

import os
import zipfile

import keras

from keras_ptame.converters.ptame_checkpoint import MissingNetworkWeights
from keras_ptame.models.ptame import PTAME
from keras_ptame.utils.validation import check_finite_weights

# The files `load_explainer` reads as the P-TAME authors' checkpoints.
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")


def load_explainer(
    path,
    safe_mode=True,
    classifier_weights=None,
    auxiliary_weights=None,
    image_size=None,
):
    """Loads a `PTAME` from a `.keras` file, a preset or the authors' checkpoint.

    Args:
        path: str or path-like: a `.keras` file saved with `explainer.save`,
            a folder saved with `explainer.save_to_preset`, a preset handle
            (`kaggle://...`, `hf://...`), or a checkpoint the P-TAME authors
            published (`.ckpt`; see `PTAME.from_official_checkpoint`).
        safe_mode: bool. Keras' `safe_mode`. Defaults to `True`.
        classifier_weights: optional str, the torchvision weights file of
            the classifier of an authors' checkpoint. Defaults to `None`.
        auxiliary_weights: optional str, the torchvision weights file of
            the auxiliary ResNet-18 of an authors' checkpoint. Defaults to
            `None`.
        image_size: optional int, the square image size an authors'
            checkpoint is imported for. Defaults to `None` (224, the
            authors').

    Returns:
        The `keras_ptame.PTAME`.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not a complete `.keras` file, preset or
            checkpoint holding a `PTAME`, or the options of a checkpoint are
            given for a file that is not one.

    Examples:
    ```python
    import keras_ptame as kp

    explainer = kp.load_explainer("explainer.keras")
    maps = explainer.explain(images)
    ```
    """
    path = os.fspath(path)
    if path.endswith(CHECKPOINT_SUFFIXES):
        return _import_checkpoint(
            path, classifier_weights, auxiliary_weights, image_size
        )
    options = {
        "classifier_weights": classifier_weights,
        "auxiliary_weights": auxiliary_weights,
        "image_size": image_size,
    }
    given = [f"`{name}`" for name, value in options.items() if value is not None]
    if given:
        raise ValueError(
            f"{' and '.join(given)}: only for a P-TAME authors' checkpoint "
            f"(.ckpt), which {path!r} is not."
        )
    if "://" in path or os.path.isfile(os.path.join(path, "config.json")):
        return _load_preset(path, safe_mode)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such explainer file: {path!r}")
    if os.path.isdir(path) or not path.endswith(".keras"):
        raise ValueError(
            "The explainer must be a .keras file saved with `explainer.save` or "
            f"a preset folder saved with `explainer.save_to_preset`. Received: {path!r}"
        )
    model = load_keras_model(path, "explainer", safe_mode)
    if not isinstance(model, PTAME):
        raise ValueError(
            f"{path!r} holds a {type(model).__name__}, not a keras_ptame.PTAME "
            "explainer."
        )
    return model


def load_keras_model(path, what="model", safe_mode=True):
    """Loads any Keras model from a `.keras` file, uncompiled.

    Args:
        path: str or path-like, the `.keras` file.
        what: str. What the model is, for the messages. Defaults to
            `"model"`.
        safe_mode: bool. Keras' `safe_mode`. Defaults to `True`.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not a `.keras` file Keras can load.
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"The {what} must be a .keras file. Received: {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such .keras file: {path!r}")
    if not zipfile.is_zipfile(path):
        # Keras would say "File not found" of a file that is there.
        raise ValueError(
            f"Cannot load the {what} from {path!r}: it is not a complete .keras "
            "file, not even a zip archive (cut short by an interrupted copy or "
            "save, or another format)."
        )
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as error:
        # A truncated or foreign file fails deep inside the loader with
        # zipfile, h5py or deserialisation errors; all mean the same to a user.
        raise ValueError(
            f"Cannot load the {what} from {path!r}; is it a complete .keras file? "
            f"({type(error).__name__}: {error})"
        ) from error
    check_finite_weights(model, f"the {what} {path!r}")
    return model


def _import_checkpoint(path, classifier_weights, auxiliary_weights, image_size):
    """The authors' checkpoint `path` as a `PTAME`, errors naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such checkpoint file: {path!r}")
    try:
        return PTAME.from_official_checkpoint(
            path,
            classifier_weights=classifier_weights,
            auxiliary_weights=auxiliary_weights,
            image_size=224 if image_size is None else image_size,
        )
    except (MissingNetworkWeights, FileNotFoundError):
        raise  # they name what is missing
    except (ValueError, OSError) as error:
        raise ValueError(
            f"Cannot import the P-TAME authors' checkpoint {path!r}: {error}"
        ) from error


def _load_preset(path, safe_mode):
    try:
        return PTAME.from_preset(path, safe_mode=safe_mode)
    except (ValueError, OSError) as error:
        raise ValueError(
            f"Cannot load the explainer preset {path!r}: {error}"
        ) from error
