"""Generate the learner notebooks chapters/NN_name.ipynb from the solutions solutions/NN_name.ipynb.

    python tools/make_exercises.py            # write chapters/ (make exercises); never overwrites your work
    python tools/make_exercises.py --force    # also replace chapter notebooks you edited
    python tools/make_exercises.py --check    # exit 1 if chapters/ is stale (what the tests check)
    python tools/make_exercises.py --src solutions/ja --dst chapters/ja    # another edition, same rules

**A learner's notebooks are never overwritten.** `chapters/.generated.json` records, for every
chapter notebook, a hash of each cell as this tool last wrote it. A chapter cell is *untouched*
when its source is still what was generated (then or now); a notebook whose cells are all
untouched is refreshed. A notebook with an edited, added or deleted cell is kept as it is; when
the course changed since it was generated, the new version goes beside it as `NN_name.new.ipynb`
(copy your code over, then delete it); `--force` replaces it instead. Files in chapters/ that this tool did not generate (your own
notebooks, `.new.ipynb` copies) are never deleted. From Python: `generate(src_dir, dst_dir, force=False)`.

In each code cell, every region between a line `### BEGIN SOLUTION` and a line `### END SOLUTION`
(markers included) becomes a stub at the marker's indentation:

    # YOUR CODE HERE
    raise NotImplementedError

Outputs and execution counts are cleared, cell metadata is reduced to its tags, notebook metadata
to the kernel spec. A chapter notebook with no solution left over is deleted. The rules a solution
notebook must follow (checked here, so `make exercises` fails early with the file and cell):

- a solution region sits inside a function or method body (indented), so a stub raises only
  when it is called, and the checker can fall back to the reference;
- a cell with a solution region calls `check(...)`, which provides that fallback;
- markers are balanced, one region at a time.

See docs/ENGINE.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
CHAPTERS = ROOT / "chapters"
NOTEBOOK_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError")
KEEP_CELL_METADATA = ("tags",)
KEEP_NOTEBOOK_METADATA = ("kernelspec", "language_info")
MANIFEST = ".generated.json"  # in the chapters folder: what this tool last wrote, cell by cell


class SolutionError(ValueError):
    """A solution notebook breaks one of the rules; the message names the file and the cell."""


def stub_source(source: str, where: str = "cell") -> tuple[str, int]:
    """Replace every solution region of a code cell's source; returns (new source, regions replaced)."""
    out: list[str] = []
    inside, n, begin_line = False, 0, 0
    for lineno, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise SolutionError(f"{where}, line {lineno}: {BEGIN} inside another solution region "
                                    f"(opened on line {begin_line}); close it with {END} first")
            indent = line[: len(line) - len(line.lstrip())]
            if not indent:
                raise SolutionError(f"{where}, line {lineno}: a solution region must sit inside a function or "
                                    "method body (indented), so that the chapter still runs with the stub")
            out.extend(indent + s for s in STUB)
            inside, n, begin_line = True, n + 1, lineno
        elif stripped == END:
            if not inside:
                raise SolutionError(f"{where}, line {lineno}: {END} without a {BEGIN} before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise SolutionError(f"{where}: {BEGIN} on line {begin_line} is never closed with {END}")
    return "\n".join(out), n


def make_chapter(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner notebook for one solution notebook (a new object; `nb` is not changed)."""
    out = nbformat.v4.new_notebook()
    out.metadata = {k: nb.metadata[k] for k in KEEP_NOTEBOOK_METADATA if k in nb.metadata}
    if "language_info" in out.metadata:  # the version of the Python that last ran it is noise
        out.metadata["language_info"] = {"name": out.metadata["language_info"].get("name", "python")}
    out.nbformat, out.nbformat_minor = nb.nbformat, nb.nbformat_minor
    for i, cell in enumerate(nb.cells):
        new = nbformat.NotebookNode({k: v for k, v in cell.items() if k not in ("outputs", "execution_count",
                                                                                 "metadata", "attachments")})
        new.metadata = nbformat.NotebookNode({k: cell.metadata[k] for k in KEEP_CELL_METADATA if k in cell.metadata})
        if "attachments" in cell:
            new.attachments = cell.attachments
        if cell.cell_type == "code":
            source, n = stub_source(cell.source, f"{name}, cell {i}")
            if n and "check(" not in cell.source:
                raise SolutionError(f"{name}, cell {i}: a cell with a solution region must hand the result to "
                                    "check(\"chNN.name\", obj), which also gives the reference back to a stub")
            new.source = source
            new.outputs = []
            new.execution_count = None
        out.cells.append(new)
    return out


def render(nb: nbformat.NotebookNode) -> str:
    """The exact text written to disk (nbformat's own formatting, with a final newline)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def solution_notebooks(src_dir: Path = SOLUTIONS) -> list[Path]:
    return sorted(p for p in Path(src_dir).glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def expected_chapters(src_dir: Path = SOLUTIONS, dst_dir: Path = CHAPTERS) -> dict[Path, str]:
    """{dst_dir/NN_name.ipynb: its text} for every solution notebook in src_dir."""
    out = {}
    for path in solution_notebooks(src_dir):
        nb = nbformat.read(path, as_version=4)
        out[Path(dst_dir) / path.name] = render(make_chapter(nb, _shown(path)))
    return out


# ------------------------------------------------------------------------ never overwrite a learner's work
def _cell_key(cell, index: int) -> str:
    return cell.get("id") or f"#{index}"


def _cell_hash(cell) -> str:
    return hashlib.sha256(f"{cell.cell_type}\0{cell.source}".encode("utf-8")).hexdigest()[:16]


def cell_hashes(text: str) -> dict[str, str]:
    """{cell id: hash of its type and source} of a notebook's text."""
    nb = nbformat.reads(text, as_version=4)
    return {_cell_key(c, i): _cell_hash(c) for i, c in enumerate(nb.cells)}


def read_manifest(dst_dir: Path) -> dict[str, dict[str, str]]:
    """{notebook name: {cell id: hash}} as this tool last wrote them into dst_dir ({} if none)."""
    try:
        data = json.loads((Path(dst_dir) / MANIFEST).read_text(encoding="utf-8"))
        return {name: dict(entry["cells"]) for name, entry in data["notebooks"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def render_manifest(manifest: dict[str, dict[str, str]]) -> str:
    data = {"about": "written by tools/make_exercises.py: the cells as generated, to tell them from your edits",
            "notebooks": {name: {"cells": manifest[name]} for name in sorted(manifest)}}
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def edited_cells(ours: dict[str, str] | None, new: dict[str, str], recorded: dict[str, str] | None) -> list[str]:
    """The cells of a chapter notebook (`ours`, its cell hashes) that a learner changed, added or deleted.

    A cell is untouched when it equals the cell of the same id in `new` (what would be generated now)
    or in `recorded` (what this tool last wrote). A notebook that could not be read (`ours` None) is
    the learner's too: never replaced.
    """
    if ours is None:
        return ["(the file is not a readable notebook)"]
    recorded = recorded or {}
    changed = [key for key, h in ours.items() if h != new.get(key) and h != recorded.get(key)]
    deleted = [key for key in (recorded or new) if key not in ours]
    return changed + [f"{key} (deleted)" for key in deleted]


def _hashes_on_disk(path: Path) -> dict[str, str] | None:
    try:
        return cell_hashes(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, AttributeError, KeyError):
        return None


def _with_outputs_of(path: Path, text: str) -> str:
    """`text` (a generated notebook) with the outputs of the notebook at `path` on the cells they belong to."""
    nb, old = nbformat.reads(text, as_version=4), nbformat.read(path, as_version=4)
    before = {_cell_key(c, i): c for i, c in enumerate(old.cells)}
    for i, cell in enumerate(nb.cells):
        was = before.get(_cell_key(cell, i))
        if cell.cell_type == "code" and was is not None and was.source == cell.source:
            cell.outputs, cell.execution_count = was.get("outputs", []), was.get("execution_count")
    return render(nb)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # atomic: a crash never leaves half a notebook


def generate(src_dir: Path = SOLUTIONS, dst_dir: Path = CHAPTERS, force: bool = False, log=print) -> dict:
    """Write dst_dir/NN_name.ipynb from every src_dir/NN_name.ipynb without losing a learner's edits.

    Returns {"written": [...], "kept": [...], "new_copies": [...], "deleted": [...]} (paths). `force`
    replaces edited notebooks too. Raises SolutionError for a solution notebook that breaks the rules
    (before anything is written).
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    expected = expected_chapters(src_dir, dst_dir)
    manifest = read_manifest(dst_dir)
    done = {"written": [], "kept": [], "new_copies": [], "deleted": []}
    dst_dir.mkdir(parents=True, exist_ok=True)
    for path, text in expected.items():
        new = cell_hashes(text)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            manifest[path.name] = new
            continue
        ours = _hashes_on_disk(path) if path.exists() else {}
        edited = [] if force or not path.exists() else edited_cells(ours, new, manifest.get(path.name))
        if not force and ours == new:
            # The learner changed no cell; the course may have changed tags or metadata. Refresh, keeping
            # the outputs the learner's runs left.
            manifest[path.name] = new
            merged = _with_outputs_of(path, text)
            if merged != path.read_text(encoding="utf-8"):
                _write(path, merged)
                log(f"wrote {_shown(path)}")
                done["written"].append(path)
            continue
        if edited and manifest.get(path.name) == new:
            continue  # the learner's work, and the course has not changed since it was generated: nothing new
        if edited:
            copy = path.with_name(path.stem + ".new.ipynb")
            if not copy.exists() or copy.read_text(encoding="utf-8") != text:
                _write(copy, text)
            shown = ", ".join(edited[:5]) + (" ..." if len(edited) > 5 else "")
            log(f"kept {_shown(path)}: you changed cells {shown}; the new version is {_shown(copy)} "
                "(copy your code over, then delete it), or run with --force to replace your notebook")
            done["kept"].append(path)
            done["new_copies"].append(copy)
            continue
        _write(path, text)
        manifest[path.name] = cell_hashes(text)
        log(f"wrote {_shown(path)}")
        done["written"].append(path)
    for path in sorted(dst_dir.glob("*.ipynb")):
        if path in expected or not NOTEBOOK_NAME.match(path.name):
            continue  # a learner's own notebook, or a .new.ipynb copy: never deleted
        recorded = manifest.get(path.name)
        if recorded is not None and (force or edited_cells(_hashes_on_disk(path), {}, recorded) == []):
            path.unlink()
            manifest.pop(path.name, None)
            log(f"deleted {_shown(path)} (no solution notebook)")
            done["deleted"].append(path)
        else:
            log(f"kept {_shown(path)}: it has no solution notebook, but it is not as generated (your work?)")
    for name in list(manifest):
        if dst_dir / name not in expected and not (dst_dir / name).exists():
            del manifest[name]
    if (dst_dir / MANIFEST).exists() or expected:
        text = render_manifest(manifest)
        if not (dst_dir / MANIFEST).exists() or (dst_dir / MANIFEST).read_text(encoding="utf-8") != text:
            _write(dst_dir / MANIFEST, text)
    return done


def stale_chapters(src_dir: Path = SOLUTIONS, dst_dir: Path = CHAPTERS) -> list[str]:
    """What differs between dst_dir and what this tool would write (empty when in sync)."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    problems = []
    expected = expected_chapters(src_dir, dst_dir)
    for path, text in expected.items():
        if not path.exists():
            problems.append(f"{_shown(path)} is missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{_shown(path)} differs from its solution notebook")
    for path in sorted(dst_dir.glob("*.ipynb")):
        if path not in expected:
            problems.append(f"{_shown(path)} has no {_shown(src_dir / path.name)}")
    manifest = read_manifest(dst_dir)
    if manifest != {p.name: cell_hashes(t) for p, t in expected.items()}:
        problems.append(f"{_shown(dst_dir / MANIFEST)} is out of date")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether chapters/ is up to date")
    parser.add_argument("--force", action="store_true",
                        help="also replace chapter notebooks that you edited (their edits are lost)")
    parser.add_argument("--src", type=Path, default=SOLUTIONS, help="the solution notebooks (default: solutions/)")
    parser.add_argument("--dst", type=Path, default=CHAPTERS, help="the chapter notebooks (default: chapters/)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale_chapters(args.src, args.dst)
            for p in problems:
                print(p)
            if problems:
                print(f"{_shown(args.dst)}/ is stale: run `make exercises`")
            return 1 if problems else 0
        done = generate(args.src, args.dst, force=args.force)
    except SolutionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = len(expected_chapters(args.src, args.dst))
    print(f"{n - len(done['kept'])} of {n} chapter notebook(s) up to date"
          + (f"; {len(done['kept'])} kept because you edited them (see the .new.ipynb beside each)"
             if done["kept"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
