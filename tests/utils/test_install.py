"""What to install: the hints read from keras-ptame's metadata, and the
messages that give them when an optional package is missing.

A missing package is simulated by `sys.modules[name] = None`, which makes
`import name` raise `ModuleNotFoundError` as if it were not installed. The
checks run the same on every backend.
"""

import importlib.metadata
import os
import sys

import numpy as np
import pytest

import keras_ptame as kp
from keras_ptame.cli import errors, loading
from keras_ptame.converters import ptame_checkpoint
from keras_ptame.utils import install
from keras_ptame.utils.install import extra_requirements, install_hint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DECLARED = [
    "keras>=3.10",
    'keras-hub>=0.21; extra == "hub"',
    'tensorflow-datasets>=4.9; extra == "data"',
    'importlib_resources; extra == "data"',
    'keras-tuner[bayesian]>=1.4; extra == "tune"',
    'keras-ptame[data,hub,tune]; extra == "all"',
]


def _declaring(monkeypatch, requires):
    def fake(name):
        assert name == "keras-ptame"
        if requires is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return list(requires)

    monkeypatch.setattr(install.importlib.metadata, "requires", fake)


def _missing(monkeypatch, *modules):
    """Makes `import module` fail as if the package were not installed."""
    for module in modules:
        for name in [m for m in sys.modules if m.startswith(module + ".")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, module, None)


# Issue 23: a hint names the extra's requirements as keras-ptame declares them.
def test_a_hint_names_the_declared_requirements_of_the_extra(monkeypatch):
    _declaring(monkeypatch, DECLARED)
    assert extra_requirements("hub") == ["keras-hub>=0.21"]
    assert install_hint("tune") == (
        "pip install 'keras-tuner[bayesian]>=1.4' (keras-ptame's `tune` extra)"
    )
    assert install_hint("data") == (
        "pip install 'tensorflow-datasets>=4.9' importlib_resources "
        "(keras-ptame's `data` extra)"
    )
    # `all` names keras-ptame's own extras: they are expanded, since
    # keras-ptame itself is not on the package index.
    assert extra_requirements("all") == [
        "tensorflow-datasets>=4.9",
        "importlib_resources",
        "keras-hub>=0.21",
        "keras-tuner[bayesian]>=1.4",
    ]
    assert "keras-ptame[" not in install_hint("all")
    assert install.module_install_hint("cv2.data") == install_hint("eval")
    assert install.module_install_hint("h5py") == install_hint("all")


# Issue 23: without metadata (a source tree on sys.path) the hint points at
# the source tree, never at an index package.
@pytest.mark.parametrize("requires", [None, ["keras>=3.10"]])
def test_without_metadata_the_hint_points_at_a_source_tree(monkeypatch, requires):
    _declaring(monkeypatch, requires)
    assert extra_requirements("hub") is None
    hint = install_hint("hub")
    assert "pip install -e '.[hub]'" in hint
    assert "not on the package index" in hint


# Issue 23: the installed metadata gives every extra the package names.
def test_the_installed_metadata_declares_the_extras_the_messages_name():
    try:
        importlib.metadata.requires("keras-ptame")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("keras-ptame is not installed (no metadata to read)")
    for extra in ("hub", "data", "eval", "torch", "tune", "viz", "all"):
        assert extra_requirements(extra), extra
    assert any(r.startswith("keras-hub") for r in extra_requirements("hub"))
    assert any(r.startswith("keras-tuner") for r in extra_requirements("tune"))


# Issue 23: no message or docstring sends users to an index keras-ptame.
def test_no_message_tells_to_install_keras_ptame_from_the_index():
    found = []
    for folder, _, names in os.walk(os.path.join(ROOT, "keras_ptame")):
        for name in names:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    text = handle.read().replace('"', "'")
                if (
                    "pip install 'keras-ptame[" in text
                    or "pip install keras-ptame" in text
                ):
                    found.append(name)
    assert not found


# Issue 23: each missing optional package gives its extra's requirement.
def test_a_missing_keras_hub_names_its_requirement(monkeypatch):
    _missing(monkeypatch, "keras_hub")
    with pytest.raises(ImportError) as caught:
        kp.Backbone.from_preset("resnet_50_imagenet")
    assert install_hint("hub") in str(caught.value)
    with pytest.raises(ImportError) as caught:
        kp.PTAME.from_preset("hf://owner/explainer")
    assert install_hint("hub") in str(caught.value)
    # The command says the hint once.
    with pytest.raises(errors.UsageError) as caught:
        loading._from_preset(kp.Backbone.from_preset, "resnet_50_imagenet", "x")
    assert str(caught.value).count(install_hint("hub")) == 1


# Issue 23: see above.
def test_missing_data_tune_eval_and_torch_packages_name_their_requirements(
    monkeypatch, tmp_path
):
    import keras_ptame.tuning as tuning

    _missing(monkeypatch, "tensorflow_datasets", "keras_tuner", "cv2", "torch")
    monkeypatch.delattr(tuning, "tuner", raising=False)
    monkeypatch.delitem(sys.modules, "keras_ptame.tuning.tuner", raising=False)
    with pytest.raises(ImportError, match="tensorflow-datasets") as caught:
        kp.data.imagenette("train")
    assert install_hint("data") in str(caught.value)
    with pytest.raises(ModuleNotFoundError) as caught:
        tuning._import_tuner()
    assert install_hint("tune") in str(caught.value)
    with pytest.raises(ImportError) as caught:
        kp.metrics.telea_imputation(np.zeros((4, 4, 3)), np.eye(4, dtype=bool))
    assert install_hint("eval") in str(caught.value)
    with pytest.raises(ImportError) as caught:
        ptame_checkpoint.read_state_dict(str(tmp_path / "weights.pth"))
    assert install_hint("torch") in str(caught.value)


# Issue 23: the `ptame` command names the extra of the module it misses.
def test_the_command_names_the_requirement_of_a_missing_module(monkeypatch, capsys):
    _missing(monkeypatch, "cv2")

    def command():
        import cv2  # noqa: F401

    assert errors.run_guarded("evaluate", command) == errors.EXIT_USAGE
    message = capsys.readouterr().err
    assert install_hint("eval") in message and "'cv2'" in message
