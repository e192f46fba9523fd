import keras
import numpy as np
from keras import ops

from keras_ptame.baselines.classifier_explainer import ClassifierExplainer
from keras_ptame.baselines.gradients import layer_gradients
from keras_ptame.layers.backbone import Backbone


class GradCAM(ClassifierExplainer):
    """Grad-CAM (Selvaraju et al. 2017) for a Keras classifier, by layer name.

    The map of class t is `ReLU(sum_k a_k A_k)`, where `A_k` are the channels
    of the named layer's output and `a_k` the spatial mean of the gradient of
    t's logit with respect to `A_k`; it is upsampled bilinearly to the image
    and min-max normalised to [0, 1].

    Args:
        classifier: a functional or sequential Keras model returning logits,
            or a `Backbone` around one (its preprocessor is used).
        layer_name: str. The layer whose output is explained, usually the
            last convolutional stage. Its output must be `(B, h, w, C)`.
        preprocessor: optional Keras layer or callable applied to the raw
            pixels before `classifier`. Defaults to `None`.
        batch_size: int. Images per gradient pass. Defaults to `32`.

    Examples:
    ```python
    import keras, numpy as np
    from keras_ptame.baselines import GradCAM

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
    logits = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    classifier = keras.Model(inputs, logits)

    images = np.random.randint(0, 256, (2, 16, 16, 3)).astype("uint8")
    maps = GradCAM(classifier, "conv").explain(images)   # (2, 16, 16) in [0, 1]
    ```
    """

    def __init__(self, classifier, layer_name, preprocessor=None, batch_size=32):
        if isinstance(classifier, Backbone):
            if preprocessor is None:
                preprocessor = classifier.preprocessor
            classifier = classifier.classifier
        if not isinstance(classifier, keras.Model) or not hasattr(classifier, "inputs"):
            raise ValueError(
                "`classifier` must be a functional or sequential Keras model so that "
                f"its layers can be tapped. Received: classifier={classifier!r}"
            )
        try:
            layer = classifier.get_layer(layer_name)
        except ValueError as error:
            names = [layer.name for layer in classifier.layers]
            raise ValueError(
                f"`layer_name` must name a layer of the classifier. Received: "
                f"layer_name={layer_name!r}; its layers are {names}"
            ) from error
        if len(layer.output.shape) != 4:
            raise ValueError(
                "`layer_name` must name a layer with a spatial output (B, h, w, C). "
                f"Received: {layer_name!r} with output shape {layer.output.shape}"
            )
        super().__init__(classifier, preprocessor, batch_size)
        self.classifier = classifier
        self.layer_name = layer_name
        self.layer = layer
        self.preprocessor = preprocessor

    def saliency(self, images, classes):
        maps = []
        for batch, labels in self.batches(images, classes):
            activations, gradients = layer_gradients(
                self.classifier, self.layer, batch, labels, self.preprocessor
            )
            weights = gradients.mean(axis=(1, 2), keepdims=True)
            cam = np.maximum((weights * activations).sum(axis=-1), 0.0)
            upsampled = ops.image.resize(
                ops.convert_to_tensor(cam[..., None].astype("float32")),
                images.shape[1:3],
                interpolation="bilinear",
            )
            maps.append(ops.convert_to_numpy(upsampled)[..., 0])
        return np.concatenate(maps, axis=0)
