"""Generate the learner notebooks chapters/NN_name.ipynb from the solutions solutions/NN_name.ipynb.

    python tools/make_exercises.py            # write chapters/ (make exercises)
    python tools/make_exercises.py --check    # exit 1 if chapters/ is stale (what the tests check)

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


def solution_notebooks() -> list[Path]:
    return sorted(p for p in SOLUTIONS.glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))


def expected_chapters() -> dict[Path, str]:
    """{chapters/NN_name.ipynb: its text} for every solution notebook."""
    out = {}
    for path in solution_notebooks():
        nb = nbformat.read(path, as_version=4)
        out[CHAPTERS / path.name] = render(make_chapter(nb, f"solutions/{path.name}"))
    return out


def stale_chapters() -> list[str]:
    """What differs between chapters/ and what this tool would write (empty when in sync)."""
    problems = []
    expected = expected_chapters()
    for path, text in expected.items():
        if not path.exists():
            problems.append(f"{path.relative_to(ROOT)} is missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path.relative_to(ROOT)} differs from its solution notebook")
    for path in sorted(CHAPTERS.glob("*.ipynb")):
        if path not in expected:
            problems.append(f"{path.relative_to(ROOT)} has no solutions/{path.name}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether chapters/ is up to date")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale_chapters()
            for p in problems:
                print(p)
            if problems:
                print("chapters/ is stale: run `make exercises`")
            return 1 if problems else 0
        expected = expected_chapters()
    except SolutionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    CHAPTERS.mkdir(exist_ok=True)
    for path, text in expected.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    for path in sorted(CHAPTERS.glob("*.ipynb")):
        if path not in expected:
            path.unlink()
            print(f"deleted {path.relative_to(ROOT)} (no solution notebook)")
    print(f"{len(expected)} chapter notebook(s) up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
