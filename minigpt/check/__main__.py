"""`python -m minigpt.check --write-docs`: rewrite the table "What the cases cover" in docs/ENGINE.md
from the registry (each exercise's `covers=`, and how many wrong and correct implementations it has).
`python -m minigpt.check` alone prints the table."""

from __future__ import annotations

import sys
from pathlib import Path

from minigpt.check import covers_table

BEGIN, END = "<!-- covers-table: begin (python -m minigpt.check --write-docs) -->", "<!-- covers-table: end -->"
ENGINE_MD = Path(__file__).resolve().parents[2] / "docs" / "ENGINE.md"


def with_table(text: str, table: str) -> str:
    """`text` with the part between the markers replaced by `table`."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def main(argv: list[str]) -> int:
    table = covers_table()
    if "--write-docs" in argv:
        ENGINE_MD.write_text(with_table(ENGINE_MD.read_text(encoding="utf-8"), table), encoding="utf-8")
        print(f"wrote the table of {table.count(chr(10)) - 1} exercises to {ENGINE_MD}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
