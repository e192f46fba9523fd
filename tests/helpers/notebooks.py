"""The notebooks as the tests run them: offline, as papermill would set them.

`python -m tests.helpers.notebooks` runs the three notebooks offline and
stores them with those outputs (the parameters cell kept as the user sees
it), so that GitHub shows what each cell prints and draws.
"""

import os
import re
import sys
import tempfile
import time

NOTEBOOKS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "notebooks",
)
NAMES = ("01_quickstart.ipynb", "02_backends.ipynb", "03_serving.ipynb")


def parameters_cell(notebook):
    """The cell tagged `parameters` (papermill's convention)."""
    for cell in notebook.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    raise AssertionError("no cell is tagged `parameters`")


def set_offline(notebook, backend=None):
    """Sets `OFFLINE = True` in the cell tagged `parameters`, as papermill would.

    Args:
        notebook: an `nbformat` notebook node, changed in place.
        backend: optional str. Sets `BACKEND` too, where the notebook has
            one (02 trains under JAX whatever is asked). Defaults to `None`
            (the notebook's own).

    Returns:
        The same notebook.
    """
    cell = parameters_cell(notebook)
    assert "OFFLINE = False" in cell.source, "the parameters cell sets OFFLINE"
    cell.source = cell.source.replace("OFFLINE = False", "OFFLINE = True")
    if backend is not None:
        cell.source = re.sub(
            r'^BACKEND = "\w+"', f'BACKEND = "{backend}"', cell.source, flags=re.M
        )
    return notebook


def execute_offline(notebook, directory, backend=None, timeout=900):
    """Runs a notebook offline in a fresh kernel; files it writes go to `directory`.

    Args:
        notebook: an `nbformat` notebook node; its outputs are replaced.
        directory: str. The kernel's working folder.
        backend: optional str, see `set_offline`.
        timeout: int. Seconds a cell may take. Defaults to `900`.

    Returns:
        The same notebook, executed.
    """
    import nbclient

    set_offline(notebook, backend)
    client = nbclient.NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(directory)}},
    )
    client.execute()
    return notebook


def store_offline_outputs(names=NAMES):
    """Runs each notebook offline and stores it with its outputs.

    The parameters cell is put back as the user sees it (`OFFLINE = False`)
    and the streams are tidied as a terminal shows them (`tidy_streams`).

    Returns:
        `{name: seconds}`, how long each notebook took to run.
    """
    import nbformat

    seconds = {}
    for name in names:
        path = os.path.join(NOTEBOOKS, name)
        notebook = nbformat.read(path, as_version=4)
        shown = parameters_cell(notebook).source
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="notebook_") as directory:
            execute_offline(notebook, directory)
        seconds[name] = time.monotonic() - started
        parameters_cell(notebook).source = shown
        tidy_streams(notebook)
        nbformat.validate(notebook)
        nbformat.write(notebook, path)
        print(f"{name}: ran offline in {seconds[name]:.0f} s, stored with its outputs")
    return seconds


# TensorFlow's C++ log lines (absl), which name the machine's CPU and CUDA.
_NATIVE_LOG = re.compile(
    r"^(?:[IWEF]\d{4} [\d:. ]+\d+ \S+:\d+\]|WARNING: All log messages before absl|To enable the following instructions:).*\n?",
    re.M,
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _as_shown(text):
    """Text as a terminal leaves it: backspaces and carriage returns applied."""
    while True:
        shorter = re.sub(r"[^\n\x08]\x08", "", text)
        if shorter == text:
            break
        text = shorter
    text = text.replace("\x08", "")
    lines = [
        line.rsplit("\r", 1)[-1] if "\r" in line else line for line in text.split("\n")
    ]
    return "\n".join(lines)


def tidy_streams(notebook):
    """Merges each cell's consecutive stream outputs and tidies them.

    Keras' progress bar redraws itself with backspaces and carriage returns
    and colours with ANSI codes; what is kept is its last state, as plain
    text. TensorFlow's C++ log lines go; Python's warnings stay.
    """
    for cell in notebook.cells:
        outputs = []
        for output in cell.get("outputs", []):
            previous = outputs[-1] if outputs else None
            if (
                output.output_type == "stream"
                and previous is not None
                and previous.output_type == "stream"
                and previous.name == output.name
            ):
                previous.text += output.text
            else:
                outputs.append(output)
        for output in outputs:
            if output.output_type == "stream":
                text = _NATIVE_LOG.sub("", _ANSI.sub("", output.text))
                output.text = _as_shown(text)
        if "outputs" in cell:
            cell.outputs = [
                output
                for output in outputs
                if output.output_type != "stream" or output.text.strip()
            ]
    return notebook


if __name__ == "__main__":
    store_offline_outputs(sys.argv[1:] or NAMES)
