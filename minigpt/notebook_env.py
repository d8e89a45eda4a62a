"""The environment the course notebooks run in as tests and when their stored outputs are made, and the
float code those outputs depend on. Standard library only: minigpt.notebook and minigpt.progress both import it.
"""

from __future__ import annotations

import platform


# The environment the notebooks run in as tests (the root conftest.py, the Makefile) and when
# tools/run_notebooks.py makes their stored outputs: MINIGPT_CI=1 pins torch to one thread in
# setup(); PYTHONHASHSEED=0 fixes the order of sets of strings; TQDM_DISABLE hides progress bars;
# ATEN_CPU_CAPABILITY and MKL_CBWR pin the CPU code to AVX2 (below).
NOTEBOOK_ENV = {
    "MINIGPT_CI": "1",
    "PYTHONHASHSEED": "0",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _has_avx2() -> bool:
    """True on an x86-64 CPU with AVX2 (read from /proc/cpuinfo on Linux; elsewhere unknown: False)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return False


# x86-64 CPUs differ in vector width (AVX2 adds 8 floats at a time, AVX-512 16), and PyTorch's own kernels
# choose their code by the CPU: a sum then adds in another order, and a 400-step training ends 0.01-0.1 nats
# elsewhere (seen: outputs stored on an AVX-512 AMD EPYC failed on an AVX2 one). ATEN_CPU_CAPABILITY pins
# PyTorch's kernels to AVX2; MKL_CBWR pins MKL's matrix products to AVX2 on Intel CPUs. MKL runs other code
# on AMD CPUs than on Intel ones whatever is pinned (only its slow COMPATIBLE branch is the same on both, 2.4x
# slower here), so outputs made on an AMD CPU match any AMD CPU with AVX2 but not an Intel one: see
# float_code() and compares_outputs(). Where the CPU has no AVX2 (or is not x86) nothing is pinned.
if _has_avx2():
    NOTEBOOK_ENV.update({"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"})


def float_code() -> str:
    """What decides how the notebooks' floats round on this machine, as one line, e.g. "Linux x86_64
    AuthenticAMD avx2": the system, the architecture, the CPU's maker (MKL runs other code on AMD than on
    Intel) and the vector code PyTorch is pinned to (NOTEBOOK_ENV; "native" when nothing is pinned).
    tools/run_notebooks.py stores it in each notebook it executes (metadata minigpt.outputs_made_on)."""
    vendor = "unknown-vendor"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    vendor = line.split(":", 1)[1].strip() or vendor
                    break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()} {vendor} {NOTEBOOK_ENV.get('ATEN_CPU_CAPABILITY', 'native')}"


def compares_outputs(notebook_metadata: dict, cell_id: str | None, here: str | None = None) -> bool:
    """Whether the strict notebook tests compare this code cell's stored outputs on this machine.

    Always, except for a cell that tools/mark_cpu_dependent.py found to print CPU-dependent numbers
    (metadata minigpt.cpu_dependent_cells: its outputs changed when the float code was perturbed) in a
    notebook whose outputs were made on other float code (minigpt.outputs_made_on != float_code()): such a
    cell still runs, and an error in it still fails, but its numbers cannot be the stored ones there."""
    meta = notebook_metadata.get("minigpt") or {}
    made_on = meta.get("outputs_made_on")
    if made_on is None or made_on == (here or float_code()):
        return True
    # cpu_dependent_seen: cells seen to differ on another CPU although the perturbation did not move them
    return cell_id not in {*meta.get("cpu_dependent_cells", []), *meta.get("cpu_dependent_seen", [])}
