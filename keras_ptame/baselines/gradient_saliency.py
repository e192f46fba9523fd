import numpy as np

from keras_ptame.baselines.classifier_explainer import ClassifierExplainer
from keras_ptame.baselines.gradients import input_gradients


class GradientSaliency(ClassifierExplainer):
    """Plain gradient saliency (Simonyan et al. 2014).

    The map of class t is the largest absolute gradient of t's logit with
    respect to the pixel's three colour values, min-max normalised to [0, 1].
    Works for any differentiable classifier, not only Keras models.

    Args:
        classifier: a `Backbone`, or a Keras model or callable returning
            logits.
        preprocessor: optional Keras layer or callable applied to the raw
            pixels before `classifier`. Defaults to `None`.
        batch_size: int. Images per gradient pass. Defaults to `32`.

    Examples:
    ```python
    import keras, numpy as np
    from keras_ptame.baselines import GradientSaliency

    classifier = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    images = np.random.randint(0, 256, (2, 16, 16, 3)).astype("uint8")
    maps = GradientSaliency(classifier).explain(images)   # (2, 16, 16)
    ```
    """

    def saliency(self, images, classes):
        return np.concatenate(
            [
                np.abs(input_gradients(self.backbone, batch, labels)).max(axis=-1)
                for batch, labels in self.batches(images, classes)
            ]
        )
