"""Confidence intervals of the table's columns, and the winners they decide.

Every column of the table is a mean over the images of one value per image
(an image's drop, whether it kept its class, its curve area, ...). A column
whose values are all 0 or 100 (a share of images: IC, each ROAD accuracy, a
pointing game of unique peaks, `flat`, `misranked`) gets the exact binomial
(Clopper-Pearson) interval of that share; any other column (AD, the ROAD
summaries, mass inside, ...) the percentile bootstrap over images, with the
same resampled images for every method and column.

A column has a winner only where the best method's interval overlaps no
other method's; otherwise the methods whose intervals overlap the best one's
tie.
"""

import numpy as np
from scipy import stats

# Bootstrap resamples of the images: the intervals' ends move by about
# 1/sqrt(RESAMPLES) of their width from one seed to the next.
RESAMPLES = 2000
# Columns with no interval: timings, and counts that are not means.
NO_INTERVAL = ("seconds", "count")


def check_level(level):
    """Refuses an interval level outside (0, 1); `None` (no intervals) passes."""
    if level is None:
        return
    if (
        isinstance(level, bool)
        or not isinstance(level, (int, float))
        or not 0 < level < 1
    ):
        raise ValueError(
            "`intervals` must be a confidence level in (0, 1), e.g. 0.95, or "
            f"None. Received: intervals={level!r}"
        )


def binomial_interval(successes, count, level=0.95):
    """The exact (Clopper-Pearson) interval of a share `successes / count`.

    Args:
        successes: int, the images that count (kept their class, ...).
        count: int, the images.
        level: float in (0, 1). Defaults to `0.95`.

    Returns:
        `(low, high)`: floats in [0, 1].
    """
    alpha = 1.0 - level
    low = stats.beta.ppf(alpha / 2, successes, count - successes + 1)
    high = stats.beta.ppf(1 - alpha / 2, successes + 1, count - successes)
    return (
        0.0 if successes == 0 else float(low),
        1.0 if successes == count else float(high),
    )


def bootstrap_means(values, resamples):
    """Means of `values` `(N,)` over the resampled images `(B, N)`: `(B,)`."""
    return np.asarray(values, dtype=np.float64)[resamples].mean(axis=1)


def column_interval(values, resamples, level=0.95):
    """The interval of one column's mean from its images' values `(N,)`.

    Shares (every value 0 or 100) get `binomial_interval`, in percent; other
    columns the percentile bootstrap over `resamples`, the rows of image
    indices drawn with replacement `(B, N)`.
    """
    values = np.asarray(values, dtype=np.float64)
    if np.isin(values, (0.0, 100.0)).all():
        low, high = binomial_interval(int(np.sum(values == 100.0)), len(values), level)
        return 100.0 * low, 100.0 * high
    alpha = 1.0 - level
    means = bootstrap_means(values, resamples)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def table_intervals(per_image, level=0.95, seed=0, resamples=RESAMPLES):
    """Intervals of every method's columns: method -> column -> `(low, high)`.

    Args:
        per_image: dict method -> dict column -> array `(N,)` of the images'
            values, the same images for every method.
        level: float in (0, 1). Defaults to `0.95`.
        seed: int. Seed of the bootstrap's draws: the same seed gives the
            same intervals. Defaults to `0`.
        resamples: int. Bootstrap resamples. Defaults to `RESAMPLES`.

    Returns:
        dict method -> dict column -> `(low, high)`, for every column but
        `NO_INTERVAL`'s.
    """
    check_level(level)
    count = len(next(iter(next(iter(per_image.values())).values())))
    draws = np.random.default_rng(seed).integers(0, count, size=(resamples, count))
    return {
        method: {
            column: column_interval(values, draws, level)
            for column, values in columns.items()
            if column not in NO_INTERVAL
        }
        for method, columns in per_image.items()
    }


def decide(values, intervals, lower_is_better):
    """The winner of one column, or the methods that tie for it.

    Args:
        values: dict method -> the column's value.
        intervals: dict method -> `(low, high)` of that value.
        lower_is_better: bool. The column's direction.

    Returns:
        `("winner", [method])` where the best method's interval overlaps no
        other's; else `("tie", methods)`: the best method and every method
        whose interval overlaps its own, best first.
    """
    order = sorted(values, key=values.get, reverse=not lower_is_better)
    best_low, best_high = intervals[order[0]]
    tied = [
        method
        for method in order
        if intervals[method][0] <= best_high and intervals[method][1] >= best_low
    ]
    return ("winner" if len(tied) == 1 else "tie"), tied
