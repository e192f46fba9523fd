"""The package's shape: no import cycles, short functions, modules of one idea.

Read from the source with `ast`, so these hold whatever the backend.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_ptame"
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


def _imported(tree, modules, package):
    """Modules of the package that `tree` imports, anywhere but a main block."""
    found = set()
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if _is_main_block(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1]
                    + [base]
                ).rstrip(".")
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.add(name if name in modules else base)
    return {name for name in found if name in modules}


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
                for element in ast.walk(target):
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
