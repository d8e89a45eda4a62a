"""Does a 2-process torchrun job exit cleanly? Counted over repeated runs, with and without the final barrier.

    python bench/torchrun_clean_exit.py [--runs 10] [--steps 4] [--no-contrast]

Runs `torchrun --standalone --nproc_per_node 2 -m minigpt train` (CPU, gloo, a tiny model on
shards of the embedded corpus) --runs times, then --runs times more with the hidden option
--no-final-barrier, which calls destroy_process_group without first meeting the other rank at a
barrier. A clean exit is torchrun's exit status 0. Prints one line per mode, measured in this run,
and the first line of each kind of failure.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def prepare(root: Path) -> Path:
    from minigpt.corpus import load_documents
    from minigpt.shards import write_shards
    from minigpt.tokenizer import train_sentencepiece

    tok = train_sentencepiece(load_documents("embedded", "train"), root / "sp", vocab_size=3000)
    for split in ("train", "val"):
        write_shards(load_documents("embedded", split), tok, root / "shards", split, workers=0, progress=False)
    return root / "shards"


def run_once(shards: Path, out: Path, steps: int, barrier: bool) -> tuple[int, float, str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "minigpt", "train", "--shards", str(shards), "--preset", "tiny-modern", "--steps", str(steps),
           "--batch-size", "4", "--seq-len", "32", "--eval-interval", str(steps), "--eval-iters", "2",
           "--no-progress", "--no-plot", "--out", str(out)]
    if not barrier:
        cmd.append("--no-final-barrier")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    why = ""
    if proc.returncode:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines()
                 if any(k in ln for k in ("Error", "error", "exitcode", "Signal", "terminate"))]
        why = lines[0][:160] if lines else f"exit status {proc.returncode}"
    return proc.returncode, wall, why


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--no-contrast", action="store_true", help="only the runs with the barrier")
    args = ap.parse_args()
    import torch

    print(f"== torchrun clean exits, 2 CPU processes (gloo)  (torch {torch.__version__}, {os.cpu_count()} CPUs)")
    modes = [True] if args.no_contrast else [True, False]
    with tempfile.TemporaryDirectory() as tmp:
        shards = prepare(Path(tmp))
        for barrier in modes:
            codes, walls, reasons = [], [], collections.Counter()
            mode = "barrier" if barrier else "no-barrier"
            for i in range(args.runs):
                rc, wall, why = run_once(shards, Path(tmp) / f"{mode}-{i}", args.steps, barrier)
                codes.append(rc)
                walls.append(wall)
                if rc:
                    reasons[why] += 1
            clean = sum(rc == 0 for rc in codes)
            label = "barrier before destroy_process_group" if barrier else "no barrier (--no-final-barrier)"
            print(f"{label:40s} clean exits {clean:2d}/{args.runs}   exit codes {codes}   "
                  f"median wall {sorted(walls)[len(walls) // 2]:.1f} s")
            for why, n in reasons.items():
                print(f"    {n} x {why}")


if __name__ == "__main__":
    main()
