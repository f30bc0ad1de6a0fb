"""The notebooks' contracts: the train notebook declares exactly the cell config, with the same
defaults; every notebook's .ipynb and its jupytext .py pair hold the same cells; no notebook
defines reusable code (STYLE rule 6)."""

import ast
from pathlib import Path

import jupytext
import papermill
import pytest

from msl.config import CellConfig, NAMES

NOTEBOOKS = sorted(Path("notebooks").glob("*.ipynb"))


def test_train_notebook_declares_the_cell_config_with_its_defaults():
    declared = papermill.inspect_notebook("notebooks/train.ipynb")
    assert set(declared) == set(NAMES)
    defaults = CellConfig()
    for name, spec in declared.items():
        assert ast.literal_eval(spec["default"]) == getattr(defaults, name), name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_ipynb_and_py_pair_agree(path):
    paired = jupytext.read(path.with_suffix(".py"))
    notebook = jupytext.read(path)
    assert [c.source for c in paired.cells] == [c.source for c in notebook.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_define_no_functions_or_classes(path):
    for cell in jupytext.read(path).cells:
        if cell.cell_type == "code":
            tree = ast.parse("\n".join(l for l in cell.source.splitlines() if not l.startswith("%")))
            assert not [n for n in ast.walk(tree)
                        if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
