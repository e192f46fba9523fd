"""What the notebooks run on without network: tiny presets and a mocked tfds.

```python
from keras_ptame.demo import offline_stand_ins

CLASSIFIER, AUXILIARY, IMAGE_SIZE, RESIZE, BATCH_SIZE, TRAIN_STEPS = (
    offline_stand_ins()
)
```
"""

import collections
import tempfile

from keras_ptame.demo.tiny_presets import save_tiny_presets

OfflineStandIns = collections.namedtuple(
    "OfflineStandIns",
    ["classifier", "auxiliary", "image_size", "resize", "batch_size", "train_steps"],
)

# ImageNet's classes, so that keras-hub's ImageNet names label the maps.
OFFLINE_NUM_CLASSES = 1000

# The entered `tfds.testing.mock_data` contexts: the patch ends when its
# context is collected, so it is kept for the rest of the process.
_TFDS_MOCKS = []


def offline_stand_ins(
    directory=None,
    image_size=32,
    resize=36,
    batch_size=4,
    train_steps=2,
    num_examples=16,
    mock_tfds=True,
):
    """Tiny random stand-ins for the notebooks' presets and Imagenette.

    Saves `save_tiny_presets` (two tiny random keras-hub ResNets with
    ImageNet's 1,000 classes) to `directory` and, with `mock_tfds`, patches
    tensorflow-datasets for the rest of the process
    (`tfds.testing.mock_data(num_examples=...)`: random images, nothing
    downloaded). What CI runs the notebooks on (`OFFLINE = True`); the maps
    of random models on random images show the pipeline, not P-TAME.

    Args:
        directory: optional str. The presets' folder. Defaults to `None` (a
            new temporary folder).
        image_size: int. Side of the images. Defaults to `32`.
        resize: int. Shorter side before cropping. Defaults to `36`.
        batch_size: int. Defaults to `4`.
        train_steps: int. Training batches of the short run. Defaults to `2`.
        num_examples: int. Images per mocked split. Defaults to `16`.
        mock_tfds: bool. Whether to patch tensorflow-datasets. Defaults to
            `True`.

    Returns:
        An `OfflineStandIns`: `(classifier, auxiliary, image_size, resize,
        batch_size, train_steps)`, the two preset folders for `from_preset`
        and the run's sizes.
    """
    if directory is None:
        directory = tempfile.mkdtemp(prefix="ptame_presets_")
    classifier, auxiliary = save_tiny_presets(
        directory, image_size, num_classes=OFFLINE_NUM_CLASSES
    )
    if mock_tfds:
        import tensorflow_datasets as tfds

        mock = tfds.testing.mock_data(num_examples=num_examples)
        mock.__enter__()
        _TFDS_MOCKS.append(mock)
    return OfflineStandIns(
        classifier, auxiliary, image_size, resize, batch_size, train_steps
    )
