"""The environment the notebooks run in as tests pins the CPU code, so stored outputs made on one x86-64
machine are reproduced on another (AVX2 or AVX-512 of the same maker): minigpt.notebook.NOTEBOOK_ENV; on a CPU of the other maker the cells
that print CPU-dependent numbers run without being compared (minigpt.notebook.compares_outputs)."""

import os
import subprocess
import sys

import pytest

from minigpt.notebook_env import NOTEBOOK_ENV, _has_avx2

PROBE = """
import torch
a = torch.ones(64, 64)
(a @ a).sum().item()  # one MKL sgemm: MKL_VERBOSE reports the code branch it used (CNR:...)
print("capability", torch.backends.cpu.get_cpu_capability())
"""


@pytest.mark.skipif(not _has_avx2(), reason="not an x86-64 CPU with AVX2: nothing is pinned")
def test_a_notebook_kernel_runs_the_pinned_cpu_code():
    env = {**os.environ, **NOTEBOOK_ENV, "MKL_VERBOSE": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "capability AVX2" in out.stdout  # PyTorch's own kernels: AVX2, also on an AVX-512 CPU
    sgemm = [line for line in out.stdout.splitlines() if "SGEMM" in line]
    # MKL pinned: CNR:AVX2 on an Intel CPU; an AMD one reports CNR:AUTO (MKL's AMD code has no branches)
    assert sgemm and all("CNR:OFF" not in line for line in sgemm), out.stdout


def test_without_the_pins_the_cpu_picks_its_own_code():
    """The probe can fail: with the pins removed, MKL runs unpinned (CNR:OFF)."""
    env = {k: v for k, v in {**os.environ, **NOTEBOOK_ENV, "MKL_VERBOSE": "1"}.items()
           if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    if "SGEMM" not in out.stdout:
        pytest.skip("this torch has no MKL")
    assert "CNR:OFF" in out.stdout


def test_a_cell_listed_as_cpu_dependent_is_compared_only_on_the_float_code_that_made_it():
    from minigpt.notebook import compares_outputs, float_code

    here = float_code()
    meta = {"minigpt": {"outputs_made_on": "Linux x86_64 GenuineIntel avx2", "cpu_dependent_cells": ["c1"]}}
    assert compares_outputs(meta, "c1", "Linux x86_64 GenuineIntel avx2")  # the same float code: exact
    assert not compares_outputs(meta, "c1", "Linux x86_64 AuthenticAMD avx2")  # elsewhere: not its numbers
    assert compares_outputs(meta, "c2", "Linux x86_64 AuthenticAMD avx2")  # a cell not listed: always
    assert compares_outputs({}, "c1", here) and compares_outputs({"minigpt": {}}, "c1", here)  # no stamp: exact
    assert here.split()[-1] == NOTEBOOK_ENV.get("ATEN_CPU_CAPABILITY", "native")


def _notebook(made_on: str) -> dict:
    cell = {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": 1, "source": "print(0.25 + 0.5)",
            "outputs": [{"name": "stdout", "output_type": "stream", "text": ["0.123\n"]}]}  # not what it prints
    return {"cells": [cell], "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "minigpt": {"outputs_made_on": made_on, "cpu_dependent_cells": ["c1"]}}}


@pytest.mark.parametrize("same_machine", [True, False])
def test_the_strict_notebook_tests_skip_comparing_only_on_other_float_code(same_machine, tmp_path):
    """Through the root conftest.py and nbval: a wrong stored output fails on its own float code and is
    not compared on another (the cell still runs)."""
    import json
    import shutil
    from pathlib import Path

    from minigpt.notebook import float_code

    root = Path(__file__).resolve().parent.parent
    folder = root / "runs" / f"test-notebook-env-{os.getpid()}-{same_machine}"  # under the root conftest.py
    folder.mkdir(parents=True, exist_ok=True)
    try:
        made_on = float_code() if same_machine else "Linux x86_64 SomeOtherVendor avx2"
        (folder / "cpu.ipynb").write_text(json.dumps(_notebook(made_on)), encoding="utf-8")
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:xdist", "--nbval",
                              "--nbval-current-env", str(folder / "cpu.ipynb")],
                             cwd=root, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if same_machine:
        assert out.returncode == 1 and "Cell outputs differ" in out.stdout, out.stdout[-2000:]
    else:
        assert out.returncode == 0, out.stdout[-2000:]
        assert "ran without comparing their numbers" in out.stdout and "SomeOtherVendor" in out.stdout
