"""Cascading model randomisation (Adebayo et al. 2018): a classifier's
weighted layers re-initialised one by one from the top, the maps compared
with the trained classifier's at each step."""

import keras
import numpy as np

from keras_ptame.layers.backbone import Backbone
from keras_ptame.metrics.sanity import (
    explain_checked,
    network_of,
    randomize_weights,
    rewrap,
    similarities,
)
from keras_ptame.models.classifier_scores import as_backbone, explained_classes
from keras_ptame.utils.validation import check_images


def _weighted_layers(model, prefix=""):
    """`(name, layer)` of every layer with weights, in the model's layer order.

    A nested Keras model (a keras-hub backbone inside a functional model, a
    `Backbone` layer's classifier) is expanded in place into its own layers;
    names are paths, `"outer/inner"`. A layer used twice counts once.
    """
    found, seen = [], set()

    def visit(model, prefix):
        for layer in model.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            name = prefix + layer.name
            if isinstance(layer, Backbone) and isinstance(
                layer.classifier, keras.Model
            ):
                visit(layer.classifier, name + "/")
            elif isinstance(layer, keras.Model):
                visit(layer, name + "/")
            elif layer.weights:
                found.append((name, layer))

    visit(model, prefix)
    return found


def cascade_layers(classifier):
    """The layers `cascading_randomization` re-initialises, in its order.

    The classifier's layers that hold weights, nested models expanded into
    theirs, in the reverse of their order in the model (Keras lists a
    functional model's layers in topological order, inputs first): the
    output layer comes first. A layer with several variables (a
    BatchNormalization's scale, offset and statistics) is one step, and so
    is a layer with layers of its own that is not a Keras model (a keras-hub
    transformer block, say). A `Backbone`'s preprocessor is not part of the
    cascade, nor are variables a model holds outside its layers.

    Args:
        classifier: a Keras model, or a `Backbone` around one.

    Returns:
        A list of layer names (paths through nested models, `"outer/inner"`),
        top first.

    Examples:
    ```python
    import keras
    from keras_ptame.metrics import cascade_layers

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    cascade_layers(model)   # ["logits", "conv"]
    ```
    """
    return [name for name, _ in _weighted_layers(network_of(classifier))][::-1]


def _partly_random(network, random_network, count):
    """A copy of `network` whose top `count` weighted layers hold
    `random_network`'s weights (every variable of each layer)."""
    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    targets = _weighted_layers(copy)[::-1][:count]
    sources = _weighted_layers(random_network)[::-1][:count]
    if [name for name, _ in targets] != [name for name, _ in sources]:
        raise RuntimeError(
            "The copies of the classifier do not list the same layers: "
            f"{[name for name, _ in targets]} and {[name for name, _ in sources]}"
        )
    for (_, target), (_, source) in zip(targets, sources, strict=True):
        target.set_weights(source.get_weights())
    return copy


def _check_steps(steps, depth):
    """The steps: sorted distinct counts in [0, depth], 0 included."""
    if steps is None:
        return list(range(depth + 1))
    counts = np.asarray(steps).reshape(-1)
    if not np.issubdtype(counts.dtype, np.integer) or (
        counts.size and (counts.min() < 0 or counts.max() > depth)
    ):
        raise ValueError(
            f"`steps` must be counts of layers from 0 to {depth} (the "
            f"classifier's weighted layers). Received: steps={steps!r}"
        )
    return sorted({0, *(int(count) for count in counts)})


def cascading_randomization(
    make_explainer, classifier, images, classes=None, seed=None, steps=None
):
    """The cascading model randomisation check of Adebayo et al. (2018).

    The classifier's weighted layers (`cascade_layers`: nested models
    expanded, the reverse of their order in the model, the output layer
    first) are re-initialised cumulatively from the top: step 0 is the
    trained classifier, step k a copy whose top k weighted layers hold
    random weights. At each step a new explainer is made for that
    classifier (`make_explainer`; for P-TAME it trains one) and its maps are
    compared with step 0's by Spearman rank correlation and SSIM
    (`structural_similarity`). Maps that reflect what the classifier
    learnt drift away from step 0's as more layers are randomised; maps
    that stay similar fail the check. Every step explains the same class:
    the trained classifier's prediction (or `classes`). The rank
    correlation of absolute values in the paper equals the plain one for
    non-negative maps such as these, so it is not reported.

    The random weights come from one fully random copy
    (`randomize_weights(classifier, seed)`); step k copies the trained
    classifier and gives its top k layers that copy's weights, so every
    variable of a layer (BatchNormalization's statistics too) changes at
    once and step k's random layers are step k+1's. `classifier` itself is
    never modified; a `Backbone`'s preprocessor is kept.

    Args:
        make_explainer: callable taking a classifier (a Keras model, or a
            `Backbone` if one was given) and returning an object with
            `explain(images, classes=None)`. Called once per step.
        classifier: a Keras model, or a `Backbone` around one.
        images: array `(N, H, W, 3)` of raw pixels in [0, 255].
        classes: optional int array `(N,)`. Defaults to `None` (the trained
            classifier's prediction).
        seed: optional int. Seed of the random weights (see
            `randomize_weights`). Defaults to `None`.
        steps: optional list of the numbers of top layers randomised at each
            step (0 is always added), e.g. a few blocks of a deep network.
            Defaults to `None` (every count from 0 to the number of
            weighted layers).

    Returns:
        A dict: `"steps"` (the counts), `"layers"` (per step, the names of
        the layers randomised, top first), `"rank_correlation"` and
        `"ssim"` (float32 `(steps, N)`, step 0's row all ones), their
        per-step means `"mean_rank_correlation"` and `"mean_ssim"`
        (`(steps,)`), and `"classes"` (the classes explained).

    Examples:
    ```python
    from keras_ptame.baselines import GradientSaliency
    from keras_ptame.metrics import cascading_randomization

    check = cascading_randomization(GradientSaliency, classifier, images, seed=1)
    for names, ssim in zip(check["layers"], check["mean_ssim"]):
        print(len(names), ssim)   # falls as layers are randomised
    ```
    """
    images = check_images(images)
    network = network_of(classifier)
    names = cascade_layers(network)
    counts = _check_steps(steps, len(names))
    classes = explained_classes(as_backbone(classifier), images, classes)
    random_network = network_of(randomize_weights(network, seed))
    reference = explain_checked(make_explainer, classifier, images, classes)
    rows = []
    for count in counts:
        if count == 0:
            maps = reference
        else:
            step = rewrap(classifier, _partly_random(network, random_network, count))
            maps = explain_checked(make_explainer, step, images, classes)
        rows.append(similarities(reference, maps))
    per_image = {
        key: np.stack([row[key] for row in rows])
        for key in ("rank_correlation", "ssim")
    }
    return {
        "steps": counts,
        "layers": [names[:count] for count in counts],
        **per_image,
        "mean_rank_correlation": per_image["rank_correlation"].mean(axis=1),
        "mean_ssim": per_image["ssim"].mean(axis=1),
        "classes": classes,
    }
