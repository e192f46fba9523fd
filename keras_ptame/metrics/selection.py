"""Which pixels AD/IC keep and ROAD removes: the authors' rule or exact counts.

The P-TAME authors' evaluation selects pixels by comparing each map with one
of its own values, its `k`-th smallest (`torch.kthvalue`, counted from 1),
with `k = int(H * W * share)` truncated, and a strict comparison: every
pixel tied with that value falls on the same side. On a map without ties
that keeps or removes a pixel more or less than `round(share * H * W)` (at
224x224: AD/IC at 15% keep 7,527 pixels, not 7,526; ROAD MoRF removes 5,019,
15,054, 25,089 and 35,125 at 10/30/50/70%, LeRF 5,017, 15,052, 25,088 and
35,123). On a map with ties (a constant map, a binary one, the zeros of a
rectified map such as Grad-CAM's) the whole tied group moves at once: a
constant map keeps nothing in AD/IC below 100% and loses every pixel at every
ROAD step.

`selection="threshold"` follows them, so that scores are comparable to
theirs; `selection="rank"` (keras_ptame's earlier rule) keeps or removes
exactly `round(share * H * W)` pixels, ties broken in raster order, so that
every step removes the share it names whatever the map's ties.
"""

import numpy as np

from keras_ptame.utils.maps import ranking
from keras_ptame.utils.validation import check_option

SELECTIONS = ("threshold", "rank")


def check_selection(selection):
    """Checks the name of a pixel selection rule: one of `SELECTIONS`."""
    return check_option("selection", selection, SELECTIONS)


def kth_smallest(maps, k):
    """The `k`-th smallest value of each map (`k` from 1), as `(N, 1)`.

    `k = 0` gives `-inf`: a threshold below every pixel.
    """
    flat = np.asarray(maps).reshape(len(maps), -1)
    if k <= 0:
        return np.full((len(flat), 1), -np.inf, flat.dtype)
    k = min(int(k), flat.shape[1])
    return np.partition(flat, k - 1, axis=1)[:, k - 1 : k]


def above_kth(maps, share):
    """bool `(N, H, W)`: pixels strictly above the `int(H * W * share)`-th smallest.

    The authors' rule for the pixels AD/IC keep (`share = 1 - fraction`) and
    the pixels LeRF keeps (`share` = the share removed).
    """
    maps = np.asarray(maps)
    threshold = kth_smallest(maps, int(maps[0].size * share))
    return (maps.reshape(len(maps), -1) > threshold).reshape(maps.shape)


def below_kth(maps, share):
    """bool `(N, H, W)`: pixels strictly below the `int(H * W * share)`-th smallest.

    The authors' rule for the pixels MoRF keeps (`share = 1 -` the share
    removed); `k = 0` keeps none.
    """
    maps = np.asarray(maps)
    threshold = kth_smallest(maps, int(maps[0].size * share))
    return (maps.reshape(len(maps), -1) < threshold).reshape(maps.shape)


def top_pixels(maps, count, descending=True):
    """bool `(N, H, W)`: exactly `count` pixels per map, the highest first
    (lowest with `descending=False`), ties in raster order."""
    maps = np.asarray(maps)
    order = ranking(maps, descending=descending)[:, :count]
    chosen = np.zeros((len(maps), maps[0].size), dtype=bool)
    np.put_along_axis(chosen, order, True, axis=1)
    return chosen.reshape(maps.shape)
