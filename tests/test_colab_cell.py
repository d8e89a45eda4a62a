"""Every notebook (solutions/ and chapters/, including any added later) opens with the Colab cell: the first
code cell installs minigpt when it runs in Google Colab, does nothing anywhere else, and nbval skips it."""

import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import find_metadata_tags

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "solutions").glob("*.ipynb")) + sorted((ROOT / "chapters").glob("*.ipynb"))
IDS = [f"{p.parent.name}/{p.name}" for p in NOTEBOOKS]


def first_code_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    return nb.cells[code[0]]


def run_cell(source, monkeypatch, in_colab):
    """Execute the cell with subprocess.run replaced by a recorder; returns the calls it made."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    if in_colab:
        monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(source, "colab cell", "exec"), {"__name__": "__colab_cell__"})
    return calls


def test_there_are_notebooks_in_both_folders():
    folders = {p.parent.name for p in NOTEBOOKS}
    assert folders == {"solutions", "chapters"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_code_cell_is_the_colab_cell_and_nbval_skips_it(path):
    cell = first_code_cell(path)
    assert '"google.colab" in sys.modules' in cell.source, f"{path.name}: the first code cell is not the Colab cell"
    assert "nbval-skip" in cell.metadata.get("tags", [])
    assert dict(find_metadata_tags(cell.metadata)).get("skip") is True  # as nbval itself reads the tag
    assert cell.outputs == [] and cell.execution_count is None, "the Colab cell keeps no output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_colab_cell_does_nothing_outside_colab(path, monkeypatch):
    assert run_cell(first_code_cell(path).source, monkeypatch, in_colab=False) == []


def _fake_sessions(monkeypatch, path):
    import io
    import json
    import urllib.request

    monkeypatch.setenv("COLAB_JUPYTER_IP", "172.28.0.12")
    body = json.dumps([{"name": "x.ipynb", "path": path}]).encode()
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(body))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_colab_cell_pip_installs_minigpt_from_the_repository_it_was_opened_from(path, monkeypatch):
    monkeypatch.delenv("MINIGPT_REPO", raising=False)
    _fake_sessions(monkeypatch, "fileId=https%3A%2F%2Fgithub.com%2Fteacher%2Fminigpt-ws%2Fblob%2Fday1%2Fchapters%2F"
                                + path.name)
    ((args, kwargs),) = run_cell(first_code_cell(path).source, monkeypatch, in_colab=True)
    cmd = args[0] if args else kwargs["args"]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"], cmd  # this kernel's pip, not a `!pip` magic
    assert cmd[-1] == "minigpt @ git+https://github.com/teacher/minigpt-ws@day1", cmd  # the fork and its branch
    assert kwargs.get("check") is True, "a failed install must stop the notebook, not fail later on import"


def test_colab_cell_takes_the_repository_by_hand_or_says_how(monkeypatch):
    source = first_code_cell(NOTEBOOKS[0]).source
    monkeypatch.setenv("MINIGPT_REPO", "someone/minigpt")
    ((args, _),) = run_cell(source, monkeypatch, in_colab=True)
    assert args[0][-1] == "minigpt @ git+https://github.com/someone/minigpt"
    monkeypatch.delenv("MINIGPT_REPO")
    _fake_sessions(monkeypatch, "fileId=1AbCdEf")  # uploaded by hand or from Drive: no GitHub path
    with pytest.raises(SystemExit, match="MINIGPT_REPO"):
        run_cell(source, monkeypatch, in_colab=True)


def test_every_notebook_has_the_same_colab_cell():
    """One install line for the whole course: changing the repository URL is one search-and-replace."""
    sources = {first_code_cell(p).source for p in NOTEBOOKS}
    assert len(sources) == 1, "the Colab cells differ:\n\n" + "\n---\n".join(sorted(sources))
