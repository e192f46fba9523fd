"""The notebooks as the tests run them: offline, as papermill would set them."""

import os

NOTEBOOKS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "notebooks",
)


def set_offline(notebook):
    """Sets `OFFLINE = True` in the cell tagged `parameters`, as papermill would.

    Args:
        notebook: an `nbformat` notebook node, changed in place.

    Returns:
        The same notebook.
    """
    for cell in notebook.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            assert "OFFLINE = False" in cell.source, "the parameters cell sets OFFLINE"
            cell.source = cell.source.replace("OFFLINE = False", "OFFLINE = True")
            return notebook
    raise AssertionError("no cell is tagged `parameters`")
