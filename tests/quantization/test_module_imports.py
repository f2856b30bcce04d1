"""The modules of keras_tflq.quantization import alone, with no circle."""

import ast
import os
import pathlib
import subprocess
import sys

import keras_tflq.quantization

PACKAGE = "keras_tflq.quantization"
ROOT = pathlib.Path(keras_tflq.quantization.__file__).parent
OTHER_PACKAGES = ("callbacks", "conversion", "runtime", "cli")


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE,) + parts)


MODULES = {
    _module_name(path): path for path in sorted(ROOT.rglob("*.py"))
}


def _imports(path):
    """`(module, imported keras_tflq module, at top level)` per import."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            # `from package import module` imports the module; `from
            # module import name`, the module.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES
                else node.module
                for alias in node.names
            ]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("keras_tflq"):
                yield name, id(node) in top


def _graph():
    """{module: modules of keras_tflq.quantization it imports}."""
    return {
        module: {
            name for name, _ in _imports(path) if name in MODULES
        }
        for module, path in MODULES.items()
    }


def test_no_import_circle():
    graph = _graph()
    done, active = set(), []

    def visit(module):
        if module in active:
            cycle = active[active.index(module) :] + [module]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if module in done:
            return
        active.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        active.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    # Every module was reached, and none is left on the visiting stack.
    assert done == set(graph)
    assert active == []


def test_imports_of_the_package_are_at_module_top():
    # A function-local import hides a circle from the check above.
    local = [
        f"{module}: {name}"
        for module, path in MODULES.items()
        for name, at_top in _imports(path)
        if not at_top
    ]
    assert local == []


def test_quantization_stands_alone():
    # callbacks -> conversion -> runtime; quantization imports none of them.
    outside = [
        f"{module}: {name}"
        for module, path in MODULES.items()
        for name, _ in _imports(path)
        if name.split(".")[1] in OTHER_PACKAGES
    ]
    assert outside == []


# Run in a fresh interpreter: for each module, the keras_tflq packages
# are registered bare (their `__init__` not run) and every keras_tflq
# module imported before is dropped, so the module is imported first,
# with only what it imports itself.
_IMPORT_EACH_ALONE = """
import importlib, importlib.util, pathlib, sys, types
import keras
root = pathlib.Path({root!r})
failures = []
for module in {modules!r}:
    for name in [n for n in sys.modules if n.startswith("keras_tflq")]:
        del sys.modules[name]
    for package, path in (
        ("keras_tflq", root.parent),
        ("keras_tflq.quantization", root),
        ("keras_tflq.quantization.default_scheme", root / "default_scheme"),
    ):
        if package != module:
            bare = types.ModuleType(package)
            bare.__path__ = [str(path)]
            sys.modules[package] = bare
    try:
        importlib.import_module(module)
    except Exception as error:
        failures.append(f"{{module}}: {{error!r}}")
print("\\n".join(failures))
"""


def test_each_module_imports_first_in_a_fresh_interpreter():
    script = _IMPORT_EACH_ALONE.format(root=str(ROOT), modules=list(MODULES))
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", **os.environ},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ""
