"""The package's shape: a layering that only points down, no import cycles,
short functions, modules of one idea, a README that names files that exist.

Read from the source with `ast`, so these hold whatever the backend.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "keras_ptame"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500


def _modules():
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_main_block(node):
    # `if __name__ == "__main__":` runs only as a script, never on import.
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and getattr(test.left, "id", None) == "__name__"
    )


def _imports(tree, modules, package):
    """`(module, scope)` for each module of the package that `tree` imports,
    anywhere but a main block: `scope` names the function or class the import
    sits in (`"PTAME.export"`), `""` at module level."""
    found = []
    stack = [(node, "") for node in tree.body]
    while stack:
        node, scope = stack.pop()
        if _is_main_block(node):
            continue
        inner = scope
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = f"{scope}.{node.name}" if scope else node.name
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1]
                    + [base]
                ).rstrip(".")
            names = [f"{base}.{alias.name}" for alias in node.names]
            names = [name if name in modules else base for name in names]
        else:
            continue
        found.extend((name, scope) for name in names if name in modules)
    return found


def _imported(tree, modules, package):
    """Modules of the package that `tree` imports, anywhere but a main block."""
    return {name for name, _ in _imports(tree, modules, package)}


def _graph():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = _imported(ast.parse(path.read_text()), modules, package)
    return graph


def _cycle_from(start, graph):
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_no_module_imports_one_that_imports_it_back():
    graph = _graph()
    # A package's __init__ re-exports its modules; a module importing its own
    # package's __init__ (e.g. `import keras_ptame as kp`) would close a loop.
    cycles = {
        " -> ".join(cycle)
        for name in graph
        if (cycle := _cycle_from(name, graph)) is not None
    }
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


def _long_functions(path):
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr):
                if isinstance(body[0].value, ast.Constant):
                    body = body[1:]  # the docstring does not count
            if body and body[-1].end_lineno - body[0].lineno + 1 > MAX_FUNCTION_LINES:
                long.append(f"{path.name}:{node.lineno} {node.name}")
    return long


@pytest.mark.parametrize("name", sorted(_modules()))
def test_functions_are_short_and_modules_hold_one_idea(name):
    path = _modules()[name]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines"
    assert _long_functions(path) == [], f"functions over {MAX_FUNCTION_LINES} lines"


# === Layering ===

# The house, lowest first: each package of keras_ptame and the packages it may
# import besides itself. Nothing imports upward, not even lazily inside a
# function. The README's "Development" section draws the same map.
UTILS = ("utils", "version")
CORE = (*UTILS, "layers", "losses", "optimizers", "converters", "models")
AROUND = ("recipes", "metrics", "baselines", "blackbox", "data", "datasets")
AROUND += ("visualize", "export")
MAY_IMPORT = {
    # Neutral helpers: input checks, atomic files, image files, maps.
    "utils": (),
    "version": (),
    # The core: the method.
    "layers": UTILS,
    "losses": (*UTILS, "layers"),
    "optimizers": (*UTILS, "layers"),
    "converters": (*UTILS, "layers"),
    "models": (*UTILS, "layers", "losses", "optimizers", "converters"),
    # Around the method: neither metrics nor baselines imports the other.
    "recipes": CORE,
    "metrics": CORE,
    "baselines": CORE,
    "blackbox": CORE,
    "data": CORE,
    "datasets": (*CORE, "metrics"),
    "visualize": CORE,
    "export": CORE,
    # What puts it all to work.
    "evaluation": (*CORE, *AROUND),
    "callbacks": (*CORE, *AROUND),
    "tuning": (*CORE, *AROUND, "evaluation"),
    "demo": (*CORE, *AROUND, "evaluation", "callbacks"),
    "cli": (*CORE, *AROUND, "evaluation", "tuning", "demo", "callbacks"),
    # `import keras_ptame as kp`: the public names, from everywhere.
    "keras_ptame": (*CORE, *AROUND, "evaluation", "tuning", "demo", "cli", "callbacks"),
}

# Keras' own precedent: `keras.Model.export` imports Keras' export module
# inside the method. (module, function, package it may import there.)
UPWARD_EXCEPTIONS = {("keras_ptame.models.ptame", "PTAME.export", "export")}


def _package_of(module):
    """`keras_ptame.models.ptame` -> `models`; the package itself is `keras_ptame`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _upward_imports(module, tree, modules):
    """The imports of `module` (source `tree`) that its layer may not make."""
    package = _package_of(module)
    allowed = {package, *MAY_IMPORT[package]}
    is_package = modules.get(module, PACKAGE).name == "__init__.py"
    parent = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for name, scope in _imports(tree, modules, parent):
        target = _package_of(name)
        if target in allowed or (module, scope, target) in UPWARD_EXCEPTIONS:
            continue
        where = f" (inside {scope})" if scope else ""
        found.append(f"{module}{where} imports {name}")
    return sorted(set(found))


def test_every_package_has_a_place_in_the_layering():
    packages = {_package_of(module) for module in _modules()}
    assert packages == set(MAY_IMPORT)


@pytest.mark.parametrize("package", list(MAY_IMPORT))
def test_no_package_imports_above_its_layer(package):
    modules = _modules()
    upward = [
        line
        for module, path in modules.items()
        if _package_of(module) == package
        for line in _upward_imports(module, ast.parse(path.read_text()), modules)
    ]
    assert not upward, "imports above the layer:\n" + "\n".join(upward)


def test_the_layering_check_sees_lazy_imports_and_one_exception():
    modules = _modules()
    source = """
import numpy as np
from keras_ptame.utils.validation import check_option

class PTAME:
    def export(self):
        from keras_ptame.export import export_saved_model

    def explain(self):
        from keras_ptame import metrics

def helper():
    import keras_ptame as kp
    from keras_ptame.export import export_saved_model
"""
    found = _upward_imports("keras_ptame.models.ptame", ast.parse(source), modules)
    assert sorted(found) == [
        "keras_ptame.models.ptame (inside PTAME.explain) imports keras_ptame.metrics",
        "keras_ptame.models.ptame (inside helper) imports keras_ptame",
        "keras_ptame.models.ptame (inside helper) imports keras_ptame.export",
    ]
    utils = _upward_imports(
        "keras_ptame.utils.maps",
        ast.parse("from keras_ptame.layers.backbone import Backbone\n"),
        modules,
    )
    assert utils == ["keras_ptame.utils.maps imports keras_ptame.layers.backbone"]


# === The README ===

# `keras_ptame/...` in the README's prose (not in a URL's path).
_README_PATH = re.compile(r"(?<![\w/.-])keras_ptame/[\w./-]*[\w/]")


def test_every_path_the_readme_names_exists():
    named = set(_README_PATH.findall((ROOT / "README.md").read_text()))
    assert named, "the README names no file of the package"
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"the README names files that do not exist: {missing}"


# Every subcommand module of the CLI has an `add_parser(subcommands)` and a
# `run(args)`: one pattern, not one idea written twice.
CLI_COMMAND_NAMES = {"add_parser", "run"}


def _top_level_names(tree):
    """Names that a module's own top-level statements define."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                # `x = ...` and `x, y = ...` define names; `sys.argv[1:] = ...`
                # and `obj.attr = ...` change something defined elsewhere.
                elements = getattr(target, "elts", [target])
                for element in elements:
                    if isinstance(element, ast.Name):
                        yield element.id


def _defined_twice(modules):
    """dict name -> the modules defining it, for names in more than one."""
    defined = {}
    for module, path in modules.items():
        names = set(_top_level_names(ast.parse(path.read_text()))) - {"__all__"}
        if module.startswith("keras_ptame.cli."):
            names -= CLI_COMMAND_NAMES
        for name in names:
            defined.setdefault(name, []).append(module)
    return {name: found for name, found in defined.items() if len(found) > 1}


def test_no_top_level_name_is_defined_in_two_modules():
    # One definition of each idea: a helper two modules need lives in one
    # (lower) module; two ideas get two names that say what each holds.
    twice = _defined_twice(_modules())
    assert not twice, "\n".join(
        f"{name}: {', '.join(modules)}" for name, modules in sorted(twice.items())
    )


def test_the_duplicate_check_finds_a_name_defined_twice(tmp_path):
    files = {
        "keras_ptame.a": "def helper():\n    pass\n",
        "keras_ptame.b": "helper = 1\n",
        "keras_ptame.cli.train": "def run(args):\n    pass\n",
        "keras_ptame.cli.tune": "def run(args):\n    pass\n",
        "keras_ptame.demo": "def run():\n    pass\n",
    }
    modules = {}
    for name, text in files.items():
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        modules[name] = path
    assert _defined_twice(modules) == {"helper": ["keras_ptame.a", "keras_ptame.b"]}
