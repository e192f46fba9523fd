"""The table `evaluate` returns: rows of methods, columns of scores."""

import os

from keras_ptame.evaluation.intervals import decide, table_intervals
from keras_ptame.models.removal_check import MARGIN
from keras_ptame.utils.files import check_outputs, write_text
from keras_ptame.utils.tables import METRIC_LEGEND, csv_table, markdown_table

# What each column means and which way is better, for the table's legend.
LEGEND = {
    **METRIC_LEGEND,
    "seconds": "seconds per explanation, wall clock (lower is better)",
    "count": "images explained for the class",
    "flat": "maps flagged flat by the explainer, or constant (no evidence found), %",
    "misranked": "maps the removal check finds misranked (a flat map never is): "
    "they do not carry their class, as removing their top half cost it less "
    f"than {MARGIN:.0%} of its probability on the whole image more than "
    "removing their bottom half (removed pixels filled from the kept ones; see "
    "`keras_ptame.models.removal_check`): typically they cover the background, "
    "or the class needs nothing the map shows, % (lower is better)",
}


class EvaluationTable:
    """The result of `evaluate`: one row per method, one column per score.

    Attributes:
        columns: list of str, the column names in order.
        rows: dict method name -> dict column -> float.
        notes: list of str, how the numbers were obtained.
        per_class: `EvaluationTable` or `None`: from `evaluate`, one row per
            method and explained class (`count`, `flat`, `misranked`, AD/IC
            with the whole map, localisation), saved beside it as `<stem>_per_class`.
        per_image: dict method -> dict column -> array `(N,)` or `None`:
            from `evaluate`, the images' own values whose means the columns
            are (all but `seconds`), for intervals or paired tests of one's
            own.
        intervals: dict method -> dict column -> `(low, high)` or `None`:
            the confidence intervals of `set_intervals` (`evaluate(...,
            intervals=0.95)`), shown beside the values, and `level` theirs.
    """

    def __init__(self, columns, rows, notes=()):
        self.columns = list(columns)
        self.rows = dict(rows)
        self.notes = list(notes)
        # `evaluate` attaches the same scores per explained class here.
        self.per_class = None
        self.per_image = None
        self.intervals = None
        self.level = None

    def set_intervals(self, level=0.95, seed=0):
        """Computes every column's interval from `per_image` at `level`.

        See `keras_ptame.evaluation.intervals`: the exact binomial interval
        for shares of images, the percentile bootstrap over images (drawn
        from `seed`) for the other columns; `seconds` has none.
        """
        if self.per_image is None:
            raise ValueError(
                "This table has no per-image values to draw intervals from: "
                "only `evaluate`'s tables do."
            )
        self.intervals = table_intervals(self.per_image, level, seed)
        self.level = level

    def winners(self):
        """Each column's winner, or its tie, as the intervals decide.

        Returns:
            dict column -> `("winner", [method])` or `("tie", [methods])`
            (see `keras_ptame.evaluation.intervals.decide`), for the columns
            with a direction (the legend's "lower/higher is better") and
            intervals; empty without intervals.
        """
        return {
            column: self._decide(column, list(self.rows))
            for column in self._decidable()
        }

    def compare(self, first, second):
        """Method `first` against `second`, column by column, as the intervals decide.

        Returns:
            dict column -> `"ahead"`, `"behind"` or `"tie"` (their intervals
            overlap), for the columns `winners` decides.
        """
        for name in (first, second):
            if name not in self.rows:
                raise ValueError(f"No method {name!r}. Methods: {list(self.rows)}")
        if first == second:
            raise ValueError(
                f"Compare two different methods. Received: {first!r} twice"
            )
        verdicts = {}
        for column in self._decidable():
            verdict, methods = self._decide(column, [first, second])
            ahead = "ahead" if methods[0] == first else "behind"
            verdicts[column] = "tie" if verdict == "tie" else ahead
        return verdicts

    def _decidable(self):
        """The columns with a direction and intervals."""
        return [
            column
            for column in self.columns
            if lower_is_better(column) is not None and self._has_interval(column)
        ]

    def _decide(self, column, names):
        values = {name: self.rows[name][column] for name in names}
        intervals = {name: self.intervals[name][column] for name in names}
        return decide(values, intervals, lower_is_better(column))

    def to_markdown(self, digits=2):
        """The table in Markdown, with notes and a legend below it.

        With intervals, each value is followed by its interval `[low, high]`
        and each column's winner is in bold; a column without a bold value
        is a tie (see `winners`).
        """
        winners = {
            column: methods[0]
            for column, (verdict, methods) in self.winners().items()
            if verdict == "winner"
        }
        rows = (
            [name]
            + [
                self._cell(name, column, digits, winners.get(column) == name)
                for column in self.columns
            ]
            for name, row in self.rows.items()
        )
        return markdown_table(
            ["method", *self.columns], rows, notes=self._notes(), legend=LEGEND
        )

    def _cell(self, name, column, digits, bold):
        text = _format(self.rows[name].get(column), column, digits)
        interval = (self.intervals or {}).get(name, {}).get(column)
        if interval is not None:
            low, high = (_format(end, column, digits) for end in interval)
            text = f"{text} [{low}, {high}]"
        return f"**{text}**" if bold else text

    def _notes(self):
        if self.intervals is None:
            return self.notes
        return [
            *self.notes,
            f"`[low, high]`: the {self.level:.0%} confidence interval of the mean "
            "over images: exact binomial (Clopper-Pearson) for shares of "
            "images (IC, the ROAD accuracies, `flat`, `misranked`, a pointing "
            "game without ties), the percentile bootstrap over images otherwise. "
            "In bold: a column's best value where its interval overlaps no other "
            "method's; a column without one is a tie.",
        ]

    def to_csv(self):
        """The table as CSV text, full precision; with intervals, each
        column's `<column>_low` and `<column>_high` after it."""
        header = ["method"]
        for column in self.columns:
            header.append(column)
            if self._has_interval(column):
                header += [f"{column}_low", f"{column}_high"]
        rows = ([name, *self._csv_values(name)] for name in self.rows)
        return csv_table(header, rows)

    def _csv_values(self, name):
        values = []
        for column in self.columns:
            values.append(self.rows[name].get(column))
            if self._has_interval(column):
                values += list(self.intervals[name][column])
        return values

    def _has_interval(self, column):
        return self.intervals is not None and column in next(
            iter(self.intervals.values())
        )

    def file_names(self, stem="evaluation"):
        """The names `save` writes: `<stem>.md`, `<stem>.csv` and the per-class pair."""
        names = [f"{stem}.md", f"{stem}.csv"]
        if self.per_class is not None:
            names += self.per_class.file_names(f"{stem}_per_class")
        return names

    def save(self, directory, stem="evaluation", overwrite=False):
        """Writes `<stem>.md` and `<stem>.csv` into `directory`; returns their paths.

        With the per-class table, `<stem>_per_class.md` and `.csv` too. Files
        that exist are refused (`FileExistsError`, nothing written) unless
        `overwrite`, and never written through a symbolic link inside
        `directory` (`ValueError`).
        """
        check_outputs(directory, self.file_names(stem), overwrite, option="directory")
        paths = []
        for extension, text in (("md", self.to_markdown()), ("csv", self.to_csv())):
            path = os.path.join(directory, f"{stem}.{extension}")
            write_text(path, text)
            paths.append(path)
        if self.per_class is not None:
            paths += self.per_class.save(directory, f"{stem}_per_class", overwrite)
        return paths

    def __repr__(self):
        return self.to_markdown()


def lower_is_better(column):
    """The column's direction from its legend: `True`, `False` or `None`."""
    key = next((key for key in LEGEND if column.startswith(key)), None)
    text = LEGEND.get(key, "")
    if "lower is better" in text:
        return True
    return False if "higher is better" in text else None


def _format(value, column, digits):
    if value is None:
        return ""
    if column == "count":
        return f"{value:.0f}"
    if column == "seconds":
        # Explainers differ by orders of magnitude: keep significant digits.
        return f"{value:.2g}"
    if column in ("deletion", "insertion"):
        return f"{value:.3f}"
    return f"{value:.{digits}f}"
