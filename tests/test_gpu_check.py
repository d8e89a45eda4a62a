"""tools/gpu_check.py (`make gpu-check`) can be launched: its dry run needs no GPU."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_check_dry_run_prints_its_plan_and_finds_every_part():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py"), "--dry-run"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for part in ("pytest -m gpu", "exercise checker on cuda", "nbval-lax", "train gpu-base, bf16"):
        assert part in r.stdout
    assert "nothing was run" in r.stdout and "exercises" in r.stdout


def test_the_gpu_check_plan_fits_in_ten_minutes():
    sys.path.insert(0, str(REPO / "tools"))
    import gpu_check

    minutes = 3.0
    assert sum(gpu_check.BUDGET.values()) + minutes * 60 <= 600 - 30  # 30 s left for starting Python and torch
