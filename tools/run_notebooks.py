"""Re-execute the solution notebooks in place, so their stored outputs are what nbval expects.

    python tools/run_notebooks.py                       # every solutions/NN_*.ipynb (make notebooks)
    python tools/run_notebooks.py solutions/02_*.ipynb  # some of them

Each notebook runs top to bottom in a fresh kernel of this Python, from its own folder, with the
same environment as `make test-notebooks` (MINIGPT_CI=1: one torch thread; PYTHONHASHSEED=0; no
progress bars; PyTorch's and MKL's CPU code pinned to AVX2), so the stored outputs are reproduced bit for bit
by the tests on a machine with the same float code (minigpt.notebook.float_code(), stored in the notebook's
metadata). Run `tools/mark_cpu_dependent.py` afterwards when a code cell changed what it prints.
Cells tagged `nbval-skip` are not run here either (they need the network, or Colab) and keep no
output. Run `make exercises` afterwards (`make notebooks` does both).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from minigpt.notebook import float_code, notebook_env  # the environment `make test-notebooks` uses too

ROOT = Path(__file__).resolve().parent.parent

SKIP_TAG = "nbval-skip"


def _kernel_manager():
    """A kernel of *this* Python (the venv), whatever kernels Jupyter has installed (like nbval's)."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    class CurrentEnv(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="Python 3 (minigpt)", language="python")

    return KernelManager(kernel_spec_manager=CurrentEnv(), kernel_name="minigpt-current-env")


def run_notebook(path: Path, timeout: int = 600) -> float:
    """Execute one notebook in place; returns the seconds it took. Raises on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    skipped = []
    for cell in nb.cells:
        if cell.cell_type == "code" and SKIP_TAG in cell.metadata.get("tags", []):
            skipped.append(cell)
            cell.metadata.setdefault("tags", []).append("skip-execution")  # nbclient's own skip tag
    client = NotebookClient(nb, km=_kernel_manager(), timeout=timeout, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    for cell in skipped:
        cell.metadata["tags"].remove("skip-execution")
        cell.outputs, cell.execution_count = [], None
    # Keep the stored file free of machine-specific noise.
    nb.metadata.pop("widgets", None)
    if "language_info" in nb.metadata:
        nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    # the float code the outputs were made on: elsewhere the tests skip comparing its CPU-dependent cells
    # (minigpt.notebook.compares_outputs; tools/mark_cpu_dependent.py lists those cells)
    nb.metadata.setdefault("minigpt", {})["outputs_made_on"] = float_code()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    write_notebook(nb, path)
    return seconds


def write_notebook(nb, path: Path) -> None:
    """Write `nb` as nbformat does, ending in a newline (tools/mark_cpu_dependent.py writes through it too)."""
    import nbformat

    text = nbformat.writes(nb)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: solutions/NN_*.ipynb")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    os.environ.update(notebook_env(Path(__file__).resolve().parent.parent))
    paths = args.notebooks or sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    total, failed = 0.0, []
    for path in paths:
        print(f"running {path.name} ...", flush=True)
        try:
            seconds = run_notebook(path.resolve(), args.timeout)
        except Exception as e:  # show which notebook and cell, go on with the others
            print(f"FAILED {path.name}: {type(e).__name__}: {str(e)[-3000:]}", flush=True)
            failed.append(path.name)
            continue
        total += seconds
        print(f"  {path.name}: {seconds:.1f} s", flush=True)
    print(f"{len(paths) - len(failed)} of {len(paths)} notebook(s) executed in {total:.1f} s")
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
