"""Framework internals only behind the one seam, ``keras_trainkit/_compat/``.

The scan (``ast``) fails when any other module of the package
* imports ``keras.src``, ``keras_tuner.src``, ``tensorflow.python``, ``tensorflow.compiler``
  or ``tf_keras`` (or anything below them);
* touches ``__internal__`` (``tf.__internal__``);
* reads or writes a private attribute (``x._name``, not a dunder) of an object other than
  ``self``/``cls``/``super()``, directly or through ``getattr``/``setattr``/``hasattr``/
  ``delattr``/``object.__setattr__`` with a literal name.
Private names of our own code are not framework internals: a name defined in the same
file (``def _x``, ``self._x = ...``), or reached on a module or object imported from
``keras_trainkit``, is allowed.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "keras_trainkit"
SEAM = PACKAGE / "_compat"
FORBIDDEN_MODULES = ("keras.src", "keras_tuner.src", "tensorflow.python", "tensorflow.compiler", "tf_keras")
ATTRIBUTE_FUNCTIONS = ("getattr", "setattr", "hasattr", "delattr")
# Underscore names that are documented public API of the standard library.
PUBLIC_UNDERSCORE_NAMES = {"os._exit"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_own(node) -> bool:
    """``self``, ``cls`` or ``super()``: the object's own (or its base's) attributes."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _forbidden_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES)


def _own_names(tree):
    """Private names this file defines, and names it imports from keras_trainkit."""
    defined, imported = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _private(node.name):
            defined.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_own(node.value):
            defined.add(node.attr)
        elif isinstance(node, ast.Import):
            imported.update((a.asname or a.name).split(".")[0] for a in node.names
                            if a.name.startswith("keras_trainkit"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_trainkit"):
            imported.update(a.asname or a.name for a in node.names)
    return defined, imported


def violations(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    defined, imported = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [(line, f"import {a.name}") for a in node.names if _forbidden_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and _forbidden_module(node.module):
            found.append((line, f"from {node.module} import ..."))
        elif isinstance(node, ast.Attribute):
            if node.attr == "__internal__":
                found.append((line, "__internal__"))
            elif _private(node.attr) and not _is_own(node.value) and node.attr not in defined and not (
                    isinstance(node.value, ast.Name) and node.value.id in imported) and \
                    ast.unparse(node) not in PUBLIC_UNDERSCORE_NAMES:
                found.append((line, f"._{node.attr[1:]} on {ast.unparse(node.value)}"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else (
                f"{ast.unparse(func.value)}.{func.attr}" if isinstance(func, ast.Attribute) else "")
            if name in ATTRIBUTE_FUNCTIONS or name == "object.__setattr__":
                if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and \
                        isinstance(node.args[1].value, str) and _private(node.args[1].value) and \
                        not _is_own(node.args[0]) and node.args[1].value not in defined:
                    found.append((line, f"{name}(..., {node.args[1].value!r})"))
    return found


def test_no_framework_internals_outside_the_seam():
    report = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if SEAM in path.parents:
            continue
        for line, what in violations(path):
            report.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {what}")
    assert not report, "Framework internals outside keras_trainkit/_compat/:\n" + "\n".join(report)


def test_the_scan_catches_each_kind(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text(
        "import keras.src.trainers\n"
        "from tensorflow.python.framework import ops\n"
        "import tensorflow as tf\n"
        "tf.__internal__.distribute\n"
        "model._initial_epoch = None\n"
        "x = optimizer._learning_rate\n"
        "getattr(oracle, '_seed_state')\n"
        "object.__setattr__(leaf, '_learning_rate', 1)\n"
        "self._fine = super()._also_fine\n"
        "getattr(self, '_fine')\n"
    )
    assert sorted(line for line, _ in violations(source)) == [1, 2, 4, 5, 6, 7, 8]
