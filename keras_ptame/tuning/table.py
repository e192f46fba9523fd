"""The results of a search as a table: one row per trial, best first.

Written as `results.csv` (full precision) and `results.md` into the tuning
directory after every trial, so that an interrupted search leaves the table
of the trials it finished.
"""

import csv
import io
import os

from keras_ptame.utils.files import write_text

# Scores as the evaluation table shows them: ROAD and AD/IC in percent,
# areas as probabilities.
LEGEND = {
    "objective": "the objective searched (higher is better)",
    "MoRF": "ROAD accuracy area, most relevant removed first, % (lower is better)",
    "LeRF": "ROAD accuracy area, least relevant removed first, % (higher is better)",
    "AD": "Average Drop, % (lower is better)",
    "IC": "Increase in Confidence, % (higher is better)",
    "deletion": "deletion curve area (lower is better)",
    "insertion": "insertion curve area (higher is better)",
    "kept": "training share of masked images keeping their class, last epoch",
    "seconds": "wall-clock seconds of the trial (training and scoring)",
}


def trial_rows(trials, names):
    """One dict per trial, completed ones best first, then the others.

    Args:
        trials: KerasTuner `Trial`s.
        names: the searched settings, the table's last columns.
    """
    rows = []
    for trial in trials:
        row = {"trial": trial.trial_id, "status": trial.status}
        for metric in trial.metrics.metrics:
            row[metric] = trial.metrics.get_last_value(metric)
        row.update({name: trial.hyperparameters.values.get(name) for name in names})
        rows.append(row)

    return sorted(rows, key=lambda row: rank(row.get("objective"), row["trial"]))


def rank(score, trial_id):
    """Sort key, best first: higher scores, ties to the earlier trial (trial 0
    is the starting recipe), unscored trials last. `tune` returns the first."""
    number = int(trial_id) if str(trial_id).isdigit() else trial_id
    return (score is None, -(score or 0.0), number)


def columns_of(rows, names):
    """The columns: trial, status, objective, the scores, then the settings."""
    scores = []
    for row in rows:
        for key in row:
            if key not in ("trial", "status", "objective", *names, *scores):
                scores.append(key)
    # The trial's duration after the scores, before the settings.
    scores.sort(key=lambda key: key in ("kept", "seconds"))
    return ["trial", "status", "objective", *scores, *names]


def to_csv(rows, columns):
    """The rows as CSV text, full precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return buffer.getvalue()


def to_markdown(rows, columns, notes=()):
    """The rows as a Markdown table, notes and a legend below it."""
    lines = [
        "| " + " | ".join(columns) + " |",
        "|"
        + "|".join("---" if c in ("trial", "status") else "---:" for c in columns)
        + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    lines.append("")
    lines += [f"- {note}" for note in notes]
    lines += [
        f"- `{key}`: {text}"
        for key, text in LEGEND.items()
        if any(column.startswith(key) for column in columns)
    ]
    return "\n".join(lines) + "\n"


def write(directory, rows, columns, notes=()):
    """Writes `results.csv` and `results.md` into `directory`; returns their paths."""
    paths = []
    for name, text in (
        ("results.csv", to_csv(rows, columns)),
        ("results.md", to_markdown(rows, columns, notes)),
    ):
        path = os.path.join(directory, name)
        write_text(path, text)
        paths.append(path)
    return paths


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
