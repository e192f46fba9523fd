"""Model randomisation sanity check (Adebayo et al. 2018)."""

import keras
import numpy as np
from scipy import stats

from keras_ptame.layers.backbone import Backbone
from keras_ptame.models.classifier_scores import as_backbone, explained_classes
from keras_ptame.utils.maps import check_maps
from keras_ptame.utils.validation import check_images


def rank_correlation(maps_a, maps_b):
    """Spearman rank correlation between paired maps, one value per pair.

    Args:
        maps_a: array `(N, H, W)`.
        maps_b: array `(N, H, W)`.

    Returns:
        float32 numpy array `(N,)` in [-1, 1]; 0 where a map is constant
        (its ranks carry no order).
    """
    maps_a = np.asarray(maps_a, dtype=np.float64)
    maps_b = np.asarray(maps_b, dtype=np.float64)
    if maps_a.shape != maps_b.shape or maps_a.ndim != 3:
        raise ValueError(
            "`maps_a` and `maps_b` must both have shape (N, H, W). "
            f"Received: {maps_a.shape} and {maps_b.shape}"
        )
    ranks_a = stats.rankdata(maps_a.reshape(len(maps_a), -1), axis=1)
    ranks_b = stats.rankdata(maps_b.reshape(len(maps_b), -1), axis=1)
    ranks_a -= ranks_a.mean(axis=1, keepdims=True)
    ranks_b -= ranks_b.mean(axis=1, keepdims=True)
    norm = np.sqrt((ranks_a**2).sum(axis=1) * (ranks_b**2).sum(axis=1))
    covariance = (ranks_a * ranks_b).sum(axis=1)
    return np.where(norm > 0, covariance / np.where(norm > 0, norm, 1.0), 0.0).astype(
        np.float32
    )


def randomize_weights(model, seed=None):
    """A copy of a Keras model with the same architecture and fresh weights.

    Every layer is rebuilt from its config, so its weights are drawn again
    from its own initialisers (BatchNorm statistics reset too). The model
    itself is untouched.

    Args:
        model: a Keras model (functional or sequential), or a `Backbone`
            around one (its preprocessor is kept).
        seed: optional int. If given, Keras' global random seed is set to it
            first (`keras.utils.set_random_seed`), which makes the copy
            reproducible; pick one other than the seed the model was built
            under, or the "random" weights are the model's own initial ones.
            Defaults to `None` (draw from the current random state).

    Returns:
        The randomised copy (a `Backbone` if one was given).
    """
    if isinstance(model, Backbone):
        return Backbone(
            randomize_weights(model.classifier, seed),
            preprocessor=model.preprocessor,
            output_type=model.output_type,
        )
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a Keras model to be randomised. Received: model={model!r}"
        )
    if seed is not None:
        # Initialisers without their own seed draw from the global generator.
        keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)


def model_randomization(make_explainer, classifier, images, classes=None, seed=None):
    """Maps of a trained classifier against those of a randomised copy.

    An explanation that reflects the classifier must change when the
    classifier's weights are replaced by random ones; a high rank
    correlation between the two sets of maps is a failed check. Both maps
    explain the same class: the trained classifier's prediction (or
    `classes`).

    Args:
        make_explainer: callable taking a classifier (a Keras model, or a
            `Backbone` if one was given) and returning an object with
            `explain(images, classes=None)`. For a trained explainer such as
            P-TAME it must train a new one on the classifier it is given.
        classifier: a Keras model or a `Backbone`.
        images: array `(N, H, W, 3)` of raw pixels in [0, 255].
        classes: optional int array `(N,)`. Defaults to `None` (the trained
            classifier's prediction).
        seed: optional int. Seed of the random weights (see
            `randomize_weights`). Defaults to `None`.

    Returns:
        A dict: `"rank_correlation"` `(N,)` and its `"mean"`.

    Examples:
    ```python
    import keras, numpy as np
    from keras_ptame.baselines import GradientSaliency
    from keras_ptame.metrics import model_randomization

    classifier = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    images = np.random.randint(0, 256, (2, 16, 16, 3)).astype("uint8")
    check = model_randomization(GradientSaliency, classifier, images)
    check["mean"]   # near 0 for an explanation that depends on the weights
    ```
    """
    images = check_images(images)
    classes = explained_classes(as_backbone(classifier), images, classes)
    trained = check_maps(make_explainer(classifier).explain(images, classes), images)
    randomized = randomize_weights(classifier, seed)
    random_maps = check_maps(
        make_explainer(randomized).explain(images, classes), images
    )
    correlation = rank_correlation(trained, random_maps)
    return {"rank_correlation": correlation, "mean": float(correlation.mean())}
