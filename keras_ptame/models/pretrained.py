"""Explainers that come trained: the authors' checkpoints and explainer presets."""

from keras_ptame.models.explainer_preset import (
    load_explainer_preset,
    save_explainer_preset,
)
from keras_ptame.models.official_checkpoint import load_official_checkpoint


class Pretrained:
    """What `PTAME` offers to load trained explainers and to share them.

    A mixin rather than methods written in `ptame.py`: the readers and
    writers live in `official_checkpoint.py` and `explainer_preset.py`, and
    this class is only their entry points on the model.
    """

    @classmethod
    def from_official_checkpoint(cls, checkpoint, image_size=224, **kwargs):
        """Imports an explainer that the P-TAME authors trained and published.

        Rebuilds their PyTorch Lightning checkpoint (VGG-16, ResNet-50 or
        ViT-B/16) on any backend, with the authors' preprocessing and
        decoder numerics, so raw pixels go in; reading it needs PyTorch. See
        `keras_ptame.models.official_checkpoint`.

        Args:
            checkpoint: a path to the checkpoint (`.ckpt`), to a file holding
                its state dict alone, or the state dict itself.
            image_size: int. The square size of the images the explainer
                takes. Defaults to `224` (the authors').
            **kwargs: passed to the constructor (`name`, ...).

        Examples:
        ```python
        explainer = kp.PTAME.from_official_checkpoint("resnet50.ckpt")
        maps = explainer.explain(images)   # raw pixels (N, 224, 224, 3)
        ```
        """
        return load_official_checkpoint(
            cls, checkpoint, image_size=image_size, **kwargs
        )

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

    def save_to_preset(self, preset_dir):
        """Writes this explainer as a keras-hub-style preset folder.

        Config (classifier and auxiliary network inside), weights and
        metadata; `preset_dir` is replaced. See
        `keras_ptame.models.explainer_preset`.

        Args:
            preset_dir: str or path-like. The folder to write.
        """
        save_explainer_preset(self, preset_dir)
