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

import contextlib
import warnings
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
from keras import ops

from keras_ptame.models.fills import apply_fill, fill_components, resize_like
from keras_ptame.utils.validation import (
    check_classes,
    check_images,
    check_option,
    check_predict_options,
    pixel_range_problems,
    report_pixel_problems,
    unpack_inputs,
)

# Where `explain` returns maps: at the images' size, or the decoder's.
RESOLUTIONS = ("input", "decoder")
# How `explain` scales maps. `"minmax"`, the authors' inference: each raw map
# min-max normalised at the decoder's resolution, then upsampled bilinearly.
# `"minmax_upsampled"`, keras_ptame's earlier default: upsampled first, then
# min-max normalised, so that every map spans [0, 1] exactly (the authors'
# maps may miss 0 and 1 by a little, where their extremes fall between the
# decoder's pixel centres). `"sigmoid"`: their sigmoid taken after upsampling
# (the values of the mask the decoder was trained to keep the class with, the
# same pixel order as both min-max maps). `"none"`: the trained-space sigmoid
# maps as they are.
NORMALIZATIONS = ("minmax", "minmax_upsampled", "sigmoid", "none")
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
):
    """The outputs of `explain` from the decoder's raw maps `(B, h, w, 1)`.

    Args:
        raw: the decoder's maps for the explained classes, before the sigmoid.
        images: the images explained, for the size of input-resolution maps.
        threshold: float. Evidence below it flags a map as flat.
        minmax: the min-max normalisation of `(B, h, w, 1)` maps (the
            decoder's `normalize`, with the authors' epsilon).
        resolution: `"input"` or `"decoder"`, see `RESOLUTIONS`.
        normalize: one of `NORMALIZATIONS`.
        zero_flat: bool. Whether flat maps come back all zeros (not with
            `normalize="none"`, which returns the sigmoid maps as they are).

    Returns:
        A dict: `maps` `(B, H, W)`, `evidence` `(B,)` and `flat` `(B,)` bool.
    """
    raw = ops.cast(raw, "float32")
    sigmoid = ops.sigmoid(raw)
    # Measured at the decoder's resolution: bilinear upsampling cannot add
    # contrast, and the flag must not depend on `resolution`.
    found = evidence(sigmoid)[:, 0]
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
        maps = ops.where(flat[:, None, None, None], ops.zeros_like(maps), maps)
    return {"maps": maps[..., 0], "evidence": found, "flat": flat}


def in_classes(classes, chosen):
    """Bool `(B,)`: whether each of `classes` `(B,)` is one of `chosen` (a tuple)."""
    if not chosen:
        return ops.zeros(ops.shape(classes), "bool")
    chosen = ops.convert_to_tensor(np.asarray(chosen, "int32"))
    return ops.any(ops.equal(ops.cast(classes, "int32")[:, None], chosen[None]), axis=1)


def fill_predictions(backbone, images, fill):
    """What the classifier predicts on the fill alone, for `images`' fills.

    Returns:
        A dict `{class: probability}`: each class predicted on some image's
        fill (everything masked out), with its highest softmax probability.
    """
    images = ops.convert_to_tensor(np.asarray(images, "float32"))
    nothing = ops.zeros((*tuple(images.shape[:3]), 1), "float32")
    logits = backbone(apply_fill(images, nothing, fill))
    probabilities = ops.convert_to_numpy(ops.softmax(ops.cast(logits, "float32")))
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
    ):
        """One saliency map per image, for its predicted class or `classes`.

        Args:
            images: array `(N, H, W, 3)` of raw pixels, uint8 or float in
                [0, 255].
            classes: optional int array `(N,)`: the class to explain for each
                image. Defaults to `None` (the classifier's prediction).
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

        Returns:
            numpy float32 `(N, H, W)` maps in [0, 1] (`(N, h, w)` at the
            decoder's resolution).
        """
        outputs = self.explain_outputs(
            images,
            classes,
            batch_size,
            verbose,
            resolution,
            normalize,
            zero_flat,
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
    ):
        """Like `explain`, but returns a dict of numpy arrays.

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
        options = check_explain_options(resolution, normalize, zero_flat)
        check_predict_options(batch_size, verbose)
        images = check_images(images, pixels=False)
        self.ensure_built(images.shape)
        inputs = images
        if classes is not None:
            classes = check_classes(classes, len(images), self.num_classes)
            inputs = {"images": images, "classes": classes}
        if options != self._explain_options:
            # `predict` compiles the options in: have it compiled anew.
            self._explain_options = options
            self.predict_function = None
        # The scan of the pixel values (two passes over them on the host)
        # runs on a thread while `predict` feeds the accelerator; on a GPU it
        # took as long as a third of the explanation. Its error still comes
        # before any map is returned.
        with ThreadPoolExecutor(1) as pool:
            problems = pool.submit(pixel_range_problems, images)
            outputs = self.predict(inputs, batch_size=batch_size, verbose=verbose)
        # Warned at the caller of `explain`.
        report_pixel_problems(problems.result(), stacklevel=4)
        return {key: np.asarray(value) for key, value in outputs.items()}

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Keras' `predict`, its options checked and, under JAX, the weights
        kept on the model when it fails (see `_weights_kept`)."""
        check_predict_options(batch_size, verbose)
        with _weights_kept(self):
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
            or _nnx_enabled()
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
        self._misranked_classes = classes
        # `predict` compiles the classes in.
        self.predict_function = None

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
        self._evidence_threshold = float(value)
        # `predict` compiles the threshold in.
        self.predict_function = None

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


def check_explain_options(resolution, normalize, zero_flat):
    """Checks `explain`'s map options; returns them as the tuple it compiles."""
    check_option("resolution", resolution, RESOLUTIONS)
    check_option("normalize", normalize, NORMALIZATIONS)
    if not isinstance(zero_flat, (bool, np.bool_, int, np.integer)) or (
        zero_flat not in (0, 1)
    ):
        raise TypeError(
            f"`zero_flat` must be a bool. Received: zero_flat={zero_flat!r}"
        )
    return resolution, normalize, bool(zero_flat)


def _nnx_enabled():
    # `keras.config.is_nnx_enabled` is new in Keras 3.11; 3.10 has no NNX.
    return getattr(keras.config, "is_nnx_enabled", lambda: False)()


@contextlib.contextmanager
def _weights_kept(model):
    """Under JAX, puts the variables' values back if `predict` fails.

    Keras' JAX `predict` takes them off the model while it runs and puts
    them back after its last batch: a failure (an error, Ctrl-C) would leave
    every variable empty, and every later call failing. The values are
    immutable arrays that no step here donates (see `make_predict_function`).
    """
    jax = keras.config.backend() == "jax" and not _nnx_enabled()
    variables = model.variables if jax and model.built else []
    values = [variable.value for variable in variables]
    try:
        yield
    except BaseException:
        for variable, value in zip(variables, values):
            variable.assign(value)
        raise


def jax_predict_function(model):
    """A JAX `predict_function` for a model whose inference changes no variable.

    Keras' contract, `(state, iterator) -> (outputs, state)` over up to
    `steps_per_execution` batches, with the state passed to the compiled
    step as plain arguments (not donated, not returned) and handed back as
    it came, in `_Weights`. (A layer that updated a variable in inference,
    which none of Keras' do, would see its update dropped.)
    """
    import jax

    def explain(trainable, non_trainable, data):
        return model.predict_step((trainable, non_trainable), data)[0]

    compiled = jax.jit(explain)

    def predict_function(state, iterator):
        if not isinstance(state[0], _Weights):
            state = tuple(_Weights(part) for part in state)
        trainable, non_trainable = (part.values for part in state)
        outputs = [compiled(trainable, non_trainable, next(iterator))]
        for _ in range(model.steps_per_execution - 1):
            try:
                data = next(iterator)
            except StopIteration:
                break
            outputs.append(compiled(trainable, non_trainable, data))
        if len(outputs) == 1:
            return outputs[0], state
        joined = keras.tree.map_structure(lambda *x: ops.concatenate(x), *outputs)
        return joined, state

    return predict_function


class _Weights:
    """Variable values handed through `predict` untouched.

    Neither a list nor a tuple on purpose: Keras' JAX `predict` stores its
    state on the model after every batch, and a model walks the lists and
    tuples it is given for new variables to track, ~450 checks a batch here.
    """

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = tuple(values)

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)


def _common(first, second):
    """Classes both predict, with the lower of their probabilities."""
    return {c: min(p, second[c]) for c, p in first.items() if c in second}
