"""Print the teacher notes of docs/workshop.md: per chapter, the common mistakes (the registered wrong
implementations of minigpt/check/chNN.py) and the first line of what the checker says to each.

    python tools/workshop_notes.py > /tmp/notes.md      # then paste between the markers in docs/workshop.md
    python tools/workshop_notes.py --chapters 10 11     # some chapters only
    python tools/workshop_notes.py --no-run             # the mistakes only, without running the checkers (instant)

Run with MINIGPT_LANG=ja for the Japanese texts. It runs every wrong implementation through its checker
(slow: more than 15 minutes on a busy 2-core CPU; --chapters to do a few), so the notes say what the checker really prints.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MINIGPT_CI", "1")

from minigpt.check import all_exercises, mistake_text, run_exercise  # noqa: E402
from minigpt.progress import _one_line  # noqa: E402


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chapters", nargs="*", default=None, help="two-digit chapter numbers (default: all)")
    p.add_argument("--no-run", action="store_true", help="list the mistakes without running the checkers")
    args = p.parse_args(argv)
    chapter = None
    for ex in all_exercises():
        if args.chapters and ex.chapter[2:] not in args.chapters:
            continue
        if ex.chapter != chapter:
            chapter = ex.chapter
            print(f"\n#### Chapter {chapter[2:]}\n")
        print(f"- **`{ex.name}`** ({len(ex.wrong)} registered mistakes)")
        for wrong in ex.wrong:
            said = "" if args.no_run else _one_line(run_exercise(ex, wrong).report, limit=150)
            doc = mistake_text(wrong).splitlines()[0] if mistake_text(wrong) else wrong.__name__
            print(f"  - {doc} → the checker: `{said}`" if said else f"  - {doc}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
