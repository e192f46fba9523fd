"""From the decoder's raw maps to the maps `explain` returns, and their evidence.

The decoder is trained in sigmoid space: the image multiplied by the sigmoid
of its map must keep the classifier's prediction. A class the classifier
already predicts on the fill image itself (a black image, with the paper's
fill) needs nothing kept, and its cheapest map is empty: every pixel near 0.
Min-max normalising such a map stretches float noise into a full-contrast map
that looks as confident as any other. So each map reports its *evidence*, the
contrast of its sigmoid map (peak minus floor, in [0, 1]); a map whose
evidence is below the explainer's threshold comes back flat (all zeros) and
flagged, never stretched, unless asked (`zero_flat=False`: `kp.evaluate` asks,
to score the min-max maps the authors score).

`Explaining` also compiles `predict`'s step: under JAX, one that passes the
weights through untouched (`jax_predict_function`).
"""

import warnings
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
from keras import ops

from keras_ptame.models.explain_options import (
    check_explain_options,
    check_top_k,
    use_options,
)
from keras_ptame.models.fills import apply_fill, fill_components, resize_like
from keras_ptame.models.jax_predict import (
    jax_predict_function,
    nnx_enabled,
    weights_kept,
)
from keras_ptame.utils.validation import (
    check_classes,
    check_images,
    check_predict_options,
    pixel_range_problems,
    report_pixel_problems,
    unpack_inputs,
)

# On benchmarks/honest_maps.py, every class whose maps localise has a median
# evidence of 0.38 or more (10th percentile 0.31), every collapsed class 0.017
# or less (90th percentile 0.022). (An untrained explainer is warned about
# separately: its random maps' evidence depends on the initialisation's
# scale, about 0.09 to 0.13 for a tiny decoder with PyTorch's defaults.)
# Contrast, not the peak: a map saturated high everywhere (raw in [4, 10])
# has no sigmoid contrast either, though its min-max map, blind to a shift of
# the raw map, may localise. benchmarks/evidence_saturation.py found none on
# the demo's explainers (0 of 1,200 held-out maps, two classifiers): every
# map flagged there was empty (sigmoid peak below 0.1, the 24 and 106 maps
# of the class the fill image predicts), and their min-max maps never hit the
# object (pointing game 0.000, chance 0.08) though their raw range was wide
# (median 9.1 and 5.7). A peak rule flagged the same maps there, but would
# pass a constant mid-level map (0.5 everywhere, no evidence either), so the
# rule stays; `zero_flat=False` (and `kp.evaluate`, which scores min-max
# maps) still gives a flagged map's min-max map.
EVIDENCE_THRESHOLD = 0.1
# A class the fill image alone predicts more likely than all others together
# is warned about before training: keeping nothing already costs the
# cross-entropy term little (-log 0.5 = 0.7 nats at most), so its maps may
# collapse. (Less likely ones may too: the `empty` training metric shows it.)
FILL_WARNING_PROBABILITY = 0.5


def evidence(maps):
    """Peak minus floor of sigmoid maps `(B, h, w, ...)`, over `h` and `w`."""
    maps = ops.cast(maps, "float32")
    return ops.max(maps, axis=(1, 2)) - ops.min(maps, axis=(1, 2))


def finish_maps(
    raw,
    images,
    threshold,
    minmax,
    resolution="input",
    normalize="minmax",
    zero_flat=True,
    dtype="float32",
):
    """The outputs of `explain` from the decoder's raw maps `(B, h, w, K)`.

    Args:
        raw: the decoder's maps for the explained classes, before the
            sigmoid: `K` classes per image.
        images: the images explained, for the size of input-resolution maps.
        threshold: float. Evidence below it flags a map as flat.
        minmax: the min-max normalisation of `(B, h, w, K)` maps (the
            decoder's `normalize`, with the authors' epsilon).
        resolution: `"input"` or `"decoder"`, see `explain_options.RESOLUTIONS`.
        normalize: one of `explain_options.NORMALIZATIONS`.
        zero_flat: bool. Whether flat maps come back all zeros (not with
            `normalize="none"`, which returns the sigmoid maps as they are).
        dtype: `"float32"`, or `"uint8"`: the maps as `round(255 * maps)`.

    Returns:
        A dict: `maps` `(B, K, H, W)`, `evidence` `(B, K)` and `flat`
        `(B, K)` bool.
    """
    raw = ops.cast(raw, "float32")
    sigmoid = ops.sigmoid(raw)
    # Measured at the decoder's resolution: bilinear upsampling cannot add
    # contrast, and the flag must not depend on `resolution`.
    found = evidence(sigmoid)
    flat = ops.less(found, threshold)
    if normalize == "minmax":
        # The authors' order: normalised where the decoder draws, then
        # upsampled (bilinear weights sum to one: the maps stay in [0, 1]).
        maps = minmax(raw)
    else:
        maps = sigmoid if normalize == "none" else raw
    if resolution == "input":
        maps = resize_like(maps, images)
    if normalize == "sigmoid":
        # After upsampling: the pixels keep the order of the min-max maps.
        maps = ops.sigmoid(maps)
    elif normalize == "minmax_upsampled":
        maps = minmax(maps)
    if normalize != "none" and zero_flat:
        maps = ops.where(flat[:, None, None, :], ops.zeros_like(maps), maps)
    if dtype == "uint8":
        # Every normalisation's maps lie in [0, 1]; the clip only keeps the
        # cast defined for a value a rounding error puts outside.
        maps = ops.cast(ops.clip(ops.round(maps * 255.0), 0.0, 255.0), "uint8")
    maps = ops.transpose(maps, (0, 3, 1, 2))
    return {"maps": maps, "evidence": found, "flat": flat}


def classes_to_explain(logits, classes=None, top_k=None):
    """The classes `(B, K)` to explain, and whether one per image was asked.

    Args:
        logits: the classifier's scores `(B, C)`; its highest ones are
            explained when `classes` is `None`.
        classes: optional int `(B,)` (one class per image) or `(B, K)`.
        top_k: optional int (or scalar int tensor, when traced): explain
            each image's `top_k` highest-scoring classes, highest first.

    Returns:
        `(classes, single)`: int32 `(B, K)`, and whether the explanation
        comes back with one class per image (`(B,)` outputs, no `K` axis):
        for `classes` `(B,)` and for neither `classes` nor `top_k`.
    """
    if top_k is not None:
        # Ranked by logit, as the prediction is: any score that is an
        # increasing function of it (softmax, sigmoid) ranks them alike.
        return ops.cast(ops.top_k(logits, top_k, sorted=True)[1], "int32"), False
    if classes is None:
        return highest_class(logits)[:, None], True
    classes = ops.cast(classes, "int32")
    if len(classes.shape) == 1:
        return classes[:, None], True
    return classes, False


def highest_class(logits):
    """Each row's highest-scoring class `(B,)` int32, as numpy's `argmax`.

    The first of equal highest logits (a NaN counting as the highest). Made
    of comparisons and a minimum, so that an exported graph holds LiteRT's
    builtin operations only: Keras' TensorFlow `argmax` tells -0.0 from 0.0
    with bitwise operations, which LiteRT runs only with TensorFlow's own
    kernels.
    """
    count = ops.shape(logits)[-1]
    top = ops.max(logits, axis=-1, keepdims=True)
    highest = ops.logical_or(logits >= top, ops.not_equal(logits, logits))
    index = ops.arange(count, dtype="int32")
    return ops.min(ops.where(highest, index, count), axis=-1)


def in_classes(classes, chosen):
    """Bool, the shape of `classes`: whether each is one of `chosen` (a tuple)."""
    if not chosen:
        return ops.zeros(ops.shape(classes), "bool")
    chosen = ops.convert_to_tensor(np.asarray(chosen, "int32"))
    return ops.any(ops.equal(ops.cast(classes, "int32")[..., None], chosen), axis=-1)


def fill_predictions(backbone, images, fill):
    """What the classifier predicts on the fill alone, for `images`' fills.

    Returns:
        A dict `{class: probability}`: each class predicted on some image's
        fill (everything masked out), with its highest softmax probability.
    """
    images = ops.convert_to_tensor(np.asarray(images, "float32"))
    nothing = ops.zeros((*tuple(images.shape[:3]), 1), "float32")
    logits = backbone(apply_fill(images, nothing, fill))
    probabilities = ops.convert_to_numpy(backbone.probabilities(logits))
    found = {}
    for row in probabilities:
        top = int(np.argmax(row))
        found[top] = max(found.get(top, 0.0), float(row[top]))
    return found


def fill_warning(predictions, fill):
    """The warning for `fill_predictions` worth one, or `None`."""
    likely = {top: p for top, p in predictions.items() if p >= FILL_WARNING_PROBABILITY}
    if not likely:
        return None
    named = ", ".join(f"class {top} (probability {p:.2f})" for top, p in likely.items())
    return (
        f"On the fill image alone (fill={fill!r}, everything masked out) the "
        f"classifier predicts {named}. It needs no evidence for that: maps of "
        "these classes may come back flat (`flat` True, all zeros) instead of "
        "pointing at their objects. Watch the `empty` metric while training, "
        "and see the README, 'Honest maps'."
    )


class Explaining:
    """`PTAME`'s explanation API on numpy arrays: `explain`, `explain_outputs`.

    A mixin of `PTAME`, which gives `ensure_built`, `num_classes`, `predict`
    and, through `call`, `explain_batch` with the `_explain_options` set
    here. It also compiles `predict`'s step (`make_predict_function`).
    """

    def explain(
        self,
        images,
        classes=None,
        batch_size=32,
        verbose=0,
        resolution="input",
        normalize="minmax",
        zero_flat=True,
        top_k=None,
        dtype="float32",
    ):
        """Saliency maps: per image, of its predicted class, `classes` or top `k`.

        Args:
            images: array `(N, H, W, 3)` of raw pixels, uint8 or float in
                [0, 255].
            classes: optional int array `(N,)`: the class to explain for each
                image, or `(N, K)`: `K` classes for each (maps `(N, K, H, W)`).
                Defaults to `None` (the classifier's prediction).
            batch_size: int. Images per forward pass. Defaults to `32`.
            verbose: Keras verbosity of the progress bar. Defaults to `0`.
            resolution: str. `"input"`: maps at the images' size;
                `"decoder"`: at the decoder's (a quarter of the side with
                ResNet-18 features), a sixteenth of the data to copy off an
                accelerator. Defaults to `"input"`.
            normalize: str. `"minmax"`, the authors' inference (for every
                map not flagged `flat`, or all with `zero_flat=False`): each
                raw map min-max normalised to [0, 1] at the decoder's
                resolution, then upsampled bilinearly (half-pixel centres)
                to the images' size; its values stay in [0, 1] but need
                not reach 0 and 1 exactly, where a map's extremes fall
                between the decoder's pixel centres. `"minmax_upsampled"`, keras_ptame's
                earlier default: upsampled first, then min-max normalised,
                so that every map spans [0, 1] exactly (the same pixel order
                as `"minmax"`: both are increasing affine functions of the
                upsampled raw map). `"sigmoid"`: the sigmoid of the
                upsampled raw maps, the mask the decoder was trained to keep
                the class with (background near 0, the same pixel order).
                `"none"`: the sigmoid maps the decoder was trained with, as
                they are. Defaults to `"minmax"`.
            zero_flat: bool. Whether a map that found no evidence (`flat`,
                see `explain_outputs`) comes back all zeros, rather than
                normalised as any other (the authors' inference, which
                stretches its noise to look as confident as a real map).
                Ignored with `normalize="none"`. Defaults to `True`.
            top_k: optional int in [1, num_classes]: explain each image's
                `top_k` highest-scoring classes, highest first, in the same
                single pass of each network (the decoder draws `top_k` maps
                from the same features). The maps come back `(N, top_k, H,
                W)`, also for `top_k=1` (`(N, 1, H, W)`: the same maps as
                the default's `(N, H, W)`). Not with `classes`. Defaults to
                `None` (one class per image).
            dtype: `"float32"` (or `np.float32`): maps in [0, 1];
                `"uint8"` (or `np.uint8`): the same maps as
                `round(255 * maps)`, computed where the maps are: a quarter
                of the bytes to copy off an accelerator, to keep or to send.
                Defaults to `"float32"`.

        Returns:
            numpy `(N, H, W)` maps, float32 in [0, 1] or uint8 in [0, 255]
            (`(N, h, w)` at the decoder's resolution); `(N, K, H, W)` for
            `K` classes per image.

        Examples:
        ```python
        maps = explainer.explain(images)                # (N, H, W)
        top = explainer.explain(images, top_k=5)        # (N, 5, H, W)
        some = explainer.explain(images, classes=[[3, 7]] * len(images))
        lean = explainer.explain(images, dtype="uint8")  # uint8 (N, H, W)
        ```
        """
        outputs = self.explain_outputs(
            images,
            classes,
            batch_size,
            verbose,
            resolution,
            normalize,
            zero_flat,
            top_k,
            dtype,
        )
        return outputs["maps"]

    def explain_outputs(
        self,
        images,
        classes=None,
        batch_size=32,
        verbose=0,
        resolution="input",
        normalize="minmax",
        zero_flat=True,
        top_k=None,
        dtype="float32",
    ):
        """Like `explain`, but returns a dict of numpy arrays.

        With `K` classes per image (`classes` `(N, K)` or `top_k=K`), every
        output below gains an axis of `K` after the first: `classes`,
        `scores`, `evidence`, `flat` and `misranked` are `(N, K)`, `maps`
        `(N, K, H, W)`; the `k`-th of each is what a call with `classes`
        `(N,)` set to the `k`-th classes would give.

        Returns:
            `classes` `(N,)` the classes explained; `scores` `(N,)` the
            softmax probability of each; `maps` as `explain` returns them;
            `evidence` `(N,)` float in [0, 1], the contrast (peak minus
            floor) of each sigmoid map; `flat` `(N,)` bool, `evidence` below
            `evidence_threshold`: the classifier kept its prediction with
            (almost) nothing of the image, so the map holds no evidence and
            is returned all zeros rather than stretched noise (unless
            `zero_flat=False`); `misranked` `(N,)` bool, a map (not flat) of
            a class in `misranked_classes`: on the images `fit` checked, its
            maps did not carry the class (removing their top half cost it no
            more than removing their bottom half, see
            `keras_ptame/models/removal_check.py`): typically they cover the
            background, not the object. The map is returned as it is.
        """
        # Every argument is checked before anything changes: a refused call
        # leaves the explainer as it was.
        resolution, normalize, zero_flat, dtype = check_explain_options(
            resolution, normalize, zero_flat, dtype
        )
        check_top_k(top_k, classes, self.num_classes)
        check_predict_options(batch_size, verbose)
        images = check_images(images, pixels=False)
        self.ensure_built(images.shape)
        inputs = images
        # Again: building may have read `num_classes` off the classifier.
        top_k = check_top_k(top_k, classes, self.num_classes)
        if classes is not None:
            classes = check_classes(
                classes, len(images), self.num_classes, several=True
            )
            # Always (N, k) to `predict`: its compiled step, traced for
            # both ranks, would no longer know which it was given.
            inputs = {"images": images, "classes": classes.reshape(len(images), -1)}
        use_options(self, (resolution, normalize, zero_flat, top_k, dtype))
        # The scan of the pixel values (two passes over them on the host)
        # runs on a thread while `predict` feeds the accelerator; on a GPU it
        # took as long as a third of the explanation. Its error still comes
        # before any map is returned.
        with ThreadPoolExecutor(1) as pool:
            problems = pool.submit(pixel_range_problems, images)
            outputs = self.predict(inputs, batch_size=batch_size, verbose=verbose)
        # Warned at the caller of `explain`.
        report_pixel_problems(problems.result(), stacklevel=4)
        if classes is not None and classes.ndim == 1:
            return {key: np.asarray(value)[:, 0] for key, value in outputs.items()}
        return {key: np.asarray(value) for key, value in outputs.items()}

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Keras' `predict`, its options checked; under JAX, the weights
        kept on the model when it fails (see `weights_kept`)."""
        check_predict_options(batch_size, verbose)
        with weights_kept(self):
            return super().predict(x, batch_size, verbose, steps, callbacks)

    def make_predict_function(self, force=False):
        """Compiles `predict`'s step; under JAX, one that leaves the weights be.

        Keras' JAX step takes every variable, donated, and returns them all
        after each batch in case it changed one; `predict` then stores them
        on the model, which walks them all for new variables. That host work
        grows with the number of arrays, and an explainer holds both
        networks' (446 for a ResNet-50 and a ResNet-18, against the bare
        classifier's 320): on a CPU it was most of what `predict` added per
        batch around the explanation (`benchmarks/profile_explain.py
        --thin`). Explaining changes no variable (the networks and the
        decoder run in inference mode, no fill is drawn), so the step here
        takes them as plain arguments and returns the explanation alone (see
        `jax_predict_function`). Eager runs, Keras' NNX mode and the other
        backends take Keras' own step.
        """
        if (
            keras.config.backend() != "jax"
            or self.run_eagerly
            or not self.jit_compile
            or nnx_enabled()
        ):
            return super().make_predict_function(force)
        if self.predict_function is None or force:
            self.predict_function = jax_predict_function(self)
        return self.predict_function

    @property
    def misranked_classes(self):
        """Classes whose maps failed the removal check: a sorted tuple.

        Set by the check `fit` runs after each epoch (see
        `keras_ptame/models/removal_check.py`); `explain_outputs` flags their
        maps `misranked`. Saved with the explainer.
        """
        return self._misranked_classes

    @misranked_classes.setter
    def misranked_classes(self, value):
        classes = tuple(sorted({int(c) for c in value}))
        limit = self.num_classes
        if any(c < 0 or (limit is not None and c >= limit) for c in classes):
            raise ValueError(
                f"`misranked_classes` must be classes in [0, {limit}). "
                f"Received: {value!r}"
            )
        if classes != getattr(self, "_misranked_classes", None):
            # `predict` compiles the classes in.
            self.predict_function = None
        self._misranked_classes = classes

    @property
    def evidence_threshold(self):
        """Evidence below it flags a map as flat (see `explain_outputs`)."""
        return self._evidence_threshold

    @evidence_threshold.setter
    def evidence_threshold(self, value):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(
                f"`evidence_threshold` must be in [0, 1]. Received: {value!r}"
            )
        if float(value) != getattr(self, "_evidence_threshold", None):
            # `predict` compiles the threshold in.
            self.predict_function = None
        self._evidence_threshold = float(value)

    def warn_about_fill(self, x):
        """Warns if the classifier predicts a class on the fill image alone.

        `fit` calls it on its data: arrays are probed on their first images;
        a dataset (read by `fit` alone) only with the black fill, which needs
        just the size. A mixture collapses a class only if each of its fills
        predicts it.
        """
        images = self._fill_probe(unpack_inputs(x)[0])
        if images is None:
            return
        found = None
        for fill in fill_components(self.fill):
            predicted = fill_predictions(self.backbone, images, fill)
            found = predicted if found is None else _common(found, predicted)
        message = fill_warning(found, self.fill)
        if message:
            warnings.warn(message, stacklevel=3)

    def _fill_probe(self, images):
        """The images `warn_about_fill` probes, or `None` to probe none.

        The black fill's image is black whatever the data: it is probed once
        per image size (a pass of the classifier, run eagerly, that each
        short `fit` would otherwise pay again), the other fills on the first
        images of an array.
        """
        if self.fill == "black":
            size = self.input_size
            if hasattr(images, "shape") and None not in tuple(images.shape)[1:3]:
                size = tuple(int(n) for n in tuple(images.shape)[1:3])
            if size is None or size in self._fill_probed:
                return None
            self._fill_probed.add(size)
            return np.zeros((1, *size, self.input_channels or 3), "float32")
        if hasattr(images, "__array__") and not hasattr(images, "element_spec"):
            return check_images(images[:8])
        return None


def _common(first, second):
    """Classes both predict, with the lower of their probabilities."""
    return {c: min(p, second[c]) for c, p in first.items() if c in second}
