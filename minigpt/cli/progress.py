"""`python -m minigpt progress [chapters/]`: which exercises are done, failing, not started (minigpt.progress)."""

from __future__ import annotations

import json
import time

from minigpt import progress
from minigpt.cli.common import require, say
from minigpt.i18n import tr


def configure(p) -> None:
    p.add_argument("folder", nargs="?", default=None,
                   help="the folder of the chapter notebooks, or one notebook (default: this folder when it holds "
                        "chapter notebooks, as in a notebook's %%run, else chapters)")
    p.add_argument("--json", action="store_true", help="print JSON (for a teacher: save it as NAME.json)")
    p.add_argument("--name", default=None, help="the learner's name in the JSON (default: the login name)")
    p.add_argument("--timeout", type=float, default=progress.DEFAULT_TIMEOUT,
                   help="seconds one cell may run (default: %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="check everything again, ignoring cached results")
    p.add_argument("--jobs", type=int, default=None, help="notebooks checked at the same time (default: the CPU count)")
    p.add_argument("--collect", metavar="DIR", default=None,
                   help="a teacher's view: merge the learners' JSON files in DIR into one table")


def run(args) -> int:
    if args.collect:
        merged = progress.collect(args.collect)
        say(json.dumps(progress.collected_json(merged), ensure_ascii=False, indent=1) if args.json
            else progress.format_collected(merged))
        return 0
    require(args.timeout > 0, "--timeout must be positive, got {t}", "--timeout は正の数にしてください ({t})", t=args.timeout)
    require(args.jobs is None or args.jobs >= 1, "--jobs must be at least 1", "--jobs は 1 以上にしてください")
    t0 = time.perf_counter()
    folder = progress.default_folder() if args.folder is None else args.folder
    result = progress.run_progress(folder, timeout=args.timeout, use_cache=not args.no_cache, jobs=args.jobs)
    if args.json:
        say(json.dumps(progress.to_json(result, args.name), ensure_ascii=False, indent=1))
    else:
        say(progress.format_table(result))
        say(tr("checked in {s:.1f} s", "確認にかかった時間: {s:.1f} 秒", s=time.perf_counter() - t0))
    return 0
