"""Tables as text: the one Markdown and CSV writer of the evaluation table,
the tuning results and the demo's metrics, and the meaning of the metric
columns they share."""

import csv
import io

# What each metric column means and which way is better, for the legends
# below the tables (a column is explained by the first key it starts with).
METRIC_LEGEND = {
    "AD": "Average Drop, % (lower is better)",
    "IC": "Increase in Confidence, % (higher is better)",
    "MoRF": "ROAD accuracy, most relevant removed first, % (lower is better)",
    "LeRF": "ROAD accuracy, least relevant removed first, % (higher is better)",
    "pointing_game": "map peak on the object, % (higher is better)",
    "mass_inside": "share of map mass on the object, % (higher is better)",
    "deletion": "deletion curve area, probability (lower is better)",
    "insertion": "insertion curve area, probability (higher is better)",
}


def markdown_table(header, rows, text_columns=1, notes=(), legend=None):
    """A Markdown table of text cells, with notes and a legend below it.

    Args:
        header: list of str, the column names.
        rows: iterable of lists of str, the cells of each row.
        text_columns: int. How many leading columns hold text (left
            aligned); the others hold numbers (right aligned). Defaults to 1.
        notes: iterable of str, one bullet each below the table.
        legend: optional dict column prefix -> meaning: a bullet for each
            prefix that starts a column name, in the legend's order.

    Returns:
        str, ending with a newline.
    """
    aligns = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    if notes or legend:
        lines.append("")
    lines += [f"- {note}" for note in notes]
    lines += [
        f"- `{key}`: {text}"
        for key, text in (legend or {}).items()
        if any(column.startswith(key) for column in header)
    ]
    return "\n".join(lines) + "\n"


def csv_table(header, rows):
    """The rows as CSV text, values at full precision (`None` empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for values in rows:
        writer.writerow(["" if value is None else value for value in values])
    return buffer.getvalue()
