"""The table `evaluate` returns: rows of methods, columns of scores."""

import os

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
    """

    def __init__(self, columns, rows, notes=()):
        self.columns = list(columns)
        self.rows = dict(rows)
        self.notes = list(notes)
        # `evaluate` attaches the same scores per explained class here.
        self.per_class = None

    def to_markdown(self, digits=2):
        """The table in Markdown, with notes and a legend below it."""
        rows = (
            [name]
            + [_format(row.get(column), column, digits) for column in self.columns]
            for name, row in self.rows.items()
        )
        return markdown_table(
            ["method", *self.columns], rows, notes=self.notes, legend=LEGEND
        )

    def to_csv(self):
        """The table as CSV text, full precision."""
        rows = (
            [name] + [row.get(column) for column in self.columns]
            for name, row in self.rows.items()
        )
        return csv_table(["method", *self.columns], rows)

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
