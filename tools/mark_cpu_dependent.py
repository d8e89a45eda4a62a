"""Find the code cells whose stored outputs depend on the CPU's float code, and list them in the notebook.

    python tools/mark_cpu_dependent.py                       # every solutions/NN_*.ipynb (and solutions/ja/)
    python tools/mark_cpu_dependent.py solutions/06_*.ipynb  # some of them

It runs the strict notebook tests once with the float code perturbed (PyTorch's kernels without vector
code, ATEN_CPU_CAPABILITY=default, and MKL's COMPATIBLE branch, MKL_CBWR=COMPATIBLE): a cell whose outputs
change then prints numbers that another CPU rounds otherwise. Their ids go into the notebook's metadata,
`minigpt.cpu_dependent_cells`, and the same list into solutions/ja/'s copy (its code cells are the English
ones). On a machine whose float code (minigpt.notebook.float_code()) differs from the one the outputs were
made on (`minigpt.outputs_made_on`, written by tools/run_notebooks.py), the tests run those cells without
comparing their outputs; everywhere else every output is compared exactly.

Run it after tools/run_notebooks.py whenever a code cell changed what it prints (the list is replaced, not
added to). It takes as long as the notebook tests, about 3 times slower because of the COMPATIBLE branch.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
PERTURBED = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
FAILED_RE = re.compile(r"^FAILED (\S+\.ipynb)::Cell (\d+)", re.M)


def failing_cells(paths: list[Path], jobs: int) -> dict[Path, set[int]]:
    """{notebook: indices of its code cells whose outputs differ} under the perturbed float code."""
    env = {**os.environ, **PERTURBED}
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


def mark(path: Path, indices: set[int]) -> list[str]:
    """Write the ids of those code cells into the notebook's metadata; returns them."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    ids = sorted(code[i].id for i in indices)
    nb.metadata.setdefault("minigpt", {})["cpu_dependent_cells"] = ids
    text = nbformat.writes(nb)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return ids


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: solutions/NN_*.ipynb")
    parser.add_argument("-n", "--jobs", type=int, default=2, help="notebooks run at a time")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    for path, indices in sorted(failing_cells(paths, args.jobs).items()):
        ids = mark(path, indices)
        twin = ROOT / "solutions" / "ja" / path.name
        if path.parent == ROOT / "solutions" and twin.exists():
            mark(twin, indices)  # the same code cells, in the same order (tests/test_japanese_edition.py)
        print(f"{path.relative_to(ROOT)}: {len(ids)} CPU-dependent cell(s) {' '.join(ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
