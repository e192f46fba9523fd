"""The three methods' explainers (P-TAME, Grad-CAM, RISE) for the checks,
each noting the maps it returns (`Noted`)."""

import numpy as np

METHODS = ("P-TAME", "Grad-CAM", "RISE")
# Held-out images whose maps the figure shows.
SHOWN = 2


class Noted:
    """An explainer whose `explain` notes, in `notes`, the first `SHOWN` maps
    of every call and, for P-TAME, the shares of maps flagged flat (returned
    as zeros) and misranked (their class failed the removal check that `fit`
    runs; returned as they are)."""

    def __init__(self, explainer, notes):
        self.explainer, self.notes = explainer, notes

    def explain(self, images, classes=None):
        if hasattr(self.explainer, "explain_outputs"):
            outputs = self.explainer.explain_outputs(images, classes, batch_size=64)
            for flag in ("flat", "misranked"):
                self.notes[flag].append(np.asarray(outputs[flag], bool))
            maps = outputs["maps"]
        else:
            maps = self.explainer.explain(images, classes)
        self.notes.setdefault("step 0", maps)
        self.notes["maps"].append(np.asarray(maps[:SHOWN]))
        self.notes.setdefault("all", []).append(np.asarray(maps))
        return maps


def makers(ptame, settings):
    """Each method's `make_explainer` (Grad-CAM at the last convolution of
    each classifier it is given, `last_conv`) and the notes of its calls."""
    from keras_ptame import baselines

    makers = {
        "P-TAME": ptame,
        "Grad-CAM": lambda model: baselines.GradCAM(model, last_conv(model)),
        "RISE": lambda model: baselines.RISE(
            model, num_masks=settings["rise_masks"], seed=settings["seed"]
        ),
    }
    notes = {method: {"flat": [], "misranked": [], "maps": []} for method in makers}

    def noting(method):
        return lambda model: Noted(makers[method](model), notes[method])

    return {method: noting(method) for method in makers}, notes


def last_conv(model):
    """Grad-CAM's usual choice: the last layer with a (B, h, w, C) output."""
    for layer in reversed(model.layers):
        if len(layer.output.shape) == 4:
            return layer.name
    raise ValueError("The classifier has no spatial layer for Grad-CAM.")
