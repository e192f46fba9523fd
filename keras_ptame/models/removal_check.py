"""Does a class's map carry the class? The removal check.

A P-TAME map ranks the pixels by what the classifier needs to keep its
prediction. Removing the map's top half should then cost the class more than
removing its bottom half. Training alone does not ensure it: the objective asks
that the image *kept* by the map keeps the class, and with the black fill a
black hole in the shape of the object can be enough for the classifier to name
the class. The decoder may then settle on maps that cover the background and
leave out the object, on every image of a class, with as much evidence
(contrast) as any good map: the inverse of an explanation.

The check removes each half of the map in turn and asks the classifier again.
The removed pixels are filled from the kept ones (push-pull interpolation: each
hole takes the mean colour of the pixels kept around it, coarse to fine), not
with the fill, whose hole would show the object's shape again (the leak that
ROAD's imputation was designed against). A map carries its class when the
class loses clearly more without the map's top half than without its bottom
half; a map that does not is *misranked*: inverted (the background ranked
first) or ranking pixels that do not matter to the class (as for a class the
fill image alone predicts, which needs nothing kept). A class is flagged
`misranked` when most of its checked maps are. Flat maps (no evidence, see
`explanation.py`) are not checked: they are flagged already.
"""

import warnings

import keras
import numpy as np

from keras_ptame.models.classifier_scores import class_scores
from keras_ptame.models.explanation import fill_predictions
from keras_ptame.models.fills import fill_components
from keras_ptame.utils.validation import unpack_inputs

# The share of each map's pixels removed: its top half, then its bottom half.
REMOVED_SHARE = 0.5
# A map carries its class when removing its top half costs the class at
# least this share of its probability (on the whole image) more than
# removing its bottom half. On benchmarks/object_maps.py (135 runs) the 676
# classes whose maps point at the objects had a median of -0.81 or lower, the
# 29 whose maps missed them -0.09 or higher.
MARGIN = 0.25
# A class is flagged when more than this share of its checked maps is
# misranked (its median map is), out of at least `MIN_CHECKED` maps.
MISRANKED_SHARE = 0.5
MIN_CHECKED = 4
# The images `PTAME.fit` checks after each epoch.
REMOVAL_CHECK_IMAGES = 256
# The images whose fill alone is classified before maps are reversed.
FILL_IMAGES = 16


def fill_from_kept(images, keep):
    """`images` with the pixels where `keep` is False filled from the kept ones.

    Push-pull interpolation: the kept pixels are averaged down a pyramid of
    halvings, and each level fills what it lacks from the level above, so a
    hole takes the mean colour of the pixels kept around it, smoothly and
    whatever its shape.

    Args:
        images: float array `(B, H, W, C)`.
        keep: bool array `(B, H, W)`.

    Returns:
        float32 array `(B, H, W, C)`, equal to `images` where `keep`.
    """
    weight = np.asarray(keep, "float32")[..., None]
    values = np.asarray(images, "float32") * weight
    pyramid = [(values, weight)]
    while max(values.shape[1:3]) > 1:
        values, weight = _halve(values), _halve(weight)
        pyramid.append((values, weight))
    estimate = values / np.maximum(weight, 1e-12)
    for values, weight in reversed(pyramid[:-1]):
        coarse = _double(estimate, values.shape[1:3])
        # The mean of the kept pixels where there are some, the coarser
        # estimate for the share missing.
        estimate = values + (1.0 - weight) * coarse
    return estimate


def _halve(x):
    """2x2 means, the odd edge padded with zeros (no weight: filled later)."""
    batch, height, width, channels = x.shape
    x = np.pad(x, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))
    x = x.reshape(batch, x.shape[1] // 2, 2, x.shape[2] // 2, 2, channels)
    return x.mean(axis=(2, 4))


def _double(x, size):
    """Nearest-neighbour doubling, cropped to `size`."""
    x = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    return x[:, : size[0], : size[1]]


def kept_masks(maps, share=REMOVED_SHARE):
    """Pixels kept after removing each map's top `share`, and its bottom.

    Args:
        maps: float array `(B, H, W)`; higher is more relevant.
        share: float in (0, 1): the share of the pixels removed.

    Returns:
        `(keep_without_top, keep_without_bottom)`, two bool `(B, H, W)`.
    """
    maps = np.asarray(maps, "float32")
    flat = maps.reshape(len(maps), -1)
    count = flat.shape[1]
    removed = min(max(int(round(share * count)), 1), count - 1)
    order = np.argsort(-flat, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(count)[None], axis=1)
    without_top = (rank >= removed).reshape(maps.shape)
    without_bottom = (rank < count - removed).reshape(maps.shape)
    return without_top, without_bottom


def removal_changes(backbone, images, maps, classes, scores=None, batch_size=64):
    """How much each map's class keeps without its top half, over its bottom.

    For any maps of a classifier (a `PTAME`'s, Grad-CAM's, ...): the class's
    probability with the map's top half removed, minus that with its bottom
    half removed, as a share of its probability on the whole image. Above
    `-MARGIN`, the map is misranked: what it ranks first matters no more to the
    classifier than what it ranks last.

    Args:
        backbone: the classifier, a callable from raw images to logits (a
            `Backbone`).
        images: array `(N, H, W, 3)` of raw pixels.
        maps: array `(N, H, W)`; higher is more relevant.
        classes: int array `(N,)`: the class each map explains.
        scores: optional float array `(N,)`: the classes' probabilities on
            the whole images. Defaults to `None` (computed).
        batch_size: int. Images per forward pass.

    Returns:
        A dict of numpy arrays `(N,)`: `scores`, `without_top`,
        `without_bottom` and `change`.
    """
    images = np.asarray(images, "float32")
    classes = np.asarray(classes, "int32")
    if scores is None:
        scores = class_scores(backbone, images, classes, batch_size)[0]
    scores = np.asarray(scores, "float32")
    without_top, without_bottom = kept_masks(maps)
    found = {"scores": scores}
    for name, keep in (
        ("without_top", without_top),
        ("without_bottom", without_bottom),
    ):
        filled = fill_from_kept(images, keep)
        found[name] = class_scores(backbone, filled, classes, batch_size)[0]
    found["change"] = (found["without_top"] - found["without_bottom"]) / np.maximum(
        scores, 1e-6
    )
    return found


def misranked(change):
    """bool: the maps whose `removal_changes` `change` shows they do not carry
    their class (removing their top half cost it less than `MARGIN` more
    than removing their bottom half)."""
    return np.asarray(change) > -MARGIN


def check_explainer(explainer, images, classes=None, batch_size=64):
    """The removal check of an explainer's maps, one row per image.

    Args:
        explainer: a `PTAME`.
        images: array `(N, H, W, 3)` of raw pixels.
        classes: optional int array `(N,)`: the classes explained. Defaults
            to the classifier's predictions.
        batch_size: int. Images per forward pass.

    Returns:
        A dict of numpy arrays `(N,)`: `classes`, `flat` (no evidence: not
        checked), `removal_changes`' four, and `misranked` (bool: `change`
        above `-MARGIN` on a map that is not flat).
    """
    images = np.asarray(images, "float32")
    found = explainer.explain_outputs(
        images, classes, batch_size=batch_size, normalize="sigmoid", zero_flat=False
    )
    classes = np.asarray(found["classes"], "int32")
    changes = removal_changes(
        explainer.backbone, images, found["maps"], classes, found["scores"], batch_size
    )
    flat = np.asarray(found["flat"], bool)
    found = misranked(changes["change"]) & ~flat
    return {"classes": classes, "flat": flat, **changes, "misranked": found}


def summarize(checked, min_checked=MIN_CHECKED, share=MISRANKED_SHARE):
    """Per class: maps checked, the share misranked, and whether it is flagged.

    Args:
        checked: the dict `check_explainer` returns.
        min_checked: int. Fewest maps (not flat) of a class for a verdict.
        share: float. A class is flagged when more than this share of its
            checked maps is misranked.

    Returns:
        `{class: {"checked": int, "misranked": float, "change": float,
        "flagged": bool}}` for each class explained: `misranked` the share of
        its checked maps, `change` their median `change`.
    """
    rows = {}
    for index in np.unique(checked["classes"]):
        chosen = (checked["classes"] == index) & ~checked["flat"]
        count = int(chosen.sum())
        found = float(checked["misranked"][chosen].mean()) if count else 0.0
        change = float(np.median(checked["change"][chosen])) if count else 0.0
        rows[int(index)] = {
            "checked": count,
            "misranked": found,
            "change": change,
            "flagged": count >= min_checked and found > share,
        }
    return rows


def inverted_classes(rows, margin=MARGIN):
    """The classes `summarize` flags whose maps rank the background first.

    Their median `change` is above `+margin`: removing the map's top half
    costs the class clearly less than removing its bottom half, the inverse
    of a map that carries it (a class that needs nothing sits near 0).
    """
    return [c for c, row in rows.items() if row["flagged"] and row["change"] > margin]


def reverse_maps(decoder, classes):
    """Reverses the ranking of `classes`' maps in place.

    The fuser is a bias-free linear layer after the decoder's last
    nonlinearity, and the maps are the sigmoid of its output (upsampled,
    which is linear): negating a class's fuser column turns its map `m` into
    `1 - m`, the background first where the object was, and back.
    """
    kernel = keras.ops.convert_to_numpy(decoder.fuser.kernel).copy()
    kernel[..., list(classes)] *= -1
    decoder.fuser.kernel.assign(kernel)


def sample_images(data, count):
    """Up to `count` images of `fit`'s data for the check, or `None`.

    Args:
        data: what `fit` takes as `x` or `validation_data`: an array of
            images (or a tuple or dict holding one), or a `tf.data.Dataset`
            of them (its first batches are read).
        count: int. The most images taken; an array's are spread over it.

    Returns:
        float32 array `(n, H, W, 3)`, or `None` for data it cannot read
        twice (a generator, a `PyDataset`, ...).
    """
    if isinstance(data, tuple) and data:
        data = data[0]
    if hasattr(data, "element_spec"):
        return _dataset_sample(data, count)
    images = unpack_inputs(data)[0]
    if not (isinstance(images, list) or hasattr(images, "__array__")):
        return None
    images = np.asarray(images)
    spread = np.linspace(0, len(images) - 1, min(count, len(images)))
    return images[np.unique(spread.astype(int))].astype("float32")


def _dataset_sample(dataset, count):
    found, total = [], 0
    for element in dataset:
        if isinstance(element, tuple):
            element = element[0]
        images = np.asarray(unpack_inputs(element)[0], "float32")
        if images.ndim == 3:
            images = images[None]
        found.append(images[: count - total])
        total += len(found[-1])
        if total >= count:
            break
    return np.concatenate(found) if found else None


class RemovalChecking:
    """`PTAME`'s `fit` with the removal check: a mixin of `PTAME`."""

    def fit(
        self,
        *args,
        removal_check=REMOVAL_CHECK_IMAGES,
        reverse_inverted=True,
        **kwargs,
    ):
        """`fit`, with a `RemovalCheck` on a sample of its data first.

        Args:
            removal_check: int. After each epoch, the maps of this many
                images (of `validation_data` if given, else of `x`; an
                array's spread over it, a dataset's first) are checked: a
                class whose maps cost it no more when their top half is
                removed than when their bottom half is, is flagged
                (`misranked` in the logs and in `explain_outputs`). A
                `tf.data.Dataset` is read once more for them, at the start
                (its first batches: a shuffle buffer fills once more). Data
                that cannot be read twice (a generator) is not checked, with
                a warning. `0` checks nothing. Defaults to `256`.
            reverse_inverted: bool. After each epoch but the last, the
                maps of a class the check finds inverted (the background
                ranked first, see `inverted_classes`) are reversed, once per
                class (`reverse_maps`); logged as `reversed`. `False` trains
                as the paper does. Defaults to `True`.
            **kwargs: `keras.Model.fit`'s arguments. A `RemovalCheck` among
                the `callbacks` replaces the sample's.
        """
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if removal_check and not any(isinstance(c, RemovalCheck) for c in callbacks):
            x = args[0] if args else kwargs.get("x")
            data = kwargs.get("validation_data")
            check = _sampled_check(
                x if data is None else data, int(removal_check), reverse_inverted
            )
            # First, so that the other callbacks see its log.
            callbacks = ([check] if check else []) + callbacks
        return super().fit(*args, callbacks=callbacks, **kwargs)


def _sampled_check(data, count, reverse_inverted):
    """The `RemovalCheck` on `count` images of `data`, or `None` (warned)."""
    images = sample_images(data, count)
    if images is None:
        warnings.warn(
            "The removal check (`fit(removal_check=...)`) reads an array or a "
            f"`tf.data.Dataset`; it cannot read {type(data).__name__} twice, so "
            "no class is checked. Pass `callbacks=[keras_ptame.models."
            "removal_check.RemovalCheck(images)]` with some images.",
            stacklevel=5,
        )
        return None
    return RemovalCheck(images, reverse_inverted=reverse_inverted)


class RemovalCheck(keras.callbacks.Callback):
    """Runs the removal check on `images` after each epoch of `fit`.

    `PTAME.fit` adds one on a sample of its data (`removal_check` images of
    `validation_data` if given, else of `x`). After each epoch it checks the
    explainer's maps of `images` (see `check_explainer`), sets the explainer's
    `misranked_classes` to the classes flagged, and logs their number as
    `misranked` (shown beside the loss, kept in the `History`); at the end
    of training it warns, naming them.

    With `reverse_inverted`, a class found inverted after an epoch that is
    not the last has its maps reversed (`reverse_maps`), once per training
    and never for a class that the fill image alone predicts (any of a
    mixture's fills). The decoder sometimes settles on maps of a class that
    keep the background and leave out the object (with the black fill, a
    hole in the object's shape can be enough for the classifier to name it),
    and the loss alone does not bring it back. The classes reversed so far are
    logged as `reversed` and kept in `reversed_classes`.

    Args:
        images: array `(N, H, W, 3)` of raw pixels, some of each class.
        batch_size: int. Images per forward pass. Defaults to `64`.
        reverse_inverted: bool. Defaults to `True`.
    """

    def __init__(self, images, batch_size=64, reverse_inverted=True):
        super().__init__()
        self.images = np.asarray(images, "float32")
        self.batch_size = int(batch_size)
        self.reverse_inverted = bool(reverse_inverted)
        self.rows = {}
        self.reversed_classes = []

    def on_train_begin(self, logs=None):
        self.reversed_classes = []

    def on_epoch_end(self, epoch, logs=None):
        checked = check_explainer(self.model, self.images, batch_size=self.batch_size)
        self.rows = summarize(checked)
        flagged = [c for c, row in self.rows.items() if row["flagged"]]
        self.model.misranked_classes = flagged
        if self.reverse_inverted and epoch + 1 < self.params.get("epochs", 0):
            self._reverse(inverted_classes(self.rows))
        if logs is not None:
            logs["misranked"] = float(len(flagged))
            if self.reverse_inverted:
                logs["reversed"] = float(len(self.reversed_classes))

    def _reverse(self, classes):
        # Once per class: a class that is inverted again has no better side.
        classes = [c for c in classes if c not in self.reversed_classes]
        if classes:
            # Nor has a class that the fill image alone predicts: any map
            # keeps it, so the loss cannot tell the object from the rest.
            needless = set()
            for fill in fill_components(self.model.fill):  # a mixture's each
                images = self.images[:FILL_IMAGES]
                needless |= set(fill_predictions(self.model.backbone, images, fill))
            classes = [c for c in classes if c not in needless]
        if classes:
            reverse_maps(self.model.decoder, classes)
            self.reversed_classes += classes

    def on_train_end(self, logs=None):
        message = misranked_warning(self.rows)
        if message:
            warnings.warn(message, stacklevel=2)


def misranked_warning(rows):
    """The warning for `summarize`'s rows that flag a class, or `None`."""
    flagged = {c: row for c, row in rows.items() if row["flagged"]}
    if not flagged:
        return None
    named = ", ".join(
        f"class {c} ({row['misranked']:.0%} of {row['checked']} maps)"
        for c, row in flagged.items()
    )
    return (
        f"The maps of {named} do not carry their class: removing their top "
        "half cost the class no more than removing their bottom half "
        "(typically they cover the background, or the class needs nothing "
        "the map shows). `explain_outputs` flags them `misranked`. See the "
        "README, 'Honest maps'."
    )
