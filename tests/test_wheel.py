"""The wheel installs into a clean virtual environment and runs there.

The wheel is built from this tree and installed, without dependencies, into
a new venv. The frameworks (Keras, TensorFlow, JAX, PyTorch: several GB) come
from the test's own environment through a `.pth` file that names its
site-packages: `--system-site-packages` would not do, since a venv made from
a venv's Python sees the base interpreter's packages, not the venv's. A plain
path in a `.pth` file runs none of that site-packages' own `.pth` files, so
the editable install of this tree stays out: `keras_ptame` comes from the
wheel, which the tests check. One venv serves the script and the quickstart
notebook, which runs offline on a Jupyter kernel of that venv.
"""

import json
import os
import subprocess
import sys
import sysconfig
import types

import pytest

from tests.helpers.notebooks import NOTEBOOKS, set_offline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The test's own PYTHONPATH (this tree, say) stays out of the venv.
CLEAN_ENV = {"PYTHONPATH": ""}

SCRIPT = """
import keras, numpy as np
import keras_ptame as kp

print("from", kp.__file__)
inputs = keras.Input((16, 16, 3))
x = keras.layers.Rescaling(1 / 255)(inputs)
x = keras.layers.Conv2D(4, 3, 2, padding="same", activation="relu", name="s1")(x)
x = keras.layers.Conv2D(8, 3, 2, padding="same", activation="relu", name="s2")(x)
logits = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
classifier = keras.Model(inputs, logits)
explainer = kp.PTAME(
    kp.Backbone(classifier),
    kp.AuxiliaryExtractor(classifier, layer_names=["s1", "s2"]),
)
explainer.compile(optimizer=keras.optimizers.AdamW(1e-3, amsgrad=True))
images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype("uint8")
history = explainer.fit(images, epochs=1, batch_size=4, verbose=0)
maps = explainer.explain(images[:2])
assert maps.shape == (2, 16, 16) and 0 <= maps.min() <= maps.max() <= 1
assert np.isfinite(history.history["loss"][-1])
print("ok", keras.config.backend(), maps.shape)
"""


# Appended to the quickstart: where the kernel found keras_ptame, and whether
# the install cell ran (it defines SOURCE only when it installs).
PROBE = """
import json, sys
print(json.dumps({
    "file": kp.__file__,
    "executable": sys.executable,
    "installed": "SOURCE" in globals(),
    "backend": keras.config.backend(),
}))
"""


def _run(command, cwd, **kwargs):
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, **kwargs
    )
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-4000:])
    return done.stdout


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """A new venv with the wheel of this tree installed, frameworks by `.pth`."""
    root = tmp_path_factory.mktemp("wheel")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--quiet", "--wheel-dir", str(root / "wheels"), ROOT],
        cwd=root,
    )
    (wheel,) = (root / "wheels").glob("keras_ptame-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    site = _run(
        [
            str(python),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        cwd=root,
    ).strip()
    with open(os.path.join(site, "frameworks.pth"), "w") as handle:
        handle.write(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
        + [str(wheel)],
        cwd=root,
    )
    return types.SimpleNamespace(bin=venv / "bin", python=python, site=site)


@pytest.mark.slow
def test_wheel_installs_and_runs_in_a_clean_venv(wheel_venv, tmp_path):
    env = dict(os.environ, **CLEAN_ENV)
    help_text = _run([str(wheel_venv.bin / "ptame"), "--help"], cwd=tmp_path, env=env)
    assert "train" in help_text and "explain" in help_text
    out = _run([str(wheel_venv.python), "-c", SCRIPT], cwd=tmp_path, env=env)
    # The package came from the wheel, not from this tree.
    assert f"from {wheel_venv.site}" in out, out
    assert "ok" in out and "(2, 16, 16)" in out


def _write_kernelspec(directory, python):
    """A Jupyter kernel of `python`, under `directory` as JUPYTER_PATH finds it."""
    spec = directory / "kernels" / "ptame-wheel"
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "keras-ptame wheel", "env": CLEAN_ENV}
    (spec / "kernel.json").write_text(json.dumps(dict(kernel, language="python")))
    return spec.name


@pytest.mark.slow
def test_quickstart_runs_offline_from_the_wheel(wheel_venv, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    kernel_name = _write_kernelspec(tmp_path / "jupyter", wheel_venv.python)
    path = os.path.join(NOTEBOOKS, "01_quickstart.ipynb")
    notebook = set_offline(nbformat.read(path, as_version=4))
    (install,) = [cell for cell in notebook.cells if "%pip install" in cell.source]
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(scratch)}},
    ).execute()
    (line,) = [
        output["text"]
        for output in notebook.cells[-1].outputs
        if output.get("name") == "stdout"
    ]
    probe = json.loads(line)
    assert probe["executable"] == str(wheel_venv.python)
    assert probe["file"].startswith(wheel_venv.site + os.sep), probe
    # The wheel is installed, so the install cell leaves it as it is.
    assert not probe["installed"] and install.outputs == []
    assert probe["backend"] == os.environ.get("KERAS_BACKEND", "jax")
    assert (scratch / "ptame.keras").is_file()
