"""Run every benchmark script in bench/, one after the other (`make bench`).

    python bench/run_all.py               # all of them
    python bench/run_all.py kv_cache      # only the named ones

Each script runs in its own process with this Python, so one that fails does not stop the rest;
the exit status is 1 if any failed. Times are wall-clock and depend on what else the machine is
doing: compare the ratios each script prints, which are measured within one run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"common.py", "run_all.py"}


def scripts(names: list[str]) -> list[Path]:
    found = sorted(p for p in HERE.glob("*.py") if p.name not in NOT_BENCHMARKS)
    if not names:
        return found
    by_name = {p.stem: p for p in found}
    unknown = [n for n in names if Path(n).stem not in by_name]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {sorted(by_name)}")
    return [by_name[Path(n).stem] for n in names]


def main(argv: list[str]) -> int:
    failed = []
    t_all = time.perf_counter()
    for script in scripts(argv):
        print(f"\n### {script.name}", flush=True)
        t0 = time.perf_counter()
        status = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(f"### {script.name}: {'ok' if status == 0 else f'FAILED (exit {status})'} "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)
        if status != 0:
            failed.append(script.name)
    print(f"\n{len(scripts(argv)) - len(failed)} benchmark(s) ok, {len(failed)} failed "
          f"{failed if failed else ''}in {time.perf_counter() - t_all:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
