"""Build the Japanese edition, solutions/ja/ and chapters/ja/, from the English notebooks and the catalogs.

    python tools/make_japanese.py                  # write solutions/ja/ and chapters/ja/
    python tools/make_japanese.py --check          # exit 1 if a translation is stale or a file is out of date
    python tools/make_japanese.py --stale          # what changed in English, cell by cell, with the Japanese
    python tools/make_japanese.py --accept 02:c02-05 ...   # after updating those translations: record
                                                   # the current English as their source
    python tools/run_notebooks.py solutions/ja/*.ipynb     # then store the outputs a Japanese learner sees

One catalog per chapter, i18n/ja/NN_name.json, holds the Japanese of every markdown cell of
solutions/NN_name.ipynb, keyed by the English cell's id:

    {"source": "solutions/02_byte_level_pitfalls.ipynb", "language": "ja",
     "cells": {"c02-00": {"sha256": "<SHA-256 of the English source>", "en": [English lines], "ja": [Japanese lines]},
               "c02-07": {"sha256": "...", "en": [...], "untranslated": true}}}

`en` is the English the translation was made from (its SHA-256 is `sha256`), so `--stale` can show what
changed. `"untranslated": true` keeps the English cell as it is (a formula, a table of code); it is still
checked against its source. A chapter is part of the Japanese edition when it has a catalog; it must then
translate every markdown cell of the current English notebook.

solutions/ja/NN_name.ipynb is the English notebook with its markdown cells replaced by their translations.
Code cells are the English ones; their outputs are kept from the last execution of the Japanese notebook
while the code is unchanged (they differ from the English ones where the checkers speak Japanese); a new or
changed code cell has no output until `tools/run_notebooks.py solutions/ja/...` executes the notebook. A
stale or missing translation falls back to the English text (with a warning); `--check` fails on it.
chapters/ja/ is generated from solutions/ja/ by tools/make_exercises.py, like chapters/ from solutions/
(a learner's edited notebook is kept, the new one written beside it; `--force` replaces it).
See docs/ENGINE.md ("The Japanese edition").
"""

from __future__ import annotations

import argparse
import copy
import difflib
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_exercises  # noqa: E402  (the same stub generator as the English chapters)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
CATALOGS = ROOT / "i18n" / "ja"
SOLUTIONS_JA = SOLUTIONS / "ja"
CHAPTERS_JA = ROOT / "chapters" / "ja"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def lines(text: str) -> list[str]:
    return text.split("\n")


def english_notebooks() -> list[Path]:
    return sorted(p for p in SOLUTIONS.glob("*.ipynb") if make_exercises.NOTEBOOK_NAME.match(p.name))


def catalog_path(notebook: Path) -> Path:
    return CATALOGS / (notebook.stem + ".json")


def load_catalog(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data.get("cells"), dict):
        raise ValueError(f"{path.relative_to(ROOT)}: no \"cells\" object")
    return data


def render_catalog(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


@dataclass
class Chapter:
    """One chapter's English notebook, its catalog and what is wrong with the translation."""

    english: Path
    catalog: dict
    problems: list[str] = field(default_factory=list)   # "translation stale: 02 cell c02-05" ...
    stale: list[tuple[str, dict, str]] = field(default_factory=list)  # (cell id, entry, current English)

    @property
    def number(self) -> str:
        return self.english.name[:2]


def examine(english: Path, catalog: dict) -> Chapter:
    """Compare a catalog with the current English notebook."""
    ch = Chapter(english, catalog)
    nb = nbformat.read(english, as_version=4)
    entries = catalog["cells"]
    seen = set()
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        seen.add(cell.id)
        entry = entries.get(cell.id)
        if entry is None:
            ch.problems.append(f"translation missing: {ch.number} cell {cell.id} (a new English cell)")
        elif not entry.get("untranslated") and not "\n".join(entry.get("ja") or []).strip():
            ch.problems.append(f"translation missing: {ch.number} cell {cell.id} (empty)")
        elif entry.get("sha256") != sha256(cell.source):
            ch.problems.append(f"translation stale: {ch.number} cell {cell.id} (the English changed)")
            ch.stale.append((cell.id, entry, cell.source))
        elif sha256("\n".join(entry.get("en", []))) != entry["sha256"]:
            ch.problems.append(f"catalog damaged: {ch.number} cell {cell.id} (\"en\" does not match \"sha256\")")
    for cell_id in entries:
        if cell_id not in seen:
            ch.problems.append(f"translation of a removed cell: {ch.number} cell {cell_id} "
                               f"(delete it from {catalog_path(english).relative_to(ROOT)})")
    return ch


def chapters() -> list[Chapter]:
    """Every English chapter that has a catalog."""
    out = []
    for english in english_notebooks():
        path = catalog_path(english)
        if path.exists():
            out.append(examine(english, load_catalog(path)))
    return out


def untranslated_chapters() -> list[str]:
    return [p.name for p in english_notebooks() if not catalog_path(p).exists()]


def build_notebook(english: Path, catalog: dict, previous: nbformat.NotebookNode | None):
    """(the Japanese solution notebook, ids of code cells that must be executed to get their outputs)."""
    nb = nbformat.read(english, as_version=4)
    out = copy.deepcopy(nb)
    old_code = {}
    if previous is not None:
        old_code = {c.id: c for c in previous.cells if c.cell_type == "code"}
    needs_run = []
    for cell in out.cells:
        if cell.cell_type == "markdown":
            entry = catalog["cells"].get(cell.id)
            if entry and not entry.get("untranslated") and entry.get("ja"):
                cell.source = "\n".join(entry["ja"])  # a stale entry still gives the old translation
        elif cell.cell_type == "code":
            old = old_code.get(cell.id)
            if old is not None and old.source == cell.source:
                cell.outputs, cell.execution_count = old.outputs, old.execution_count
            elif cell.source.strip() and "nbval-skip" not in cell.metadata.get("tags", []):
                cell.outputs, cell.execution_count = [], None  # until run_notebooks.py executes it
                needs_run.append(cell.id)
    return out, needs_run


def not_executed(nb: nbformat.NotebookNode) -> list[str]:
    """Ids of the code cells that have not been executed (new or changed since the last run)."""
    return [c.id for c in nb.cells if c.cell_type == "code" and c.source.strip() and not c.execution_count
            and "nbval-skip" not in c.metadata.get("tags", [])]


def same_except_outputs(a: nbformat.NotebookNode, b: nbformat.NotebookNode) -> bool:
    """The cells (type, id, source, tags) are the same; outputs may differ (they come from running it)."""
    def key(nb):
        return [(c.cell_type, c.get("id"), c.source, c.metadata.get("tags", [])) for c in nb.cells]
    return key(a) == key(b)


def check() -> list[str]:
    """Everything that is wrong with the Japanese edition (empty when it is up to date)."""
    return [p for ch in chapters() for p in ch.problems] + file_problems()


def file_problems() -> list[str]:
    """solutions/ja/ and chapters/ja/ differ from what this tool (then make_exercises) would write."""
    problems = []
    built = {}
    for ch in chapters():
        target = SOLUTIONS_JA / ch.english.name
        previous = nbformat.read(target, as_version=4) if target.exists() else None
        nb, _ = build_notebook(ch.english, ch.catalog, previous)
        built[target] = nb
        if previous is None:
            problems.append(f"{target.relative_to(ROOT)} is missing")
        elif not same_except_outputs(previous, nb):
            problems.append(f"{target.relative_to(ROOT)} differs from its English notebook and catalog")
    for path in sorted(SOLUTIONS_JA.glob("*.ipynb")):
        if path not in built:
            problems.append(f"{path.relative_to(ROOT)} has no catalog {CATALOGS.relative_to(ROOT)}/{path.stem}.json")
    # chapters/ja/ is generated from solutions/ja/ as it is on disk, as `make exercises` does chapters/
    if SOLUTIONS_JA.exists() or CHAPTERS_JA.exists():
        problems += make_exercises.stale_chapters(SOLUTIONS_JA, CHAPTERS_JA)
    return problems


def write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def build(force: bool = False) -> int:
    built, to_run = {}, []
    for ch in chapters():
        for p in ch.problems:
            print(f"warning: {p}")
        target = SOLUTIONS_JA / ch.english.name
        previous = nbformat.read(target, as_version=4) if target.exists() else None
        nb, _ = build_notebook(ch.english, ch.catalog, previous)
        built[target] = nb
        if write_if_changed(target, make_exercises.render(nb)):
            print(f"wrote {target.relative_to(ROOT)}")
        if not_executed(nb):
            to_run.append(target)
    for path in sorted(SOLUTIONS_JA.glob("*.ipynb")):
        if path not in built:
            path.unlink()
            print(f"deleted {path.relative_to(ROOT)} (no catalog)")
    # the learner notebooks, by the English edition's generator (it never overwrites a learner's edits)
    done = make_exercises.generate(SOLUTIONS_JA, CHAPTERS_JA, force=force)
    print(f"{len(built)} Japanese chapter(s) built"
          + (f"; {len(done['kept'])} chapters/ja notebook(s) kept because you edited them" if done["kept"] else ""))
    missing = untranslated_chapters()
    if missing:
        print("not translated yet (no catalog in i18n/ja/): " + ", ".join(missing))
    if to_run:
        print("new or changed code; store the outputs a Japanese learner sees with:\n    python tools/run_notebooks.py "
              + " ".join(str(p.relative_to(ROOT)) for p in to_run))
    return 0


def show_stale() -> int:
    n = 0
    for ch in chapters():
        for cell_id, entry, current in ch.stale:
            n += 1
            print(f"=== {ch.number} cell {cell_id}: what changed in English")
            print("\n".join(difflib.unified_diff(entry.get("en", []), lines(current), "translated from", "now",
                                                 lineterm="")))
            print(f"--- the Japanese now ({'untranslated' if entry.get('untranslated') else 'ja'}):")
            print("\n".join(entry.get("ja", [])))
        for p in ch.problems:
            if not p.startswith("translation stale"):
                print(p)
    print(f"{n} stale translation(s)")
    return 0


def accept(refs: list[str]) -> int:
    """Record the current English as the source of the given (already updated) translations."""
    by_number = {ch.number: ch for ch in chapters()}
    for ref in refs:
        number, _, cell_id = ref.partition(":")
        ch = by_number.get(number)
        if ch is None or cell_id not in ch.catalog["cells"]:
            print(f"error: no translation {ref} (write it as NN:cell-id)", file=sys.stderr)
            return 2
        nb = nbformat.read(ch.english, as_version=4)
        source = next(c.source for c in nb.cells if c.id == cell_id)
        entry = ch.catalog["cells"][cell_id]
        entry["sha256"], entry["en"] = sha256(source), lines(source)
    for ch in by_number.values():
        # keep the entries in the notebook's order
        nb = nbformat.read(ch.english, as_version=4)
        order = [c.id for c in nb.cells if c.id in ch.catalog["cells"]]
        rest = [k for k in ch.catalog["cells"] if k not in order]
        ch.catalog["cells"] = {k: ch.catalog["cells"][k] for k in order + rest}
        if write_if_changed(catalog_path(ch.english), render_catalog(ch.catalog)):
            print(f"wrote {catalog_path(ch.english).relative_to(ROOT)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="only report what is stale or out of date")
    group.add_argument("--stale", action="store_true", help="show the English changes behind stale translations")
    group.add_argument("--accept", nargs="+", metavar="NN:CELL", help="mark these translations as current")
    parser.add_argument("--force", action="store_true", help="also replace chapters/ja notebooks you edited")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check()
            for p in problems:
                print(p)
            missing = untranslated_chapters()
            if missing:
                print("not translated yet (no catalog in i18n/ja/): " + ", ".join(missing))
            if problems:
                print("the Japanese edition is stale: update i18n/ja/ (see --stale), then run "
                      "`python tools/make_japanese.py`")
            return 1 if problems else 0
        if args.stale:
            return show_stale()
        if args.accept:
            return accept(args.accept)
        return build(force=args.force)
    except (make_exercises.SolutionError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
