"""keras_ptame's ROAD against pytorch-grad-cam's (`pytorch_grad_cam/metrics/road.py`).

Their ROAD (1.5.7): `ROADMostRelevantFirst(percentile)` and
`ROADLeastRelevantFirst(percentile)` wrap `RemoveMostRelevantFirst` /
`RemoveLeastRelevantFirst` (`metrics/perturbation_confidence.py`), which keep
the pixels with `map < np.percentile(map, percentile)` (LeRF: of `1 - map`):
`percentile` is the share *kept*, so removing p% is `percentile=100 - p`.
The removed pixels are filled by `NoisyLinearImputer(noise=0.01)`, the ROAD
authors' system (weights 1/6 and 1/12), with `noise * randn` added in the
input's own units, unclipped. `PerturbationConfidenceMetric.__call__` returns
the target's score after imputation minus before (a confidence difference);
keras_ptame's `road` returns an accuracy. Both quantities are computed from
both sides here: accuracy from their imputed images (`return_visualization`),
the confidence difference from keras_ptame's own removal, fill and scores.
"""

import numpy as np
from agreement_common import ORDERS, PERCENTAGES, TAGS, Row, max_abs, to_nchw

from keras_ptame.metrics import removal_masks, road
from keras_ptame.metrics.imputation import noisy_linear_imputation
from keras_ptame.models.classifier_scores import as_backbone, class_scores


class _KeptRecorder:
    """Stands in for their imputer: records the mask it is given (1 = kept)."""

    def __call__(self, image, kept):
        self.kept = kept.numpy() > 0.5
        return image


def gradcam_removed(maps, percentage, order):
    """The pixels their `Remove*RelevantFirst` removes, bool `(N, H, W)`."""
    import torch
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )

    rule = RemoveMostRelevantFirst if order == "morf" else RemoveLeastRelevantFirst
    recorder = _KeptRecorder()
    perturbation = rule(100 - percentage, recorder)
    removed = []
    for saliency in maps:
        perturbation(torch.zeros((1,) + saliency.shape), torch.from_numpy(saliency))
        removed.append(~recorder.kept)
    return np.stack(removed)


def gradcam_road(module, images, maps, classes, percentage, order, noise=0.0):
    """Their ROAD at one percentage: (confidence differences, imputed NHWC images)."""
    import torch
    from pytorch_grad_cam.metrics.road import (
        ROADLeastRelevantFirst,
        ROADMostRelevantFirst,
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    metric = (ROADMostRelevantFirst if order == "morf" else ROADLeastRelevantFirst)(
        100 - percentage
    )
    metric.perturbation.imputer.noise = noise
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    torch.manual_seed(0)
    differences, imputed = metric(
        torch.from_numpy(to_nchw(images)),
        maps,
        targets,
        module,
        return_visualization=True,
    )
    return differences, imputed.numpy().transpose(0, 2, 3, 1)


def _counts(removed):
    return removed.reshape(len(removed), -1).sum(axis=1)


THRESHOLD_COUNT = {
    "morf": "n − int(n(1−p)) + 1 pixels (all at or above the int(n(1−p))-th "
    "smallest value)",
    "lerf": "int(n·p) pixels (all at or below the int(n·p)-th smallest value)",
}


def _selection_rows(maps, theirs):
    rows = []
    for order in ORDERS:
        whys = {
            "threshold": "definitional: keras_ptame's default (the P-TAME "
            "authors' rule, `keras_ptame/metrics/selection.py`) removes "
            f"{THRESHOLD_COUNT[order]}; grad-cam keeps `map < np.percentile(map, "
            "100−p)` (linear interpolation; LeRF on `1 − map`) and removes "
            "n − ceil((1−p)(n−1)) pixels (n = H·W)",
            "rank": "`selection='rank'` removes round(p·n) pixels, equal to "
            "grad-cam's n − ceil((1−p)(n−1)) at n = 1296 but not for every n "
            "(n = 1024 at 10%: 102 against 103)",
        }
        for selection, why in whys.items():
            ours = {p: removal_masks(maps, p, order, selection) for p in PERCENTAGES}
            only_one = sum(int((ours[p] ^ theirs[order][p]).sum()) for p in PERCENTAGES)
            rows.append(
                Row(
                    key=f"removed_{order}_{selection}",
                    metric=f"ROAD {TAGS[order]}: pixels removed per image at "
                    f"10/30/50/70%, `selection='{selection}'`; difference: pixels "
                    "in one set only (all images)",
                    ours=np.array([_counts(ours[p])[0] for p in PERCENTAGES]),
                    theirs=np.array(
                        [_counts(theirs[order][p])[0] for p in PERCENTAGES]
                    ),
                    difference=float(only_one),
                    why=why,
                    tolerance=0 if selection == "rank" else None,
                )
            )
    return rows


def gradcam_rows(inputs, module, map_name="gradient"):
    """The ROAD rows against pytorch-grad-cam, both orders, noise 0 and defaults."""
    maps = inputs.maps[map_name]
    images = inputs.images.astype(np.float32)
    backbone = as_backbone(inputs.classifier)
    theirs_removed = {
        order: {p: gradcam_removed(maps, p, order) for p in PERCENTAGES}
        for order in ORDERS
    }
    rows = _selection_rows(maps, theirs_removed)
    for order in ORDERS:
        rows.extend(
            _road_rows(inputs, module, backbone, images, maps, order, theirs_removed)
        )
    rows.append(_defaults_row(inputs, module, maps))
    return rows


def _road_rows(inputs, module, backbone, images, maps, order, theirs_removed):
    fill_gap, ours_acc, theirs_acc, ours_conf, theirs_conf = 0.0, [], [], [], []
    for p in PERCENTAGES:
        differences, imputed = gradcam_road(
            module, images, maps, inputs.classes, p, order
        )
        # keras_ptame's fill of the very pixels grad-cam removed.
        same_set = np.stack(
            [
                noisy_linear_imputation(image, removed, noise=0.0)
                for image, removed in zip(images, theirs_removed[order][p])
            ]
        )
        fill_gap = max(fill_gap, max_abs(same_set, imputed))
        _, predictions = class_scores(backbone, imputed, inputs.classes)
        theirs_acc.append(float(np.mean(predictions == inputs.classes)))
        theirs_conf.append(float(np.mean(differences)))
        # keras_ptame's own removal (rank) and fill, scored by keras_ptame.
        own = removal_masks(maps, p, order, "rank")
        filled = np.stack(
            [noisy_linear_imputation(i, r, noise=0.0) for i, r in zip(images, own)]
        )
        scores, _ = class_scores(backbone, filled, inputs.classes)
        ours_conf.append(float(np.mean(scores - inputs.probs)))
    kwargs = dict(order=order, percentages=PERCENTAGES, noise=0.0)
    for selection in ("rank", "threshold"):
        result = road(inputs.classifier, inputs.images, maps, inputs.classes,
                      selection=selection, **kwargs)  # fmt: skip
        ours_acc.append([result["accuracy"][p] for p in PERCENTAGES])
    tag = TAGS[order]
    road_file = "`pytorch_grad_cam/metrics/road.py` `NoisyLinearImputer`"
    return [
        Row(
            key=f"fill_{order}",
            metric=f"ROAD {tag}: linear imputation, noise 0, of the same removed "
            "pixels (all images and percentages); largest absolute difference on 0–255",
            ours="`noisy_linear_imputation`",
            theirs=road_file,
            difference=fill_gap,
            why="same system (8 neighbours, 1/6 and 1/12); they solve in float64 "
            "and return float32",
            tolerance=1e-3,
        ),
        Row(
            key=f"accuracy_{order}_rank",
            metric=f"ROAD {tag} accuracy at 10/30/50/70%, noise 0, "
            "`selection='rank'` (theirs: argmax of their imputed images)",
            ours=np.array(ours_acc[0]),
            theirs=np.array(theirs_acc),
            difference=max_abs(ours_acc[0], theirs_acc),
            why="",
            tolerance=0,
        ),
        Row(
            key=f"accuracy_{order}_threshold",
            metric=f"ROAD {tag} accuracy, noise 0, `selection='threshold'` "
            "(keras_ptame's default)",
            ours=np.array(ours_acc[1]),
            theirs=np.array(theirs_acc),
            difference=max_abs(ours_acc[1], theirs_acc),
            why="definitional: the threshold rule removes a pixel or two more "
            "(MoRF) or fewer (LeRF) per image than grad-cam (rows above), and "
            "a prediction can turn on them",
        ),
        Row(
            key=f"confidence_{order}",
            metric=f"ROAD {tag}: p(class) on the imputed image − on the image, mean over "
            "images, at 10/30/50/70%, noise 0 (grad-cam's score with "
            "`ClassifierOutputSoftmaxTarget`; keras_ptame recomputed from "
            "`removal_masks(selection='rank')`, `noisy_linear_imputation`, "
            "class scores)",
            ours=np.array(ours_conf),
            theirs=np.array(theirs_conf),
            difference=max_abs(ours_conf, theirs_conf),
            why="keras_ptame's `road` reports the accuracy, not this difference",
            tolerance=1e-5,
        ),
    ]


def _defaults_row(inputs, module, maps):
    theirs = []
    for p in PERCENTAGES:
        _, imputed = gradcam_road(
            module, inputs.images, maps, inputs.classes, p, "morf", noise=0.01
        )
        predictions = np.asarray(module(_tensor(imputed)).detach()).argmax(-1)
        theirs.append(float(np.mean(predictions == inputs.classes)))
    ours = road(inputs.classifier, inputs.images, maps, inputs.classes)["accuracy"]
    ours = [ours[p] for p in PERCENTAGES]
    return Row(
        key="accuracy_morf_defaults",
        metric="ROAD MoRF accuracy, each library's defaults",
        ours=np.array(ours),
        theirs=np.array(theirs),
        difference=max_abs(ours, theirs),
        why="definitional: keras_ptame's noise is 0.01 of the pixel range "
        "(σ = 2.55 on 0–255, clipped to [0, 255]) and its default selection "
        "the threshold rule; grad-cam's `NoisyLinearImputer(noise=0.01)` adds "
        "0.01·randn in the input's units (σ = 0.01 on these 0–255 inputs, "
        "unclipped) to percentile-selected pixels",
    )


def _tensor(images_nhwc):
    import torch

    return torch.from_numpy(to_nchw(images_nhwc))
