"""Explainer presets: a trained explainer as a folder, in keras-hub's style.

A preset folder holds everything needed to explain, nothing to download:

- `config.json`: the explainer's Keras config, with its classifier and
  auxiliary network (and their preprocessing) inside, and its decoder's
  numerics;
- `model.weights.h5`: all its weights (classifier, auxiliary network,
  decoder);
- `metadata.json`: the versions that saved it, its parameter count, the
  image size it was built for and the date.

`explainer.save_to_preset(folder)` writes one (and, with `overwrite=True`,
replaces only a folder that is a preset it wrote: these three files and
nothing else, `metadata.json` naming `keras_ptame_version`), and `PTAME.from_preset(preset)`
reads one from a local folder or from any handle keras-hub reads presets
from (`kaggle://`, `hf://`, `modelscope://`, or a `gs://` path).
`keras_hub.upload_preset(handle, folder)` publishes a folder.
"""

import datetime
import json
import os

import keras

from keras_ptame.utils.files import (
    atomic_path,
    check_replaceable,
    is_own_folder,
    read_json_object,
)
from keras_ptame.utils.install import install_hint
from keras_ptame.utils.validation import check_finite_weights
from keras_ptame.version import __version__

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)


def save_explainer_preset(explainer, preset_dir, overwrite=False):
    """Writes `explainer` (built) as the preset folder `preset_dir`.

    Args:
        explainer: a built `PTAME`.
        preset_dir: str or path-like. The folder to write.
        overwrite: bool. Whether to replace a preset already at `preset_dir`
            (only one this package wrote, with nothing else in it). Defaults
            to `False`.
    """
    if not explainer.built:
        raise ValueError(
            "Only a built explainer can be saved as a preset: train it, or call "
            "`explain` or `build((None, height, width, 3))` first."
        )
    check_replaceable(preset_dir, overwrite, is_own_preset, "an explainer preset")
    config = keras.saving.serialize_keras_object(explainer)
    config.pop("compile_config", None)
    with atomic_path(preset_dir, directory=True) as folder:
        os.makedirs(folder)
        _write_json(os.path.join(folder, CONFIG_FILE), config)
        _write_json(os.path.join(folder, METADATA_FILE), _metadata(explainer))
        explainer.save_weights(os.path.join(folder, WEIGHTS_FILE))


def is_own_preset(path):
    """Whether `path` is a preset folder `save_explainer_preset` wrote, and only that."""
    return is_own_folder(path, PRESET_FILES, _written_here)


def _written_here(path):
    # The marker: `_metadata`'s `keras_ptame_version`.
    try:
        with open(os.path.join(path, METADATA_FILE), encoding="utf-8") as file:
            metadata = json.load(file)
    except (OSError, ValueError):
        return False
    return isinstance(metadata, dict) and "keras_ptame_version" in metadata


def load_explainer_preset(cls, preset, safe_mode=True):
    """Reads a preset written by `save_explainer_preset` as a `cls`.

    Args:
        cls: the explainer class (`PTAME` or a subclass).
        preset: str. A local preset folder or a keras-hub handle
            (`kaggle://...`, `hf://...`, ...).
        safe_mode: bool. Keras' `safe_mode` for the config: `False` allows
            lambdas and other code in it. Defaults to `True`.

    Returns:
        The built explainer with the preset's weights.
    """
    path = preset_file(preset, CONFIG_FILE)
    config = read_json_object(path)
    _check_metadata(preset)
    _check_class(config, cls, preset)
    build_config = config.pop("build_config", None) or {}
    try:
        explainer = keras.saving.deserialize_keras_object(config, safe_mode=safe_mode)
    except (TypeError, KeyError, AttributeError) as error:
        # A config edited or damaged inside: Keras refuses it (and never
        # imports a module outside Keras' and the registered classes').
        raise ValueError(
            f"{path!r} does not describe an explainer Keras can rebuild "
            f"({type(error).__name__}: {' '.join(str(error).split())})"
        ) from error
    input_shape = getattr(build_config, "get", lambda _: None)("input_shape")
    if input_shape is None:
        raise ValueError(
            f"The preset {preset!r} does not record the image size its explainer "
            "was built for (`build_config` in config.json)."
        )
    explainer.build(tuple(input_shape))
    explainer.load_weights(preset_file(preset, WEIGHTS_FILE))
    check_finite_weights(explainer, f"the preset {preset!r}")
    return explainer


def preset_file(preset, name):
    """The local path of file `name` of `preset`, downloaded if remote."""
    if not isinstance(preset, (str, os.PathLike)):
        raise ValueError(
            f"A preset is a folder or a keras-hub handle. Received: preset={preset!r}"
        )
    preset = os.fspath(preset)
    if os.path.isdir(preset):
        path = os.path.join(preset, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{preset!r} is not an explainer preset: it has no {name!r}. "
                "Write one with `explainer.save_to_preset(folder)`."
            )
        return path
    if "://" not in preset:
        raise FileNotFoundError(
            f"No explainer preset at {preset!r}: not a folder, nor a handle "
            "such as 'kaggle://owner/model/keras/variant' or 'hf://owner/model'."
        )
    try:
        from keras_hub.src.utils.preset_utils import get_file
    except ImportError as error:
        raise ImportError(
            f"Loading the preset {preset!r} needs keras-hub, which downloads "
            f"presets: {install_hint('hub')}. ({error})"
        ) from error
    return get_file(preset, name)


def _check_metadata(preset):
    # Not needed to load, but a damaged one means a damaged copy.
    path = os.path.join(os.fspath(preset), METADATA_FILE)
    if os.path.isfile(path):
        read_json_object(path)


def _check_class(config, cls, preset):
    name = config.get("registered_name") or config.get("class_name")
    found = keras.saving.get_registered_object(name) if name else None
    if not (isinstance(found, type) and issubclass(found, cls)):
        raise ValueError(
            f"The preset {preset!r} holds a {name!r}, not a {cls.__name__}. A "
            "keras-hub classifier or backbone preset loads with "
            "`kp.Backbone.from_preset` or `kp.AuxiliaryExtractor.from_preset`."
        )
    module = config.get("module", found.__module__)
    if module != found.__module__:
        # Refused as it is, never imported.
        raise ValueError(
            f"The preset {preset!r} names the module {module!r} in its "
            f"{CONFIG_FILE}, where {name!r} is {found.__module__!r}'s: it is "
            "damaged or edited."
        )


def _metadata(explainer):
    try:
        import keras_hub

        hub_version = keras_hub.__version__
    except ImportError:
        hub_version = None
    return {
        "class_name": type(explainer).__name__,
        "keras_version": keras.version(),
        "keras_hub_version": hub_version,
        "keras_ptame_version": __version__,
        "parameter_count": explainer.count_params(),
        "num_classes": explainer.num_classes,
        "input_shape": list(explainer.get_build_config()["input_shape"]),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
    }


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=4)
