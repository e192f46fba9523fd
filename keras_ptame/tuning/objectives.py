"""What `kp.tune` maximises: the faithfulness of the maps on held-out images.

Each objective is a score in [-1, 1], higher better, from the metrics of
`keras_ptame.metrics`:

- `"road"` (the default): ROAD accuracy area, least relevant pixels removed
  first minus most relevant first (`LeRF - MoRF`, Rong et al. 2022).
- `"adic"`: the mean over 100/50/15% of pixels kept of `IC - AD` (Increase
  in Confidence minus Average Drop), the P-TAME paper's metrics.
- `"deletion"`: insertion area minus deletion area (Petsiuk et al. 2018).

A mix weighs them: `{"road": 1, "adic": 0.5}` or `"road=1,adic=0.5"` is the
weighted mean of the two.

Why ROAD by default: it scores only the order of the pixels, which is what a
saliency map claims, so it cannot be raised by making maps larger or
brighter; its imputation fills removed pixels from their neighbours, so the
classifier is not reading the shape of the removed region (the bias of
black-fill deletion); and the gap takes both ends of the ranking into
account: removing the top pixels must hurt, removing the bottom ones must
not. AD/IC multiply the image by the soft map, so a map of ones scores a
perfect AD at 100%: it rewards large maps, against the area term, and is
better used in a mix.
"""

import dataclasses

import numpy as np

from keras_ptame.evaluation.scorer import Scorer
from keras_ptame.metrics.confidence import FRACTIONS

DEFAULT_OBJECTIVE = "road"


def _road(scorer, maps):
    columns = {**scorer.road(maps, order="morf"), **scorer.road(maps, order="lerf")}
    scores = {key: columns[key] for key in ("MoRF", "LeRF")}
    return (scores["LeRF"] - scores["MoRF"]) / 100.0, scores


def _adic(scorer, maps):
    scores = scorer.confidence(maps)
    gaps = [
        scores[f"IC{100 * fraction:g}"] - scores[f"AD{100 * fraction:g}"]
        for fraction in FRACTIONS
    ]
    return float(np.mean(gaps)) / 100.0, scores


def _deletion(scorer, maps):
    scores = scorer.deletion_insertion(maps)
    return scores["insertion"] - scores["deletion"], scores


# name -> (description, function(scorer, maps) -> (value, columns)).
OBJECTIVES = {
    "road": ("ROAD LeRF minus MoRF area", _road),
    "adic": ("mean of IC - AD at 100/50/15% kept, / 100", _adic),
    "deletion": ("insertion area minus deletion area", _deletion),
}


def parse_objective(objective):
    """The objective as a dict name -> weight.

    Args:
        objective: str or dict. A name of `OBJECTIVES`, a mix as text
            (`"road=1,adic=0.5"`) or as a dict name -> weight.

    Returns:
        dict name -> positive float, in `OBJECTIVES`' order.
    """
    if isinstance(objective, str):
        weights = {}
        for part in objective.split(","):
            name, _, weight = part.partition("=")
            try:
                weights[name.strip()] = float(weight) if weight else 1.0
            except ValueError:
                raise ValueError(
                    f"An objective's weight must be a number. Received: {part!r}"
                ) from None
    elif isinstance(objective, dict):
        weights = dict(objective)
    else:
        raise ValueError(
            "`objective` must be a name, 'name=weight,...' or a dict. "
            f"Received: objective={objective!r}"
        )
    unknown = sorted(set(weights) - set(OBJECTIVES))
    if unknown or not weights:
        raise ValueError(
            f"Unknown objective. Received: {unknown or objective!r}. "
            f"Known: {sorted(OBJECTIVES)}"
        )
    if not all(float(weight) > 0 for weight in weights.values()):
        raise ValueError(f"Objective weights must be > 0. Received: {weights}")
    return {name: float(weights[name]) for name in OBJECTIVES if name in weights}


def describe(weights):
    """One line saying what the objective is, for the table's notes."""
    parts = [f"{weight:g} x {OBJECTIVES[name][0]}" for name, weight in weights.items()]
    if len(parts) == 1:
        return OBJECTIVES[next(iter(weights))][0]
    return f"weighted mean of {' and '.join(parts)}"


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    """A weighted objective of the maps of fixed held-out images.

    Attributes:
        weights: dict name -> weight (see `parse_objective`).
        scorer: the evaluation's `Scorer` of the held-out images, which
            scores the metrics the objective weighs (its fractions of AD/IC,
            a name of `OBJECTIVES`' `"adic"`, must be `FRACTIONS`).
    """

    weights: dict
    scorer: Scorer

    def __call__(self, maps):
        """dict: `"objective"` and each metric's columns."""
        row, total = {}, 0.0
        for name, weight in self.weights.items():
            value, columns = OBJECTIVES[name][1](self.scorer, maps)
            row.update(columns)
            total += weight * value
        row["objective"] = total / sum(self.weights.values())
        return row
