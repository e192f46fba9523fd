"""The notebooks' install line keeps a Colab runtime's TensorFlow.

pip resolves the install, `--dry-run`, against a bare venv whose
site-packages holds stub distributions (`*.dist-info` with a METADATA,
nothing else) of the versions a Colab runtime has installed, offline
(`--no-index`, no find-links, no pip configuration): a requirement that the
installed versions do not satisfy cannot be fetched, so it fails the
resolution instead of upgrading TensorFlow. keras-ptame's own requirements
come from a wheel built from this tree (no download: the running
environment's setuptools, no build isolation).

The stubs declare the requirements that decide whether TensorFlow stays:
tensorflow-text and tf-keras pin TensorFlow to 2.19, TensorFlow pins NumPy
below 2.2, keras-hub needs tensorflow-text; requirements on packages outside
the set (absl-py, rich, ...) are left out, since none of them bounds
TensorFlow, keras, keras-hub or NumPy. The test is backend-independent: it
runs pip in subprocesses, the same under every KERAS_BACKEND.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A Colab-like runtime (TensorFlow 2.19 with its tensorflow-text and
# tf-keras, keras 3.10, keras-hub 0.21), with the other packages the
# notebooks' extras ask for: (name, version, requirements).
COLAB = [
    ("tensorflow", "2.19.0", ["keras>=3.5.0", "numpy<2.2.0,>=1.26.0"]),
    ("tensorflow-text", "2.19.0", ["tensorflow<2.20,>=2.19.0"]),
    ("tf-keras", "2.19.0", ["tensorflow<2.20,>=2.19"]),
    ("keras", "3.10.0", ["numpy"]),
    (
        "keras-hub",
        "0.21.1",
        ["keras>=3.5", "numpy", 'tensorflow-text; platform_system != "Windows"'],
    ),
    ("tensorflow-datasets", "4.9.9", ["numpy"]),
    ("importlib-resources", "6.5.2", []),
    ("numpy", "2.0.2", []),
    ("scipy", "1.16.1", ["numpy>=1.25.2"]),
    ("matplotlib", "3.10.0", ["numpy>=1.23", "pillow>=8"]),
    ("pillow", "11.3.0", []),
    ("opencv-python-headless", "4.12.0.88", ["numpy>=2,<2.3.0"]),
]


def _stub(site, name, version, requires):
    """An installed distribution as pip sees one: its dist-info alone."""
    folder = os.path.join(site, f"{name.replace('-', '_')}-{version}.dist-info")
    os.makedirs(folder)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    files = {"METADATA": "\n".join(lines) + "\n", "INSTALLER": "pip\n"}
    files["RECORD"] = "".join(f"{folder[len(site) + 1 :]}/{n},,\n" for n in files)
    files["RECORD"] += f"{os.path.basename(folder)}/RECORD,,\n"
    for file_name, text in files.items():
        with open(os.path.join(folder, file_name), "w") as handle:
            handle.write(text)


def _offline_env():
    """This environment without pip's settings: no index, no find-links."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PYTHONPATH="")
    return env


def _run(command, **kwargs):
    return subprocess.run(
        command, capture_output=True, text=True, env=_offline_env(), **kwargs
    )


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A bare venv (no pip) holding the stubs; returns its Python."""
    root = tmp_path_factory.mktemp("colab")
    venv = root / "venv"
    done = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert done.returncode == 0, done.stderr
    python = str(venv / "bin" / "python")
    site = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    ).stdout.strip()
    for name, version, requires in COLAB:
        _stub(site, name, version, requires)
    return python


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel of this tree, built offline with this environment's setuptools."""
    pytest.importorskip("setuptools")
    # From a copy: setuptools writes build/ and *.egg-info beside the sources,
    # where another worker may be building too.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE", "keras_ptame_launcher.py"):
        shutil.copy(os.path.join(ROOT, name), source)
    shutil.copytree(
        os.path.join(ROOT, "keras_ptame"),
        source / "keras_ptame",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    out = tmp_path_factory.mktemp("wheel")
    done = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--quiet", "--wheel-dir", str(out), str(source)]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("keras_ptame-*.whl")
    return str(path)


def _resolve(python, requirement, report):
    """pip's dry-run install of `requirement` into `python`'s environment."""
    return _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--dry-run"]
        + ["--no-index", "--quiet", "--report", str(report), requirement]
    )


def _notebook_extras():
    """The extras each notebook's install cell asks for."""
    extras = set()
    for path in glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")):
        with open(path, encoding="utf-8") as handle:
            found = re.findall(r"keras-ptame\[([a-z,]+)\]", handle.read())
        assert found, f"no keras-ptame install line in {path}"
        extras.update(extras for line in found for extras in line.split(","))
    return sorted(extras)


# Issue 23: the notebooks' install keeps Colab's TensorFlow 2.19, keras and
# keras-hub: pip installs keras-ptame alone.
def test_the_notebooks_install_adds_only_keras_ptame_to_a_colab_runtime(
    colab, wheel, tmp_path
):
    extras = _notebook_extras()
    assert {"hub", "data"} <= set(extras)
    report = tmp_path / "report.json"
    done = _resolve(colab, f"keras-ptame[{','.join(extras)}] @ file://{wheel}", report)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(report) as handle:
        installs = json.load(handle)["install"]
    assert [item["metadata"]["name"] for item in installs] == ["keras-ptame"]


# Issue 23: the stubs bind as Colab's packages do: keras-hub 0.31 (the old
# floor) cannot come from this set, so pip would fetch it (and, through
# tensorflow-text, a newer TensorFlow) from the index.
@pytest.mark.parametrize(
    "requirement", ["keras-hub>=0.31", "tensorflow-text>=2.20.1", "tensorflow>=2.20"]
)
def test_a_requirement_above_colab_s_versions_cannot_resolve_offline(
    colab, requirement, tmp_path
):
    done = _resolve(colab, requirement, tmp_path / "report.json")
    assert done.returncode != 0
    assert requirement.split(">")[0] in done.stderr
