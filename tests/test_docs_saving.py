"""Loading a saved model needs `import keras_trainkit` first: the docs say so where
saving is documented (issue 17, section 2)."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The families of classes a saved model can hold (optimizers include their
#: wrappers and gradient transforms, schedules live inside optimizers).
FAMILIES = ["optimizers/__init__.py", "schedules/__init__.py", "initializers/__init__.py",
            "regularizers/__init__.py", "models.py"]


def _says_import_before_loading(text: str) -> bool:
    words = " ".join(text.split())
    return bool(re.search(r"load_model.{0,300}import keras_trainkit|import keras_trainkit.{0,300}load_model",
                          words.replace("`", "")))


@pytest.mark.parametrize("family", FAMILIES)
def test_family_docstring_says_import_before_loading(family):
    docstring = ast.get_docstring(ast.parse((ROOT / "keras_trainkit" / family).read_text()))
    assert _says_import_before_loading(docstring), family


@pytest.mark.parametrize("page", ["README.md", "docs/fit_integration.md"])
def test_saving_docs_say_import_before_loading(page):
    text = (ROOT / page).read_text(encoding="utf-8")
    if page == "README.md":
        start = text.index("## The three ways of use")
        text = text[start:text.index("### 1.", start)]
    else:
        start = text.index("## Saving and loading")
        text = text[start:text.index("\n## ", start + 1)]
    assert _says_import_before_loading(text) and "custom_objects" in text


_LOAD_WITHOUT_THEN_WITH_THE_IMPORT = """
import sys
import keras
try:
    keras.models.load_model(sys.argv[1])
except TypeError as error:
    print("without:", error)
import keras_trainkit
keras.models.load_model(sys.argv[1])
print("with: loaded")
"""


@pytest.mark.slow
def test_the_documented_failure_is_real(tmp_path):
    """What the docs warn about: in a fresh process, loading fails without the import
    and works after it."""
    path = str(tmp_path / "m.keras")
    save = ("import sys, keras, keras_trainkit as tk\n"
            "m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])\n"
            "m.compile(optimizer=tk.optimizers.RAdam(1e-3), loss='mse')\nm.save(sys.argv[1])\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    saved, loaded = (subprocess.run([sys.executable, "-c", code, path], capture_output=True,
                                    text=True, env=env, timeout=300)
                     for code in (save, _LOAD_WITHOUT_THEN_WITH_THE_IMPORT))
    assert saved.returncode == 0, saved.stderr
    assert loaded.returncode == 0, loaded.stderr
    assert "without: Could not locate class 'RAdam'" in loaded.stdout
    assert "with: loaded" in loaded.stdout
