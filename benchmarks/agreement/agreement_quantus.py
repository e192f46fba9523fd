"""keras_ptame's metrics against Quantus 0.6.0's on the same inputs.

Quantus takes `x_batch` `(N, C, H, W)` with `channel_first=True`, `y_batch`
(here the classifier's predictions, the classes keras_ptame explains),
`a_batch` `(N, 1, H, W)` and `s_batch` `(N, 1, H, W)` masks. Its metrics
normalise the maps by their maximum by default (`normalise=True`,
`normalise_by_max`); keras_ptame scores the maps as given, so every call
here passes `normalise=False, abs=False`, and `softmax=True` where a model
is called (keras_ptame scores softmax probabilities).
"""

import numpy as np
from agreement_common import (
    PERCENTAGES,
    STEPS,
    Row,
    channels_first_module,
    max_abs,
    to_nchw,
)

from keras_ptame import metrics
from keras_ptame.metrics.imputation import noisy_linear_imputation
from keras_ptame.metrics.selection import top_pixels
from keras_ptame.models.classifier_scores import as_backbone, class_scores
from keras_ptame.utils.maps import normalize_maps

PLAIN = dict(normalise=False, abs=False, disable_warnings=True)


def _call(metric, module, images, maps, classes, masks=None, **kwargs):
    return metric(
        model=module,
        x_batch=to_nchw(images),
        y_batch=np.asarray(classes),
        a_batch=np.asarray(maps, np.float32)[:, None],
        s_batch=None if masks is None else np.asarray(masks)[:, None].astype(int),
        channel_first=True,
        device="cpu",
        **kwargs,
    )


def pixel_flipping_rows(inputs, module, map_name="gradient"):
    """`quantus.PixelFlipping` against `deletion_insertion`'s deletion curve."""
    import quantus

    maps = inputs.maps[map_name]
    count, height, width = maps.shape
    # A multiple of the 3 channels: the map broadcast to (N, 3, H, W) sorts
    # each pixel's 3 copies together, so each step flips whole pixels.
    step = 3 * height * width // STEPS
    ours = metrics.deletion_insertion(
        inputs.classifier, inputs.images, maps, inputs.classes, steps=STEPS
    )
    curves = {}
    # Brighter copies (no pixel below 64) for Quantus's default baseline.
    bright = inputs.images // 2 + 64
    for baseline, images in ((0.0, inputs.images), ("black", bright)):
        metric = quantus.PixelFlipping(
            features_in_step=step, perturb_baseline=baseline, **PLAIN
        )
        curves[baseline] = np.array(
            _call(metric, module, images, maps, inputs.classes, softmax=True)
        )
    bright_curve = metrics.deletion_insertion(
        inputs.classifier, bright, maps, inputs.classes, steps=STEPS
    )["deletion_curve"][:, 1:]
    auc = quantus.PixelFlipping(
        features_in_step=step, perturb_baseline=0.0, return_auc_per_sample=True, **PLAIN
    )
    theirs_auc = np.array(
        _call(auc, module, inputs.images, maps, inputs.classes, softmax=True)
    )
    curve = ours["deletion_curve"][:, 1:]
    recomputed = np.trapezoid(curve, dx=1, axis=1)
    source = "`quantus/metrics/faithfulness/pixel_flipping.py` `PixelFlipping`"
    return [
        Row(
            key="pixel_flipping_curve",
            metric=f"deletion curve, {STEPS} steps, black fill: "
            "`deletion_insertion(...)['deletion_curve'][:, 1:]` against "
            f"{source} (`features_in_step={step}`, `perturb_baseline=0.0`); "
            "mean over images of steps 1/6/12",
            ours=curve.mean(axis=0)[[0, 5, 11]],
            theirs=curves[0.0].mean(axis=0)[[0, 5, 11]],
            difference=max_abs(curve, curves[0.0]),
            why="Quantus's curve starts after the first step (no unperturbed "
            "point), keras_ptame's at 0 removed",
            tolerance=1e-5,
        ),
        Row(
            key="pixel_flipping_black",
            metric="the same on brighter images (`images // 2 + 64`) with "
            "Quantus's default `perturb_baseline='black'`",
            ours=bright_curve.mean(axis=0)[[0, 5, 11]],
            theirs=curves["black"].mean(axis=0)[[0, 5, 11]],
            difference=max_abs(bright_curve, curves["black"]),
            why="definitional: Quantus's 'black' is each image's minimum "
            "(`quantus/helpers/utils.py` `get_baseline_dict`: "
            f"{int(bright.min())} or more here), keras_ptame's 'black' is 0; "
            "equal on images that hold a 0 pixel, as the originals do",
        ),
        Row(
            key="pixel_flipping_auc",
            metric="area under the deletion curve, mean over images",
            ours=float(ours["deletion_auc"].mean()),
            theirs=float(theirs_auc.mean()),
            difference=max_abs(ours["deletion_auc"], theirs_auc),
            why="definitional: keras_ptame's `curve_area` is the trapezoid over "
            f"the {STEPS + 1} points on [0, 1] (unperturbed included); Quantus's "
            f"`calculate_auc` is `np.trapz(dx=1)` over its {STEPS} points; "
            "recomputed Quantus's way from keras_ptame's curve: "
            f"{recomputed.mean():.6g} (largest absolute difference "
            f"{max_abs(recomputed, theirs_auc):.3g})",
            detail={"recomputed": recomputed, "theirs": theirs_auc},
        ),
    ]


def localisation_rows(inputs, map_name="gradient"):
    """`quantus.PointingGame` and `RelevanceMassAccuracy` against ours."""
    import quantus

    maps = inputs.maps[map_name]
    # Maps that say nothing: all 0 (odd images: all 2; Quantus refuses a
    # batch of maps all 0, all 1 or all equal).
    flat = np.zeros_like(maps)
    flat[1::2] = 2.0
    share = inputs.masks.mean(axis=(1, 2))
    rows = []
    for name, metric, ours_fn, source in (
        (
            "pointing game",
            quantus.PointingGame(**PLAIN),
            metrics.pointing_game,
            "`quantus/metrics/localisation/pointing_game.py` `PointingGame`",
        ),
        (
            "mass inside",
            quantus.RelevanceMassAccuracy(**PLAIN),
            metrics.mass_inside,
            "`quantus/metrics/localisation/relevance_mass_accuracy.py` "
            "`RelevanceMassAccuracy`",
        ),
    ):
        for tag, scored in (("gradient maps", maps), ("flat maps", flat)):
            ours = ours_fn(scored, inputs.masks)
            theirs = np.array(
                _call(
                    metric, None, inputs.images, scored, inputs.classes, inputs.masks
                ),
                dtype=np.float64,
            )
            rows.append(_localisation_row(name, tag, source, ours, theirs, share))
    return rows


def _localisation_row(name, tag, source, ours, theirs, share):
    key = f"{name.replace(' ', '_')}_{tag.split()[0]}"
    if tag == "gradient maps":
        why = "no tolerance on either side (`tolerance=0`; Quantus 0.6.0 has none)"
        if name == "mass inside":
            why = "both: map mass on the object over total mass"
        return Row(key, f"{name}, {tag}: mean over images ({source})",
                   ours.mean(), theirs.mean(), max_abs(ours, theirs), why,
                   tolerance=1e-6)  # fmt: skip
    if name == "pointing game":
        why = (
            "definitional: on tied maxima Quantus counts a hit if any tied pixel "
            "is on the object (`np.any`), keras_ptame the share of tied pixels on "
            "it, so a map that says nothing scores chance (the object's share, "
            f"mean {share.mean():.4g}), not a hit"
        )
    else:
        why = (
            "definitional: on the all-0 maps Quantus divides by a total mass of "
            "0 (NaN); keras_ptame scores a massless map at chance, the object's "
            f"share (mean {share.mean():.4g}); the all-2 maps agree"
        )
    return Row(key, f"{name}, {tag}: mean over images", float(np.mean(ours)),
               float(np.mean(theirs)), max_abs(ours, theirs), why,
               detail={"ours": ours, "theirs": theirs, "share": share})  # fmt: skip


def road_rows(inputs, map_name="gradient"):
    """`quantus.ROAD` (MoRF only) against keras_ptame's `road`."""
    import quantus

    maps = inputs.maps[map_name]
    metric = quantus.ROAD(noise=0.0, percentages=list(PERCENTAGES), **PLAIN)
    rgb = channels_first_module(inputs.classifier)
    try:
        _call(metric, rgb, inputs.images, maps, inputs.classes, softmax=True)
        failure = "ran"
    except IndexError as error:
        failure = f"IndexError: {error}"
    # The same scene in gray: one channel for Quantus, three equal ones for
    # keras_ptame (its fill treats each channel alike).
    gray = np.round(inputs.images.astype(np.float32).mean(axis=-1))
    gray3 = np.repeat(gray[..., None], 3, axis=-1)
    classes = np.asarray(
        class_scores(as_backbone(inputs.classifier), gray3, inputs.classes)[1]
    )
    theirs = _call(metric, channels_first_module(inputs.classifier, gray=True),
                   gray[..., None], maps, classes, softmax=True)  # fmt: skip
    theirs = np.array([theirs[p] for p in PERCENTAGES])
    ours = metrics.road(inputs.classifier, gray3, maps, classes,
                        noise=0.0, selection="rank")["accuracy"]  # fmt: skip
    ours = np.array([ours[p] for p in PERCENTAGES])
    recomputed = _road_top_k(inputs.classifier, gray3, maps, classes)
    n = maps[0].size
    source = "`quantus/metrics/faithfulness/road.py` `ROAD`"
    return [
        Row(
            "quantus_road_rgb",
            f"{source} on the RGB images",
            "runs",
            failure,
            None,
            "Quantus 0.6.0 broadcasts the map to (N, 3, H, W) and sorts "
            "3·H·W indices, but its `noisy_linear_imputation` "
            "(`quantus/functions/perturb_func.py`) masks H·W pixels, so an index "
            "of channel 1 or 2 overflows; open ROAD issue: Quantus #333 "
            "(ROAD returns 0)",
        ),  # fmt: skip
        Row(
            "quantus_road_gray",
            "ROAD MoRF accuracy at 10/30/50/70%, gray images "
            "(one channel for Quantus), noise 0, `selection='rank'`",
            ours,
            theirs,
            max_abs(ours, theirs),
            "definitional: Quantus removes the top "
            "int(n·p) pixels (n = H·W), keras_ptame `round(n·p)`: "
            f"{[int(n * p / 100) for p in PERCENTAGES]} against "
            f"{[int(round(n * p / 100)) for p in PERCENTAGES]}",
        ),  # fmt: skip
        Row(
            "quantus_road_recomputed",
            "the same, keras_ptame's fill and scores "
            "on Quantus's pixel count (top int(n·p), `top_pixels`)",
            recomputed,
            theirs,
            max_abs(recomputed, theirs),
            "",
            tolerance=0,
        ),  # fmt: skip
    ]


def _road_top_k(classifier, images, maps, classes):
    accuracy = []
    for p in PERCENTAGES:
        removed = top_pixels(maps, int(maps[0].size * p / 100))
        filled = np.stack(
            [noisy_linear_imputation(i, r, noise=0.0) for i, r in zip(images, removed)]
        )
        predictions = class_scores(as_backbone(classifier), filled, classes)[1]
        accuracy.append(float(np.mean(predictions == classes)))
    return np.array(accuracy)


def similarity_rows(inputs):
    """Quantus's Spearman and SSIM (`quantus/functions/similarity_func.py`)."""
    from quantus.functions import similarity_func
    from skimage.metrics import structural_similarity as skimage_ssim

    a = normalize_maps(inputs.maps["gradient"])
    b = normalize_maps(inputs.maps["random"])
    tied = np.round(a * 4) / 4  # 5 levels: ties in every map
    rows = []
    for tag, other in (
        ("gradient vs random maps", b),
        ("gradient vs 5-level maps", tied),
    ):
        ours = metrics.rank_correlation(a, other)
        theirs = np.array(
            [similarity_func.correlation_spearman(x.ravel(), y.ravel())
             for x, y in zip(a, other)]
        )  # fmt: skip
        rows.append(Row(f"spearman_{tag.split()[2]}", f"Spearman, {tag}: mean over "
                        "pairs (`correlation_spearman`, i.e. `scipy.stats.spearmanr`)",
                        ours.mean(), theirs.mean(), max_abs(ours, theirs),
                        "average ranks for ties on both sides", tolerance=1e-6))  # fmt: skip
    rows.extend(_ssim_rows(a, b, similarity_func.ssim, skimage_ssim))
    return rows


def _ssim_rows(a, b, quantus_ssim, skimage_ssim):
    """Quantus's `ssim` and skimage's against `keras_ptame.metrics.structural_similarity`."""

    def ours(x, y):
        return np.asarray(metrics.structural_similarity(x, y), np.float64)

    rows = []
    for key, tag, x, y in (
        ("ssim_quantus", "gradient vs random maps, each min–max normalised", a, b),
        (
            "ssim_quantus_half",
            "the same maps halved (values in [0, 0.5])",
            a / 2,
            b / 2,
        ),
    ):
        mine = ours(x, y)
        theirs = np.array([quantus_ssim(p, q) for p, q in zip(x, y)])
        why = (
            "skimage's defaults on both sides (7×7 uniform window, K1 0.01, "
            "K2 0.03); the pair spans [0, 1], so Quantus's data range is 1"
        )
        if key == "ssim_quantus_half":
            why = (
                "definitional: Quantus's `ssim` sets `data_range` to the pair's "
                "max − min (0.5 here); skimage's default and keras_ptame's fix it at 1"
            )
        rows.append(Row(key, f"SSIM, {tag}: mean over pairs", mine.mean(),
                        theirs.mean(), max_abs(mine, theirs), why,
                        tolerance=1e-5 if key == "ssim_quantus" else None,
                        detail={"ours": mine, "theirs": theirs}))  # fmt: skip
    skimage_1 = np.array([skimage_ssim(p, q, data_range=1.0) for p, q in zip(a, b)])
    metric = "SSIM, keras_ptame `structural_similarity` against skimage (data_range=1)"
    mine = ours(a, b)
    rows.append(Row("ssim_keras_ptame", metric, mine.mean(), skimage_1.mean(),
                    max_abs(mine, skimage_1), "skimage's defaults on both sides; "
                    "keras_ptame computes in float64, skimage in the maps' float type",
                    tolerance=1e-5))  # fmt: skip
    return rows
