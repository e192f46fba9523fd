"""Explainers that come trained: the authors' checkpoints and explainer presets,
the record of an explainer's training, and the checks of a load."""

import contextlib
import warnings

import keras

from keras_ptame.converters.ptame_checkpoint import load_official_checkpoint
from keras_ptame.models.explainer_preset import (
    load_explainer_preset,
    save_explainer_preset,
)

# `trained_steps` of an explainer saved before the record existed: counted as
# trained (see `Pretrained.load_own_variables`).
UNRECORDED = -1


class Pretrained:
    """What `PTAME` offers to load trained explainers, share them and tell
    whether they were trained.

    A mixin rather than methods written in `ptame.py`: the readers and
    writers live in `converters/ptame_checkpoint.py` and `explainer_preset.py`, and
    this class is their entry points on the model; it also keeps the
    training-state record (`trained_steps`, saved with the weights, counted
    by `fit`) and checks that a load rebuilt every part.
    """

    @classmethod
    def from_official_checkpoint(
        cls,
        checkpoint,
        classifier_weights=None,
        auxiliary_weights=None,
        image_size=224,
        **kwargs,
    ):
        """Imports an explainer that the P-TAME authors trained and published.

        The authors' checkpoints (VGG-16, ResNet-50 or ViT-B/16) hold the
        decoder alone; the classifier and the ResNet-18 auxiliary network
        are torchvision's ImageNet weights (`IMAGENET1K_V1`), passed as
        torchvision's own files. All three are rebuilt on any backend, with
        the authors' preprocessing and decoder numerics, so raw pixels go
        in; reading them needs PyTorch. See
        `keras_ptame.converters.ptame_checkpoint`.

        Args:
            checkpoint: a path to the checkpoint (`.ckpt`), to a file holding
                its state dict alone, or the state dict itself.
            classifier_weights: the classifier's torchvision state dict: a
                file saved with `torch.save` (torchvision's
                `resnet50-0676ba61.pth`, `vgg16-397923af.pth` or
                `vit_b_16-c867db91.pth`), or the dict. Needed when the
                checkpoint holds no classifier (the authors' files), refused
                when it holds one. Defaults to `None`.
            auxiliary_weights: the ResNet-18's torchvision state dict
                (`resnet18-f37072fd.pth`), as `classifier_weights`. Defaults
                to `None`.
            image_size: int. The square size of the images the explainer
                takes. Defaults to `224` (the authors').
            **kwargs: passed to the constructor (`name`, ...).

        Examples:
        ```python
        # torchvision keeps the files it downloads in ~/.cache/torch/hub/checkpoints/.
        explainer = kp.PTAME.from_official_checkpoint(
            "resnet50.ckpt",
            classifier_weights="resnet50-0676ba61.pth",
            auxiliary_weights="resnet18-f37072fd.pth",
        )
        maps = explainer.explain(images)   # raw pixels (N, 224, 224, 3)
        ```
        """
        explainer = load_official_checkpoint(
            cls,
            checkpoint,
            classifier_weights=classifier_weights,
            auxiliary_weights=auxiliary_weights,
            image_size=image_size,
            **kwargs,
        )
        explainer.mark_trained()
        return explainer

    @classmethod
    def from_preset(cls, preset, safe_mode=True):
        """Loads an explainer saved with `save_to_preset`.

        Args:
            preset: str. A local preset folder, or a handle keras-hub reads
                presets from (`"kaggle://..."`, `"hf://..."`, ...).
            safe_mode: bool. Keras' `safe_mode` for the config. Defaults to
                `True`.
        """
        return load_explainer_preset(cls, preset, safe_mode=safe_mode)

    def save_to_preset(self, preset_dir, overwrite=False):
        """Writes this explainer as a keras-hub-style preset folder.

        Config (classifier and auxiliary network inside), weights and
        metadata, written whole or not at all. See
        `keras_ptame.models.explainer_preset`.

        Args:
            preset_dir: str or path-like. The folder to write.
            overwrite: bool. Whether to replace a preset already at
                `preset_dir`. Only a preset this package wrote is replaced:
                a file, a link, or a folder holding anything else is refused
                with a `FileExistsError`. Defaults to `False`.
        """
        save_explainer_preset(self, preset_dir, overwrite=overwrite)

    # === Training state ===

    def init_training_state(self):
        """Creates `trained_steps`, the saved count of the decoder's training steps."""
        self.trained_steps = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="int32",
            trainable=False,
            autocast=False,
            name="trained_steps",
        )
        self._warned_untrained = False
        # Set once `trained_steps` was read as trained (see `warn_if_untrained`).
        self._known_trained = False

    @property
    def is_trained(self):
        """Whether the decoder was trained: by `fit`, or loaded trained.

        Explainers from the authors' checkpoints count as trained, and so do
        those saved before the record existed (`trained_steps` is then
        `UNRECORDED`).
        """
        return _read_int(self.trained_steps) != 0

    def mark_trained(self):
        """Records the decoder as trained elsewhere (e.g. imported weights)."""
        if not self.is_trained:
            self.trained_steps.assign(UNRECORDED)

    def warn_if_untrained(self):
        """Warns, once per explainer, if its decoder was never trained.

        Reads `trained_steps` off the device (a wait on an accelerator) only
        until it has warned or found the decoder trained: `fit`,
        `mark_trained` or a load make it trained, and only loading other
        weights undoes that, so the answer is kept until the next load
        (`load_own_variables`).
        """
        if self._warned_untrained or self._known_trained:
            return
        if getattr(self, "_fitting", False):
            return
        if self.is_trained:
            self._known_trained = True
            return
        self._warned_untrained = True
        warnings.warn(
            f"The explainer {self.name!r} was never trained: its maps come from a "
            "decoder with random weights. Train it with `fit` (or `ptame train`) "
            "or load a trained one.",
            stacklevel=3,
        )

    def fit(self, *args, **kwargs):
        # Counted on the host from the optimizer's steps: a variable updated
        # inside the compiled step would need every backend's train step.
        start = _steps_of(self)
        guard = None
        if keras.config.backend() == "jax":
            guard = _FirstStepGuard()
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or ()), guard]
        # Callbacks that explain between epochs (the removal check) explain a
        # decoder in training: nothing to warn about.
        self._fitting = True
        try:
            history = super().fit(*args, **kwargs)
        except BaseException:
            self._fitting = False
            # A step whose tracing was cut short (TensorFlow) cannot be traced
            # again: the next `fit` makes a new one.
            self.train_function = None
            # Nothing may replace the error (an interrupt above all).
            with contextlib.suppress(Exception):
                if guard is not None:
                    guard.reattach()
                self._count_steps(start)
            raise
        self._fitting = False
        self._count_steps(start)
        return history

    def _count_steps(self, start):
        """Adds the optimizer's steps since `start` to `trained_steps`."""
        done = _steps_of(self) - start
        if done > 0:
            recorded = max(_read_int(self.trained_steps), 0)
            self.trained_steps.assign(recorded + done)

    def predict(self, *args, **kwargs):
        self.warn_if_untrained()
        return super().predict(*args, **kwargs)

    # === Loading checks ===

    def build_from_config(self, config):
        # Keras' own catches every exception of `build` here (an interrupt or
        # a memory error included) and returns a model whose decoder is
        # built later, with random weights: let them through instead.
        if config and "input_shape" in config:
            self.build(config["input_shape"])
            self._build_shapes_dict = config
            return
        super().build_from_config(config)

    def load_own_variables(self, store):
        if self.built:
            self.check_parts_built()
        # The weights loaded may be an untrained decoder's.
        self._known_trained = False
        if len(store.keys()) == 0:
            # Saved before `trained_steps` existed, which was almost always
            # after training (`ptame train` saves only then): counted as
            # trained rather than warning about every older file.
            self.trained_steps.assign(UNRECORDED)
            return
        super().load_own_variables(store)

    def check_parts_built(self):
        """Raises a `ValueError` if a part of a built explainer is not built.

        A part left unbuilt by a failed load would take no saved weights and
        explain with random ones.
        """
        parts = {
            "backbone": self.backbone,
            "extractor": self.extractor,
            "decoder": self.decoder,
        }
        unbuilt = [
            name
            for name, part in parts.items()
            if part is None
            or not part.built
            or (name == "decoder" and not part.weights)
        ]
        if unbuilt:
            raise ValueError(
                f"The explainer's {', '.join(unbuilt)} could not be built, so it "
                "cannot carry its saved weights; nothing usable was loaded. Load "
                "it again (an interrupt or a memory error while loading causes "
                "this)."
            )


class _FirstStepGuard(keras.callbacks.Callback):
    """Puts back the variables an interrupted first step of JAX's `fit` detached.

    JAX's `fit` detaches the variables (`_value = None`) while its steps run
    and puts them back after, from the last step's state; interrupted in its
    first step (while it compiles) it has no state, and the explainer is left
    without weights, its classifier too, which `kp.tune` shares with the next
    trial. Their values before that step are kept until the next begins.
    """

    def __init__(self):
        super().__init__()
        self.values = None

    def on_train_batch_begin(self, batch, logs=None):
        # Not in `on_train_batch_end`, which would stop Keras dispatching the
        # end of each step asynchronously.
        if self.values is None:
            model = self.model
            # Keras 3.10 detaches the metrics' variables too.
            variables = [
                *model.variables,
                *model.optimizer.variables,
                *model.metrics_variables,
            ]
            self.values = [(variable, variable.value) for variable in variables]
        else:
            # A step has ended: `fit` can put its state back itself.
            self.values = []

    def reattach(self):
        for variable, value in self.values or ():
            if variable._value is None:
                variable.assign(value)


def _steps_of(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return 0
    return _read_int(optimizer.iterations)


def _read_int(variable):
    value = variable.value
    if keras.config.backend() == "tensorflow":
        # A `tf.distribute` variable (made under a strategy's scope) gives
        # no array to numpy, but reads its value with `numpy()`.
        return int(value.numpy())
    return int(keras.ops.convert_to_numpy(value))
