"""Every notebook runs end to end, offline (tiny local presets, mocked tfds)."""

import os

import pytest

from tests.helpers.notebooks import NOTEBOOKS, execute_offline, parameters_cell

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NAMES = sorted(name for name in os.listdir(NOTEBOOKS) if name.endswith(".ipynb"))


def _read(name):
    return nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)


def _ends_on_a_picture(cell):
    return cell.cell_type == "code" and any(
        "image/png" in output.get("data", {}) for output in cell.outputs
    )


def test_every_notebook_is_tested():
    assert NAMES == ["01_quickstart.ipynb", "02_backends.ipynb", "03_serving.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_installs_from_the_package_source_and_follows_the_classifier(name):
    cells = _read(name).cells
    code = [cell.source for cell in cells if cell.cell_type == "code"]
    # The parameters cell comes first and names the source, which the next
    # cell installs: keras-ptame is not on PyPI, so never by name alone.
    assert "parameters" in cells[1].metadata.get("tags", [])
    assert 'PACKAGE = "git+https://github.com/<owner>/keras_ptame"' in code[0]
    installs = [
        line for source in code for line in source.splitlines() if "%pip" in line
    ]
    assert installs == [
        '    %pip install -q "keras-ptame[hub,data,viz,eval] @ {SOURCE}"'
    ]
    assert 'find_spec("keras_ptame") is None' in code[1]
    # Issue 23: any classifier: its recipe when there is one, else the defaults.
    assert any("kp.recipes.for_classifier(CLASSIFIER)" in source for source in code)
    assert "efficientnet_b0_ra_imagenet" in code[0]


# Issue 23: the last mile of each notebook, as a reader meets it.
@pytest.mark.parametrize("name", NAMES)
def test_notebook_restarts_ends_on_labelled_maps_and_shares_offline_mode(name):
    notebook = _read(name)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    # A backend chosen after Keras was imported says to restart the runtime.
    assert "keras.config.backend() !=" in code and "Restart session" in code
    # One shared offline helper, not a copy of it per notebook.
    assert "offline_stand_ins()" in code
    assert "save_tiny_presets" not in code and "mock_data" not in code
    # The training run's own batches bound the shuffle buffer.
    assert "steps=TRAIN_STEPS" in code and "full-size" not in code
    last = notebook.cells[-1]
    assert "visualize.grid(" in last.source and "flat=" in last.source
    assert "imagenet_class_names()" in code
    # Stored with the outputs of the offline run, which the notebook says,
    # and with the parameters as the user sees them.
    assert _ends_on_a_picture(last)
    assert "OFFLINE = False" in parameters_cell(notebook).source
    assert "offline CI run" in notebook.cells[0].source


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_offline(name, tmp_path):
    notebook = execute_offline(
        _read(name), tmp_path, backend=os.environ.get("KERAS_BACKEND")
    )
    assert _ends_on_a_picture(notebook.cells[-1])
