"""Find the code cells whose stored outputs depend on the CPU's float code, and list them in the notebook.

    python tools/mark_cpu_dependent.py                       # every solutions/NN_*.ipynb (and solutions/ja/)
    python tools/mark_cpu_dependent.py solutions/06_*.ipynb  # some of them

It runs the strict notebook tests with the float code perturbed, twice: PyTorch's kernels without vector code
(ATEN_CPU_CAPABILITY=default) with MKL's COMPATIBLE branch (MKL_CBWR=COMPATIBLE), then 2 torch threads instead
of 1 (sums split in another order, as a wider vector splits them). A cell whose outputs change in either run
prints numbers that another CPU rounds otherwise. Their ids go into the notebook's metadata,
`minigpt.cpu_dependent_cells`, and the same list into solutions/ja/'s copy (its code cells are the English
ones). On a machine whose float code (minigpt.notebook.float_code()) differs from the one the outputs were
made on (`minigpt.outputs_made_on`, written by tools/run_notebooks.py), the tests run those cells without
comparing their outputs; everywhere else every output is compared exactly.

A cell seen to differ on another CPU although the perturbation did not move it (chapter 12's sampling
comparison differed on an AVX-512 CPU) is recorded by hand, in `minigpt.cpu_dependent_seen`, which this tool
keeps: `python tools/mark_cpu_dependent.py --seen solutions/12_real_japanese.ipynb:c12-28`.

Run it after tools/run_notebooks.py whenever a code cell changed what it prints (the list is replaced, not
added to). The COMPATIBLE pass is slow: 11 minutes for solutions/ here, against 6 for the notebook tests.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

from run_notebooks import write_notebook  # tools/ is on sys.path when this script runs

ROOT = Path(__file__).resolve().parent.parent
PERTURBATIONS = {"vector": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
                 "threads": {"MINIGPT_NUM_THREADS": "2"}}
FAILED_RE = re.compile(r"^FAILED (\S+\.ipynb)::Cell (\d+)", re.M)


def failing_cells(paths: list[Path], jobs: int, perturbed: dict[str, str]) -> dict[Path, set[int]]:
    """{notebook: indices of its code cells whose outputs differ} under the perturbed float code."""
    env = {**os.environ, **perturbed}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:randomly", "-n", str(jobs), "--dist", "loadfile",
           "--nbval", "--nbval-current-env", "--nbval-sanitize-with", "tools/nbval_sanitize.cfg",
           *[str(p.relative_to(ROOT)) for p in paths]]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    found: dict[Path, set[int]] = {p: set() for p in paths}
    for name, index in FAILED_RE.findall(out.stdout):
        found.setdefault((ROOT / name).resolve(), set()).add(int(index))
    if out.returncode not in (0, 1):  # 1: tests failed, as expected; anything else: pytest itself failed
        sys.exit(f"pytest failed to run (exit {out.returncode}):\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
    return found


def mark(path: Path, indices: set[int], add: bool = False) -> list[str]:
    """Write the ids of those code cells into the notebook's metadata; returns them."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    old = set(nb.metadata.get("minigpt", {}).get("cpu_dependent_cells", [])) if add else set()
    ids = sorted(old | {code[i].id for i in indices})
    nb.metadata.setdefault("minigpt", {})["cpu_dependent_cells"] = ids
    write_notebook(nb, path)
    return ids


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: solutions/NN_*.ipynb")
    parser.add_argument("-n", "--jobs", type=int, default=2, help="notebooks run at a time")
    parser.add_argument("--perturbation", choices=[*PERTURBATIONS, "all"], default="all")
    parser.add_argument("--add", action="store_true", help="add to the lists already there instead of replacing them")
    parser.add_argument("--seen", nargs="+", metavar="NOTEBOOK:CELL_ID",
                        help="record cells seen to differ on another CPU (kept; runs nothing else)")
    args = parser.parse_args(argv)
    if args.seen:
        for item in args.seen:
            name, _, cell_id = item.rpartition(":")
            path = (ROOT / name).resolve() if not Path(name).is_absolute() else Path(name)
            twin = ROOT / "solutions" / "ja" / path.name
            for target in [path] + ([twin] if path.parent == ROOT / "solutions" and twin.exists() else []):
                nb = nbformat.read(target, as_version=4)
                if cell_id not in [c.get("id") for c in nb.cells if c.cell_type == "code"]:
                    sys.exit(f"{target.relative_to(ROOT)} has no code cell with id {cell_id}")
                seen = nb.metadata.setdefault("minigpt", {}).setdefault("cpu_dependent_seen", [])
                nb.metadata["minigpt"]["cpu_dependent_seen"] = sorted({*seen, cell_id})
                write_notebook(nb, target)
            print(f"{path.relative_to(ROOT)}: {cell_id} recorded as seen to differ on another CPU")
        return 0
    paths = [p.resolve() for p in args.notebooks] or sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    found: dict[Path, set[int]] = {}
    for name, perturbed in PERTURBATIONS.items():
        if args.perturbation in (name, "all"):
            for path, indices in failing_cells(paths, args.jobs, perturbed).items():
                found.setdefault(path, set()).update(indices)
    for path, indices in sorted(found.items()):
        ids = mark(path, indices, args.add)
        twin = ROOT / "solutions" / "ja" / path.name
        if path.parent == ROOT / "solutions" and twin.exists():
            mark(twin, indices, args.add)  # the same code cells, in the same order (tests/test_japanese_edition.py)
        print(f"{path.relative_to(ROOT)}: {len(ids)} CPU-dependent cell(s) {' '.join(ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
