"""The results of a search as a table: one row per trial, best first.

Written as `results.csv` (full precision) and `results.md` into the tuning
directory after every trial, so that an interrupted search leaves the table
of the trials it finished.
"""

import os

from keras_ptame.utils.files import write_text
from keras_ptame.utils.tables import METRIC_LEGEND, csv_table, markdown_table

# The files `write` writes.
TABLE_FILES = ("results.csv", "results.md")
# The best recipe, beside the table; `kp.recipes.get(path)` reads it.
RECIPE_FILE = "recipe.json"

# Scores as the evaluation table shows them: ROAD and AD/IC in percent,
# areas as probabilities.
TRIAL_LEGEND = {
    "objective": "the objective searched (higher is better)",
    **METRIC_LEGEND,
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
    return csv_table(columns, ([row.get(c) for c in columns] for row in rows))


def to_markdown(rows, columns, notes=()):
    """The rows as a Markdown table, notes and a legend below it."""
    # `columns_of` puts the trial and its status first, the numbers after.
    cells = ([_trial_cell(row.get(c)) for c in columns] for row in rows)
    return markdown_table(
        columns, cells, text_columns=2, notes=notes, legend=TRIAL_LEGEND
    )


def write(directory, rows, columns, notes=()):
    """Writes `results.csv` and `results.md` into `directory`; returns their paths."""
    paths = []
    texts = (to_csv(rows, columns), to_markdown(rows, columns, notes))
    for name, text in zip(TABLE_FILES, texts):
        path = os.path.join(directory, name)
        write_text(path, text)
        paths.append(path)
    return paths


def _trial_cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
