"""Every serialisable object of the package goes through the harness.

A class registered with `keras.saving.register_keras_serializable(package=
"keras_ptame")` is one a saved explainer may hold: some test file that uses
`tests.helpers.test_case` must name it, so that its whole config, its saved
and loaded outputs (or values) are checked on each backend.
"""

import pathlib

import keras

import keras_ptame  # noqa: F401  (registers the package's classes)

TESTS = pathlib.Path(__file__).parent
HARNESS = "from tests.helpers.test_case import"


def _registered():
    prefix = "keras_ptame>"
    return sorted(
        name[len(prefix) :]
        for name in keras.saving.get_custom_objects()
        if name.startswith(prefix)
    )


def test_every_registered_class_has_a_harness_test():
    sources = [
        path.read_text(encoding="utf-8")
        for path in TESTS.rglob("test_*.py")
        if path.name != pathlib.Path(__file__).name
    ]
    harnessed = [source for source in sources if HARNESS in source]
    registered = _registered()
    assert len(registered) >= 11  # layers, PTAME, loss, optimisers, preprocessors
    missing = [
        name
        for name in registered
        if not any(
            marker in source
            for marker in (f"{name}(", f"{name}.", f".{name}")
            for source in harnessed
        )
    ]
    assert missing == [], f"registered classes no harness test names: {missing}"
