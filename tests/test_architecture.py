"""The package's layout rules (issue 13), read from the source: what a stage may import, how many
parameters a public function takes, how long a module is, and that each concept has one home."""

import ast
import os

import pytest

SRC = os.path.join(os.path.dirname(__file__), "..", "src", "emseg")
MAX_PARAMETERS = 8
MAX_LINES = 420  # "no module over ~400 lines"


def _modules():
    for folder, _, files in os.walk(SRC):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, SRC), path


def _tree(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def _imports(tree, module):
    """Absolute names of everything ``module`` (a path relative to emseg/) imports."""
    package = ["emseg"] + module.replace(os.sep, "/").split("/")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            yield ".".join(base + ([node.module] if node.module else []))


def _parameters(fn):
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs] + \
        [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return [n for n in names if n not in ("self", "cls")]


def _public_functions(tree):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield node.name, node
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and (not item.name.startswith("_") or item.name == "__init__"):
                    yield f"{node.name}.{item.name}", item


def test_predict_imports_nothing_from_train():
    for module, path in _modules():
        if module.startswith("predict" + os.sep):
            bad = [name for name in _imports(_tree(path), module) if name.startswith("emseg.train")]
            assert not bad, f"{module} imports {bad}"


def test_no_public_function_takes_more_than_8_parameters():
    over = {f"{module}:{name}": len(_parameters(fn)) for module, path in _modules()
            for name, fn in _public_functions(_tree(path)) if len(_parameters(fn)) > MAX_PARAMETERS}
    assert not over, "public functions with more than 8 parameters: " + ", ".join(f"{k} ({n})" for k, n in over.items())


def test_no_module_is_much_over_400_lines():
    long = {}
    for module, path in _modules():
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            long[module.replace(os.sep, "/")] = n
    assert not long, "modules over ~400 lines: " + ", ".join(f"{k} ({n})" for k, n in long.items())


@pytest.mark.parametrize("name", ["TASKS", "METHODS", "METRIC_SETS", "OBJECTS", "Normalization", "PredictConfig",
                                  "PostprocessConfig", "ExecutionConfig", "TrainConfig", "BlockRecord",
                                  "read_checkpoint", "block_slices", "as_probabilities"])
def test_each_concept_has_one_home(name):
    homes = []
    for module, path in _modules():
        for node in _tree(path).body:
            targets = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
                [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)] + \
                ([node.target.id] if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) else [])
            if name in targets:
                homes.append(module)
    assert len(homes) == 1, f"{name} is defined in {homes}"
