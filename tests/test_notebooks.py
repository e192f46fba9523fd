"""Every notebook runs end to end, offline (tiny local presets, mocked tfds)."""

import os

import pytest

from tests.helpers.notebooks import NOTEBOOKS, set_offline

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NAMES = sorted(name for name in os.listdir(NOTEBOOKS) if name.endswith(".ipynb"))


def test_every_notebook_is_tested():
    assert NAMES == ["01_quickstart.ipynb", "02_backends.ipynb", "03_serving.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_installs_from_the_package_source_and_follows_the_classifier(name):
    cells = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4).cells
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
    assert any("kp.recipes.get(CLASSIFIER)" in source for source in code)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_offline(name, tmp_path):
    notebook = set_offline(nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4))
    client = nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        # Files the notebook writes go to a scratch folder.
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
