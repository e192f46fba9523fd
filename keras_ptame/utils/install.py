"""What to install for an optional feature, as keras-ptame declares it.

keras-ptame is not on the package index (the index's `ptame` is the P-TAME
authors' own package), so an error message must not send users to the
index for it. It names the missing packages instead, with
the requirements of the keras-ptame extra that provides them, read from the
installed distribution's metadata: `pyproject.toml` stays their one
definition.

```python
from keras_ptame.utils.install import install_hint

install_hint("tune")
# "pip install 'keras-tuner[bayesian]>=1.4' (keras-ptame's `tune` extra)"
```
"""

import importlib.metadata
import shlex

DISTRIBUTION = "keras-ptame"

# The extra that provides each optional top-level module.
MODULE_EXTRAS = {
    "tensorflow": "tensorflow",
    "jax": "jax",
    "jaxlib": "jax",
    "torch": "torch",
    "keras_hub": "hub",
    "tensorflow_datasets": "data",
    "importlib_resources": "data",
    "matplotlib": "viz",
    "PIL": "viz",
    "cv2": "eval",
    "keras_tuner": "tune",
    "sklearn": "tune",
    "ray": "batch",
}


def extra_requirements(extra):
    """The requirements of keras-ptame's `extra`, as its metadata declares them.

    Args:
        extra: str. The name of the extra, e.g. `"tune"`.

    Returns:
        A list of requirement strings (`"keras-tuner[bayesian]>=1.4"`), with
        extras of keras-ptame itself (`all`) expanded; `None` where the
        distribution's metadata is missing (a source tree on `sys.path`
        without an install) or declares no such extra.
    """
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    from packaging.requirements import Requirement

    found, pending, seen = [], [extra], set()
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.add(current)
        for text in declared:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or not marker.evaluate({"extra": current}):
                continue
            if requirement.name.lower().replace("_", "-") == DISTRIBUTION:
                pending.extend(sorted(requirement.extras))
                continue
            line = text.split(";")[0].strip()
            if line not in found:
                found.append(line)
    return found or None


def install_hint(extra):
    """A pip command that installs keras-ptame's `extra`, for error messages.

    Args:
        extra: str. The name of the extra, e.g. `"hub"`.

    Returns:
        str. `"pip install 'keras-hub>=0.21' (keras-ptame's `hub` extra)"`:
        the requirements as keras-ptame declares them. Without the
        distribution's metadata, the extra of a keras-ptame source tree.
    """
    requirements = extra_requirements(extra)
    if requirements is None:
        return (
            f"keras-ptame's `{extra}` extra (`pip install -e '.[{extra}]'` in a "
            "keras-ptame source tree; keras-ptame is not on the package index)"
        )
    packages = " ".join(shlex.quote(requirement) for requirement in requirements)
    return f"pip install {packages} (keras-ptame's `{extra}` extra)"


def module_install_hint(module):
    """`install_hint` for the extra that provides `module`, else for `all`.

    Args:
        module: str. A module name as `ModuleNotFoundError.name` gives it,
            e.g. `"cv2"` or `"keras_hub.src.utils"`.

    Returns:
        str. The hint of the extra that provides the module's top-level
        package; for a module no extra names, the hint of `all` (every
        optional package).
    """
    top = (module or "").split(".")[0]
    return install_hint(MODULE_EXTRAS.get(top, "all"))
