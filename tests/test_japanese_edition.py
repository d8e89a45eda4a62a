"""The Japanese edition (solutions/ja/, chapters/ja/) follows the English notebooks (tools/make_japanese.py).

A chapter is in the Japanese edition when it has a catalog i18n/ja/NN_name.json. Then every markdown cell of
the English notebook has a translation made from its current text (a changed English cell fails here as
"translation stale: NN cell <id>" until the translation is updated), the Japanese notebooks are what the tool
builds, their code is the English code, and the translation keeps the English cell's code spans, links,
formulas and numbers. The Japanese text uses the spellings of docs/glossary.md. See docs/ENGINE.md.
"""

import copy
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import make_japanese as tool  # noqa: E402

CHAPTERS = tool.chapters()
BY_NAME = {ch.english.name: ch for ch in CHAPTERS}
JA_NOTEBOOKS = sorted(tool.SOLUTIONS_JA.glob("*.ipynb"))


def _ids(items):
    return [p.name[:2] for p in items]


# --------------------------------------------------------------------------- the mechanism itself
def _catalog_02():
    ch = BY_NAME.get("02_byte_level_pitfalls.ipynb")
    if ch is None:
        pytest.skip("chapter 02 has no Japanese catalog")
    return ch


def test_a_changed_english_cell_makes_its_translation_stale():
    ch = _catalog_02()
    catalog = copy.deepcopy(ch.catalog)
    cell_id = next(iter(catalog["cells"]))
    catalog["cells"][cell_id]["sha256"] = tool.sha256("an older English text")
    problems = tool.examine(ch.english, catalog).problems
    assert f"translation stale: 02 cell {cell_id} (the English changed)" in problems


def test_a_new_english_cell_without_translation_is_reported_missing():
    ch = _catalog_02()
    catalog = copy.deepcopy(ch.catalog)
    cell_id = next(iter(catalog["cells"]))
    del catalog["cells"][cell_id]
    problems = tool.examine(ch.english, catalog).problems
    assert f"translation missing: 02 cell {cell_id} (a new English cell)" in problems


def test_a_stale_translation_still_builds_with_the_old_japanese():
    ch = _catalog_02()
    catalog = copy.deepcopy(ch.catalog)
    cell_id = next(k for k, e in catalog["cells"].items() if e.get("ja"))
    catalog["cells"][cell_id]["sha256"] = tool.sha256("an older English text")
    nb, _ = tool.build_notebook(ch.english, catalog, None)
    cell = next(c for c in nb.cells if c.id == cell_id)
    assert cell.source == "\n".join(catalog["cells"][cell_id]["ja"])


# --------------------------------------------------------------------------- the edition is up to date
@pytest.mark.parametrize("english", tool.english_notebooks(), ids=_ids(tool.english_notebooks()))
def test_translation_is_current(english):
    ch = BY_NAME.get(english.name)
    if ch is None:
        pytest.skip(f"not translated yet: no i18n/ja/{english.stem}.json")
    assert not ch.problems, ("update i18n/ja/ (python tools/make_japanese.py --stale shows what changed):\n"
                             + "\n".join(ch.problems))


def test_japanese_notebooks_are_what_make_japanese_builds():
    problems = tool.file_problems()
    assert not problems, "run `python tools/make_japanese.py`:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", JA_NOTEBOOKS, ids=_ids(JA_NOTEBOOKS))
def test_japanese_code_cells_equal_the_english_ones(path):
    ja = nbformat.read(path, as_version=4)
    en = nbformat.read(tool.SOLUTIONS / path.name, as_version=4)

    def code(nb):
        return [(c.id, c.source, c.metadata.get("tags", [])) for c in nb.cells if c.cell_type == "code"]

    assert code(ja) == code(en)
    assert [c.cell_type for c in ja.cells] == [c.cell_type for c in en.cells]


@pytest.mark.parametrize("path", JA_NOTEBOOKS, ids=_ids(JA_NOTEBOOKS))
def test_japanese_notebook_was_executed(path):
    missing = tool.not_executed(nbformat.read(path, as_version=4))
    assert not missing, f"cells {missing} have no outputs: run `python tools/run_notebooks.py solutions/ja/{path.name}`"


# --------------------------------------------------------------------------- what a translation keeps
FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`]+`")          # may wrap a line
LINK_TARGET = re.compile(r"\]\(([^)\s]+)\)")
MATH = re.compile(r"\$\$.+?\$\$|\$[^$]+\$", re.DOTALL)
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")


def _found(pattern, text):
    return {" ".join(m.split()) for m in pattern.findall(text)}  # a line break inside counts as a space


def _kept(en, ja):
    """What the English cell has and its translation lacks: code spans, links, formulas, numbers with digits."""
    en, ja = FENCED.sub(" ", en), FENCED.sub(" ", ja)          # code blocks: their comments may be translated
    en_code, ja_code = CODE_SPAN.sub(" ", en), CODE_SPAN.sub(" ", ja)
    lost = []
    for name, pattern, a, b in (("code span", CODE_SPAN, en, ja), ("link", LINK_TARGET, en, ja),
                                ("formula", MATH, en_code, ja_code),
                                ("number", NUMBER, MATH.sub(" ", en_code), MATH.sub(" ", ja_code))):
        lost += [f"{name} {m}" for m in sorted(_found(pattern, a) - _found(pattern, b))]
    return lost


def test_kept_reports_a_lost_number_and_a_changed_code_span():
    assert _kept("Train for 674 steps with `lr=3e-4`.", "`lr=3e-4` で 647 ステップ学習します。") == ["number 674"]
    assert _kept("Use `tok.encode`.", "`tok.encode()` を使います。") == ["code span `tok.encode`"]


TRANSLATED = [(ch, cell_id, entry) for ch in CHAPTERS for cell_id, entry in ch.catalog["cells"].items()
              if entry.get("ja")]


@pytest.mark.parametrize("ch, cell_id, entry", TRANSLATED, ids=[f"{c.number}-{i}" for c, i, _ in TRANSLATED])
def test_translation_keeps_code_links_formulas_and_numbers(ch, cell_id, entry):
    lost = _kept("\n".join(entry["en"]), "\n".join(entry["ja"]))
    assert not lost, f"{ch.number} cell {cell_id}: the translation lost " + ", ".join(lost)


# --------------------------------------------------------------------------- one spelling per term
def rejected_spellings():
    """{rejected: chosen} from the table under '## 表記' in docs/glossary.md (columns: chosen | rejected)."""
    text = (ROOT / "docs" / "glossary.md").read_text(encoding="utf-8")
    section = text.split("\n## 表記", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.split("\n"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and line.lstrip().startswith("|") and not set(cells[0]) <= set("-: "):
            for word in re.split(r"[、,]\s*", cells[1]):
                if word and word != "使わない表記":
                    out[word] = cells[0]
    return out


def test_glossary_lists_rejected_spellings():
    rejected = rejected_spellings()
    assert rejected.get("トークナイザー") == "トークナイザ"
    assert len(rejected) >= 10


def _japanese_texts():
    for ch in CHAPTERS:
        for cell_id, entry in ch.catalog["cells"].items():
            if entry.get("ja"):
                yield f"{ch.number} cell {cell_id}", CODE_SPAN.sub(" ", "\n".join(entry["ja"]))
    yield "README.ja.md", CODE_SPAN.sub(" ", (ROOT / "README.ja.md").read_text(encoding="utf-8"))


def test_japanese_text_uses_the_glossary_spellings():
    rejected = rejected_spellings()
    found = [f"{where}: {word} (write {chosen})" for where, text in _japanese_texts()
             for word, chosen in rejected.items() if word in text]
    assert not found, "docs/glossary.md chooses one spelling:\n" + "\n".join(found)


# --------------------------------------------------------------------------- the notebooks speak Japanese
@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """setup() pins torch to one thread under MINIGPT_CI; give the other tests of this process theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_setup_in_a_folder_named_ja_switches_messages_to_japanese(tmp_path, monkeypatch):
    from minigpt.i18n import lang
    from minigpt.notebook import setup

    monkeypatch.setenv("MINIGPT_LANG", "en")
    (tmp_path / "ja").mkdir()
    monkeypatch.chdir(tmp_path / "ja")
    setup(seed=0, quiet=True)
    assert lang() == "ja"


def test_setup_elsewhere_leaves_the_language_alone(tmp_path, monkeypatch):
    from minigpt.notebook import setup

    monkeypatch.setenv("MINIGPT_LANG", "en")
    monkeypatch.chdir(tmp_path)
    setup(seed=0, quiet=True)
    assert os.environ["MINIGPT_LANG"] == "en"


def test_setup_under_test_outside_ja_prints_english_even_with_a_japanese_locale(tmp_path, monkeypatch):
    from minigpt.i18n import lang
    from minigpt.notebook import setup

    monkeypatch.delenv("MINIGPT_LANG", raising=False)
    monkeypatch.setenv("LANG", "ja_JP.UTF-8")
    monkeypatch.setenv("MINIGPT_CI", "1")
    monkeypatch.chdir(tmp_path)
    setup(seed=0, quiet=True)
    assert lang() == "en"


# --------------------------------------------------------------------------- which edition is running
def test_the_edition_comes_from_the_folder_or_the_front_ends_notebook_path(tmp_path, monkeypatch):
    from minigpt import notebook

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    (tmp_path / "ja").mkdir()
    monkeypatch.chdir(tmp_path / "ja")
    assert notebook.japanese_edition()  # nbval and Jupyter start the kernel in the notebook's folder
    monkeypatch.chdir(tmp_path)
    assert not notebook.japanese_edition()
    # JupyterLab names the notebook in JPY_SESSION_NAME
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "solutions" / "ja" / "02_x.ipynb"))
    assert notebook.japanese_edition()
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "solutions" / "02_ja_x.ipynb"))
    assert not notebook.japanese_edition()  # "ja" must be the folder, not part of a name
    monkeypatch.delenv("JPY_SESSION_NAME")
    # Colab: the sessions API names the source (here a GitHub URL, quoted); the folder is unknown
    monkeypatch.setattr(notebook, "notebook_path", lambda: "fileId=https://github.com/o/minigpt/blob/main/"
                                                           "chapters/ja/05_x.ipynb")
    assert notebook.japanese_edition()
    monkeypatch.setattr(notebook, "notebook_path", lambda: None)
    assert not notebook.japanese_edition()


def test_colab_sessions_api_is_read_and_any_failure_means_unknown(monkeypatch):
    import io
    import json
    import sys
    import types
    import urllib.request

    from minigpt import notebook

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv("COLAB_JUPYTER_IP", "172.28.0.12")
    monkeypatch.setenv("KMP_TARGET_PORT", "9000")
    seen = []

    def fake_urlopen(url, timeout):
        seen.append(url)
        body = json.dumps([{"name": "02_x.ipynb", "path": "fileId=https%3A%2F%2Fgithub.com%2Fo%2Fm%2Fblob%2Fmain"
                                                          "%2Fsolutions%2Fja%2F02_x.ipynb"}]).encode()
        return io.BytesIO(body)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    assert notebook.notebook_path().endswith("solutions/ja/02_x.ipynb")
    assert seen == ["http://172.28.0.12:9000/api/sessions"]

    def no_network(url, timeout):
        raise OSError("unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert notebook.notebook_path() is None
