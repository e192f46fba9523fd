"""Explain classifiers that are not Keras models.

P-TAME only calls the classifier, so any differentiable function of the
image will do. Keras wraps the three common foreign formats as layers, each
on the backend that runs it natively:

| classifier | wrapper | backend |
|---|---|---|
| TensorFlow SavedModel | `keras.layers.TFSMLayer` | `tensorflow` |
| PyTorch `torch.nn.Module` | `keras.layers.TorchModuleWrapper` | `torch` |
| JAX function `f(params, images)` | `keras.layers.JaxLayer` | `jax` |

Each function below returns a frozen `kp.Backbone`; set `KERAS_BACKEND`
before importing Keras. The wrapped classifier must return logits (or
probabilities, with `output_type="probabilities"`) and must be
differentiable with respect to its input while the explainer trains.

```python
import os
os.environ["KERAS_BACKEND"] = "torch"
import torchvision
import keras_ptame as kp

backbone = kp.blackbox.torch_module(
    torchvision.models.resnet50(weights="IMAGENET1K_V2"),
    preprocessor=kp.blackbox.torchvision_normalization(),
)
```
"""

import keras
from keras import ops

from keras_ptame.layers.backbone import Backbone
from keras_ptame.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD


def _require_backend(backend, what, wrapper):
    if keras.config.backend() != backend:
        raise ValueError(
            f"Explaining {what} needs the {backend} backend (it is wrapped with "
            f"`keras.layers.{wrapper}`). Received: KERAS_BACKEND="
            f"{keras.config.backend()!r}. Set `os.environ['KERAS_BACKEND'] = "
            f"'{backend}'` before importing keras (in a notebook, restart the "
            "runtime first)."
        )


def torchvision_normalization():
    """Rescales raw pixels to [0, 1] and normalises with the ImageNet statistics.

    The preprocessing that torchvision's ImageNet classifiers expect, as a
    Keras layer that works on every backend.
    """
    scale = [1.0 / (255.0 * s) for s in IMAGENET_STD]
    offset = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    return keras.layers.Rescaling(scale=scale, offset=offset, name="imagenet_norm")


# === TensorFlow SavedModel ===


@keras.saving.register_keras_serializable(package="keras_ptame")
class SavedModelClassifier(keras.layers.Layer):
    """A TensorFlow SavedModel used as a classifier. TensorFlow backend only.

    Wraps `keras.layers.TFSMLayer` and picks one output of the endpoint when
    it returns a dict (as `serving_default` signatures do).

    Args:
        filepath: str. The SavedModel directory.
        call_endpoint: str. The endpoint (a signature or a `tf.function`
            attribute) to call. Defaults to `"serving_default"`.
        output_key: optional str. The output to use when the endpoint
            returns a dict. Defaults to `None` (the only output; an error if
            there are several).
        **kwargs: Standard layer arguments.

    Call arguments:
        images: `(B, H, W, 3)` images as the SavedModel expects them.

    Examples:
    ```python
    import keras_ptame as kp

    backbone = kp.Backbone(kp.blackbox.SavedModelClassifier("classifier/"))
    ```
    """

    def __init__(
        self, filepath, call_endpoint="serving_default", output_key=None, **kwargs
    ):
        _require_backend("tensorflow", "a TensorFlow SavedModel", "TFSMLayer")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.filepath = str(filepath)
        self.call_endpoint = call_endpoint
        self.output_key = output_key
        self.saved_model = keras.layers.TFSMLayer(
            self.filepath, call_endpoint=call_endpoint, trainable=False
        )

    def call(self, images):
        outputs = self.saved_model(images)
        if not isinstance(outputs, dict):
            return outputs
        if self.output_key is not None:
            if self.output_key not in outputs:
                raise ValueError(
                    f"`output_key` is not an output of the SavedModel endpoint "
                    f"{self.call_endpoint!r}. Received: output_key="
                    f"{self.output_key!r}; its outputs are {sorted(outputs)}"
                )
            return outputs[self.output_key]
        if len(outputs) != 1:
            raise ValueError(
                f"The SavedModel endpoint {self.call_endpoint!r} returns several "
                f"outputs {sorted(outputs)}; pick the scores with `output_key`."
            )
        return next(iter(outputs.values()))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filepath": self.filepath,
                "call_endpoint": self.call_endpoint,
                "output_key": self.output_key,
            }
        )
        return config


def saved_model(
    filepath,
    call_endpoint="serving_default",
    output_key=None,
    preprocessor=None,
    output_type="logits",
    **kwargs,
):
    """A TensorFlow SavedModel as the `Backbone`. TensorFlow backend only.

    Args:
        filepath: str. The SavedModel directory (e.g. written by
            `tf.saved_model.save` or `model.export`).
        call_endpoint: str. The endpoint to call. Defaults to
            `"serving_default"`.
        output_key: optional str. The output holding the scores when the
            endpoint returns a dict. Defaults to `None`.
        preprocessor: optional Keras layer or callable applied to the raw
            pixels first (masking happens before it). Defaults to `None`.
        output_type: `"logits"` or `"probabilities"`. Defaults to
            `"logits"`.
        **kwargs: passed to `Backbone`.

    Returns:
        A frozen `kp.Backbone`.
    """
    classifier = SavedModelClassifier(
        filepath, call_endpoint=call_endpoint, output_key=output_key
    )
    return Backbone(
        classifier, preprocessor=preprocessor, output_type=output_type, **kwargs
    )


# === PyTorch nn.Module ===


@keras.saving.register_keras_serializable(package="keras_ptame")
class TorchClassifier(keras.layers.Layer):
    """A PyTorch `nn.Module` used as a classifier. Torch backend only.

    Wraps `keras.layers.TorchModuleWrapper`, puts the module in eval mode
    with its parameters frozen (gradients still flow to the input), and
    feeds it channels-first images, as torch models expect.

    Saving an explainer that holds one pickles the module, so it loads only
    with `safe_mode=False`.

    Args:
        module: a `torch.nn.Module` (or a `TorchModuleWrapper`) mapping
            images to `(B, num_classes)` scores.
        channels_first: bool. Whether the module takes `(B, 3, H, W)`
            images. Defaults to `True`.
        **kwargs: Standard layer arguments.

    Call arguments:
        images: `(B, H, W, 3)` images (channels last), preprocessed.
    """

    def __init__(self, module, channels_first=True, **kwargs):
        _require_backend("torch", "a PyTorch module", "TorchModuleWrapper")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if not isinstance(module, keras.layers.TorchModuleWrapper):
            import torch

            if not isinstance(module, torch.nn.Module):
                raise ValueError(
                    "`module` must be a `torch.nn.Module`. "
                    f"Received: module={type(module).__name__}"
                )
            # Frozen before wrapping, so that the wrapper tracks the
            # parameters as non-trainable and autograd skips their gradients.
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
            module = keras.layers.TorchModuleWrapper(module, name="module")
        self.module = module
        self.channels_first = channels_first

    def call(self, images):
        if self.channels_first:
            images = ops.transpose(images, (0, 3, 1, 2))
        return self.module(images, training=False)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "module": keras.saving.serialize_keras_object(self.module),
                "channels_first": self.channels_first,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["module"] = keras.saving.deserialize_keras_object(config["module"])
        return cls(**config)


def torch_module(
    module, preprocessor=None, output_type="logits", channels_first=True, **kwargs
):
    """A PyTorch `nn.Module` as the `Backbone`. Torch backend only.

    Args:
        module: a `torch.nn.Module` returning `(B, num_classes)` scores,
            e.g. a torchvision classifier.
        preprocessor: optional Keras layer or callable applied to the raw
            pixels first, e.g. `torchvision_normalization()`. Defaults to
            `None`.
        output_type: `"logits"` or `"probabilities"`. Defaults to
            `"logits"`.
        channels_first: bool. Whether the module takes `(B, 3, H, W)`.
            Defaults to `True`.
        **kwargs: passed to `Backbone`.

    Returns:
        A frozen `kp.Backbone`.
    """
    classifier = TorchClassifier(module, channels_first=channels_first)
    return Backbone(
        classifier, preprocessor=preprocessor, output_type=output_type, **kwargs
    )


# === JAX function ===


def jax_function(
    call_fn, params=None, state=None, preprocessor=None, output_type="logits", **kwargs
):
    """A JAX function as the `Backbone`. JAX backend only.

    Args:
        call_fn: a function of `(params, inputs)` (or any signature that
            `keras.layers.JaxLayer` accepts: `params`, `state`, `rng`,
            `inputs`, `training`) returning `(B, num_classes)` scores, e.g.
            a Flax module's `apply`.
        params: the function's parameters (a pytree of arrays). They are
            frozen. Defaults to `None`.
        state: optional non-trainable state. Defaults to `None`.
        preprocessor: optional Keras layer or callable applied to the raw
            pixels first. Defaults to `None`.
        output_type: `"logits"` or `"probabilities"`. Defaults to
            `"logits"`.
        **kwargs: passed to `Backbone`.

    Returns:
        A frozen `kp.Backbone`.

    Examples:
    ```python
    import os
    os.environ["KERAS_BACKEND"] = "jax"
    import jax.numpy as jnp
    import keras_ptame as kp

    def classify(params, images):
        return jnp.mean(images, axis=(1, 2)) @ params["w"]

    backbone = kp.blackbox.jax_function(classify, {"w": jnp.ones((3, 10))})
    ```
    """
    _require_backend("jax", "a JAX function", "JaxLayer")
    classifier = keras.layers.JaxLayer(
        call_fn, params=params, state=state, trainable=False, name="jax_classifier"
    )
    return Backbone(
        classifier, preprocessor=preprocessor, output_type=output_type, **kwargs
    )
