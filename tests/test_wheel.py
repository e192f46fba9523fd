"""The wheel installs into a clean virtual environment and runs there.

The wheel is built from this tree and installed, without dependencies, into
a new venv. The frameworks (Keras, TensorFlow, JAX, PyTorch: several GB) come
from the test's own environment through a `.pth` file that names its
site-packages: `--system-site-packages` would not do, since a venv made from
a venv's Python sees the base interpreter's packages, not the venv's. A plain
path in a `.pth` file runs none of that site-packages' own `.pth` files, so
the editable install of this tree stays out: `keras_ptame` comes from the
wheel, which the test checks.
"""

import os
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def _run(command, cwd, **kwargs):
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, **kwargs
    )
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-4000:])
    return done.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_in_a_clean_venv(tmp_path):
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--quiet", "--wheel-dir", str(wheels), ROOT],
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("keras_ptame-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = _run(
        [
            str(python),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        cwd=tmp_path,
    ).strip()
    with open(os.path.join(site, "frameworks.pth"), "w") as handle:
        handle.write(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
        + [str(wheel)],
        cwd=tmp_path,
    )
    env = dict(os.environ, PYTHONPATH="")
    help_text = _run([str(venv / "bin" / "ptame"), "--help"], cwd=tmp_path, env=env)
    assert "train" in help_text and "explain" in help_text
    out = _run([str(python), "-c", SCRIPT], cwd=tmp_path, env=env)
    # The package came from the wheel, not from this tree.
    assert f"from {site}" in out, out
    assert "ok" in out and "(2, 16, 16)" in out
