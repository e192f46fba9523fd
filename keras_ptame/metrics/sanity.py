"""Sanity checks of saliency maps (Adebayo et al. 2018): the maps of a
trained classifier against those of randomised ones, by rank correlation and
SSIM.

The model randomisation checks live here (the whole classifier at once,
`model_randomization`) and in `keras_ptame.metrics.cascading` (layer by
layer from the top, `cascading_randomization`); the data randomisation check
is `data_randomization`.
"""

import keras
import numpy as np
from scipy import ndimage, stats

from keras_ptame.layers.backbone import Backbone
from keras_ptame.models.classifier_scores import as_backbone, explained_classes
from keras_ptame.utils.maps import check_maps
from keras_ptame.utils.validation import check_images

# scikit-image's `structural_similarity` defaults: a 7x7 uniform window, its
# constants, and maps in [0, 1] (`data_range=1`).
SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# How far outside [0, 1] a map's float rounding may stray for SSIM.
_RANGE_TOLERANCE = 1e-5


def _paired(maps_a, maps_b):
    """Both batches as float64 `(N, H, W)`, checked to have the same shape."""
    maps_a = np.asarray(maps_a, dtype=np.float64)
    maps_b = np.asarray(maps_b, dtype=np.float64)
    if maps_a.shape != maps_b.shape or maps_a.ndim != 3:
        raise ValueError(
            "`maps_a` and `maps_b` must both have shape (N, H, W). "
            f"Received: {maps_a.shape} and {maps_b.shape}"
        )
    return maps_a, maps_b


def rank_correlation(maps_a, maps_b):
    """Spearman rank correlation between paired maps, one value per pair.

    For non-negative maps, such as every explainer's here (in [0, 1]), the
    rank correlation of the absolute values that Adebayo et al. also report
    is the same number, so it is not computed separately.

    Args:
        maps_a: array `(N, H, W)`.
        maps_b: array `(N, H, W)`.

    Returns:
        float32 numpy array `(N,)` in [-1, 1]; 0 where a map is constant
        (its ranks carry no order).
    """
    maps_a, maps_b = _paired(maps_a, maps_b)
    ranks_a = stats.rankdata(maps_a.reshape(len(maps_a), -1), axis=1)
    ranks_b = stats.rankdata(maps_b.reshape(len(maps_b), -1), axis=1)
    ranks_a -= ranks_a.mean(axis=1, keepdims=True)
    ranks_b -= ranks_b.mean(axis=1, keepdims=True)
    norm = np.sqrt((ranks_a**2).sum(axis=1) * (ranks_b**2).sum(axis=1))
    covariance = (ranks_a * ranks_b).sum(axis=1)
    return np.where(norm > 0, covariance / np.where(norm > 0, norm, 1.0), 0.0).astype(
        np.float32
    )


def structural_similarity(maps_a, maps_b):
    """Mean structural similarity (SSIM, Wang et al. 2004) of paired maps.

    It follows `skimage.metrics.structural_similarity`'s defaults for 2-D
    float images with `data_range=1`: a 7x7 uniform window (scipy's
    `uniform_filter`, reflected at the borders), `K1=0.01`, `K2=0.03`, the
    sample covariance (each local variance and covariance times 49/48), and
    the mean of the SSIM image over its valid region (3 pixels cropped from
    every border). Computed in float64 (scikit-image computes in the
    input's float type, so float32 maps may differ from it by float32
    rounding).

    Args:
        maps_a: array `(N, H, W)` of maps in [0, 1], `H` and `W` at least 7.
        maps_b: array `(N, H, W)` of maps in [0, 1].

    Returns:
        float32 numpy array `(N,)`, at most 1 (identical maps).

    Examples:
    ```python
    import numpy as np
    from keras_ptame.metrics import structural_similarity

    maps = np.random.default_rng(0).random((2, 16, 16))
    structural_similarity(maps, maps)        # [1., 1.]
    structural_similarity(maps, 1 - maps)    # negative: anticorrelated
    ```
    """
    maps_a, maps_b = _paired(maps_a, maps_b)
    if min(maps_a.shape[1:]) < SSIM_WINDOW:
        raise ValueError(
            f"`maps_a` and `maps_b` must be at least {SSIM_WINDOW}x{SSIM_WINDOW} "
            f"for SSIM's window. Received: maps of shape {maps_a.shape}"
        )
    for name, maps in (("maps_a", maps_a), ("maps_b", maps_b)):
        if not np.isfinite(maps).all() or not (
            -_RANGE_TOLERANCE <= maps.min() and maps.max() <= 1 + _RANGE_TOLERANCE
        ):
            raise ValueError(
                f"`{name}` must be finite maps in [0, 1] (SSIM's data range is "
                f"1). Received: values in [{maps.min()}, {maps.max()}]"
            )

    def local_mean(x):
        return ndimage.uniform_filter(x, size=(1, SSIM_WINDOW, SSIM_WINDOW))

    count = SSIM_WINDOW**2
    sample = count / (count - 1)
    mean_a, mean_b = local_mean(maps_a), local_mean(maps_b)
    var_a = sample * (local_mean(maps_a * maps_a) - mean_a * mean_a)
    var_b = sample * (local_mean(maps_b * maps_b) - mean_b * mean_b)
    covariance = sample * (local_mean(maps_a * maps_b) - mean_a * mean_b)
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / (
        (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    )
    pad = (SSIM_WINDOW - 1) // 2
    return ssim[:, pad:-pad, pad:-pad].mean(axis=(1, 2)).astype(np.float32)


def similarities(reference, maps):
    """Rank correlation and SSIM of `maps` with `reference`, per map and mean.

    Args:
        reference: array `(N, H, W)` of maps in [0, 1] (the trained
            classifier's).
        maps: array `(N, H, W)` of maps in [0, 1] (a randomised one's).

    Returns:
        A dict: `"rank_correlation"` and `"ssim"`, float32 `(N,)`, and
        their means `"mean_rank_correlation"` and `"mean_ssim"` (floats).
    """
    correlation = rank_correlation(reference, maps)
    ssim = structural_similarity(reference, maps)
    return {
        "rank_correlation": correlation,
        "ssim": ssim,
        "mean_rank_correlation": float(correlation.mean()),
        "mean_ssim": float(ssim.mean()),
    }


def network_of(classifier, name="classifier"):
    """The Keras model inside `classifier` (itself, or a `Backbone`'s)."""
    network = classifier.classifier if isinstance(classifier, Backbone) else classifier
    if not isinstance(network, keras.Model):
        raise ValueError(
            f"`{name}` must be a Keras model, or a `Backbone` around one, to be "
            f"randomised. Received: {name}={classifier!r}"
        )
    return network


def rewrap(classifier, network):
    """`network` in a `Backbone` like `classifier` if it is one, else itself."""
    if not isinstance(classifier, Backbone):
        return network
    return Backbone(
        network,
        preprocessor=classifier.preprocessor,
        output_type=classifier.output_type,
        label_threshold=classifier.label_threshold,
        max_labels=classifier.max_labels,
    )


def randomize_weights(model, seed=None):
    """A copy of a Keras model with the same architecture and fresh weights.

    Every layer is rebuilt from its config, so its weights are drawn again
    from its own initialisers (BatchNorm statistics reset too). The model
    itself is untouched.

    Args:
        model: a Keras model (functional or sequential), or a `Backbone`
            around one (its preprocessor and settings are kept).
        seed: optional int. If given, Keras' global random seed is set to it
            first (`keras.utils.set_random_seed`), which makes the copy
            reproducible; pick one other than the seed the model was built
            under, or the "random" weights are the model's own initial ones.
            Defaults to `None` (draw from the current random state).

    Returns:
        The randomised copy (a `Backbone` if one was given).
    """
    network = network_of(model, "model")
    if seed is not None:
        # Initialisers without their own seed draw from the global generator.
        keras.utils.set_random_seed(seed)
    return rewrap(model, keras.models.clone_model(network))


def explain_checked(make_explainer, classifier, images, classes):
    """`make_explainer(classifier).explain(images, classes)`, checked maps."""
    explainer = make_explainer(classifier)
    if not callable(getattr(explainer, "explain", None)):
        raise ValueError(
            "`make_explainer` must return an object with `explain(images, "
            f"classes)`. Received: {explainer!r}"
        )
    return check_maps(explainer.explain(images, classes), images)


def model_randomization(make_explainer, classifier, images, classes=None, seed=None):
    """Maps of a trained classifier against those of a randomised copy.

    An explanation that reflects the classifier must change when the
    classifier's weights are replaced by random ones; a high rank
    correlation (or SSIM) between the two sets of maps is a failed check.
    Both maps explain the same class: the trained classifier's prediction
    (or `classes`). `keras_ptame.metrics.cascading_randomization`
    randomises the layers one by one from the top instead.

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
        A dict: `"rank_correlation"` and `"ssim"` (`structural_similarity`),
        float32 `(N,)`, their means `"mean_rank_correlation"` and
        `"mean_ssim"`, and `"mean"` (the mean rank correlation again).

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
    randomized = randomize_weights(classifier, seed)
    classes = explained_classes(as_backbone(classifier), images, classes)
    trained = explain_checked(make_explainer, classifier, images, classes)
    random_maps = explain_checked(make_explainer, randomized, images, classes)
    result = similarities(trained, random_maps)
    return {**result, "mean": result["mean_rank_correlation"]}


def data_randomization(
    make_explainer, classifier, random_label_classifier, images, classes=None
):
    """Maps of a classifier against those of one trained on permuted labels.

    Adebayo et al.'s data randomisation test: the same architecture trained
    on the same images with their labels randomly permuted has learnt
    nothing about the images' content, so maps that reflect what a
    classifier learnt must differ between the two; a high rank correlation
    (or SSIM) is a failed check. Both maps explain the same class: the
    true-label classifier's prediction (or `classes`). Training the
    random-label classifier is the caller's: it should fit its permuted
    training labels (report its training accuracy), or it is merely an
    undertrained network and the check says less.

    Args:
        make_explainer: callable taking a classifier and returning an
            object with `explain(images, classes=None)` (for P-TAME, one
            trained on that classifier).
        classifier: a Keras model or a `Backbone`, trained on true labels.
        random_label_classifier: the same kind, trained on permuted labels,
            with as many classes.
        images: array `(N, H, W, 3)` of raw pixels in [0, 255].
        classes: optional int array `(N,)`. Defaults to `None` (the
            true-label classifier's prediction).

    Returns:
        A dict: `"rank_correlation"` and `"ssim"`, float32 `(N,)`, and their
        means `"mean_rank_correlation"` and `"mean_ssim"`.

    Examples:
    ```python
    from keras_ptame.baselines import GradientSaliency
    from keras_ptame.metrics import data_randomization

    check = data_randomization(GradientSaliency, classifier, shuffled, images)
    check["mean_ssim"]   # low for maps that depend on what was learnt
    ```
    """
    images = check_images(images)
    for name, model in (
        ("classifier", classifier),
        ("random_label_classifier", random_label_classifier),
    ):
        if not isinstance(model, (keras.Model, Backbone)):
            raise ValueError(
                f"`{name}` must be a Keras model or a `Backbone`. "
                f"Received: {name}={model!r}"
            )
    classes = explained_classes(as_backbone(classifier), images, classes)
    # The same classes must exist for the random-label classifier.
    explained_classes(as_backbone(random_label_classifier), images, classes)
    trained = explain_checked(make_explainer, classifier, images, classes)
    shuffled = explain_checked(make_explainer, random_label_classifier, images, classes)
    return similarities(trained, shuffled)
