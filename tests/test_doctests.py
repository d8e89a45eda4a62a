"""Every `>>>` example in minigpt's docstrings runs (`make test` collects this file).

An example that cannot run here (it needs a trained run, a download or a GPU) is marked
`# doctest: +SKIP` in its docstring; every other one must print what it shows.
"""

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import minigpt

MODULES = sorted(m.name for m in pkgutil.walk_packages(minigpt.__path__, "minigpt.")
                 if m.name != "minigpt.__main__")


def _has_examples(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return False
    with open(spec.origin, encoding="utf-8") as f:
        return ">>>" in f.read()


@pytest.mark.parametrize("name", [m for m in MODULES if _has_examples(m)])
def test_docstring_examples_run(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=False,
                             verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name} (run " \
                               f"`python -m doctest -v {module.__file__}` to see them)"


def test_the_examples_are_found():
    assert len([m for m in MODULES if _has_examples(m)]) >= 10
