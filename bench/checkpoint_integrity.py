"""What checkpoint safety costs, and whether it holds: sha256 hashing and verification on a
`gpu-base`-sized checkpoint, and kill -9 in the middle of saves.

    python bench/checkpoint_integrity.py                 # both parts
    python bench/checkpoint_integrity.py --part hash     # hashing cost only (gpu-base, ~1.2 GB on disk)
    python bench/checkpoint_integrity.py --part kill --tries 20

hash: builds the `gpu-base` preset (minigpt.config.get_preset), takes one AdamW step so the
optimizer state is full size, saves it, and times the save, hashing every file (what save adds)
and verify_checkpoint (what every load adds), printing seconds, MB and the share of the save.
kill: a child process saves checkpoints of a small model in a loop; it is killed with SIGKILL at a
random moment, and the folder must still load (load_model, with verification). Prints N tries,
N loadable.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from minigpt.checkpoint import _refuse_non_finite, load_model, save_checkpoint, verify_checkpoint
from minigpt.config import get_preset
from minigpt.files import sha256_file
from minigpt.model import GPT


def hash_cost(folder: Path) -> None:
    torch.manual_seed(0)
    model = GPT(get_preset("gpu-base"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, model.config.vocab_size, (1, 16))
    model(x, x)[1].backward()
    opt.step()
    path = folder / "checkpoint"
    t0 = time.perf_counter()
    _refuse_non_finite(path, 1, model.state_dict(), opt)
    finite_s = time.perf_counter() - t0
    tensors = list(model.state_dict().values()) + [v for st in opt.state.values() for v in st.values()]
    t0 = time.perf_counter()
    assert all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())
    isfinite_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    save_checkpoint(path, model, step=1, optimizer=opt)
    save_s = time.perf_counter() - t0
    files = [p for p in sorted(path.iterdir()) if p.name != "config.json"]
    mb = sum(p.stat().st_size for p in files) / 1e6
    t0 = time.perf_counter()
    for p in files:
        sha256_file(p)
    hash_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    verify_checkpoint(path)
    verify_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_model(path, verify=False)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_model(path, verify=True)
    load_verified_s = time.perf_counter() - t0
    print(f"gpu-base: {model.num_params():,} parameters, {mb:,.0f} MB hashed "
          f"({', '.join(f'{p.name} {p.stat().st_size / 1e6:,.0f} MB' for p in files)})")
    print(f"save (hashing and the finite check included) {save_s:.2f} s; hashing {hash_s:.2f} s = "
          f"{hash_s / save_s:.0%} of the save, {mb / hash_s:,.0f} MB/s; NaN/inf check of weights and optimizer "
          f"state {finite_s:.2f} s = {finite_s / save_s:.0%} (torch.isfinite(t).all() instead: {isfinite_s:.2f} s, "
          f"x{isfinite_s / finite_s:.1f})")
    print(f"verify_checkpoint (every file, what a resume checks) {verify_s:.2f} s")
    print(f"load_model (checks model.safetensors only): {load_verified_s:.2f} s verified, {load_s:.2f} s with "
          f"verify=False: x{load_verified_s / load_s:.2f}")


CHILD = r"""
import sys, torch
from minigpt.checkpoint import save_checkpoint
from minigpt.config import get_preset
from minigpt.model import GPT
path = sys.argv[1]
torch.manual_seed(0)
model = GPT(get_preset("tiny", vocab_size=4000))
opt = torch.optim.AdamW(model.parameters())
x = torch.randint(0, 4000, (1, 8)); model(x, x)[1].backward(); opt.step()
print("ready", flush=True)
step = 0
while True:
    step += 1
    save_checkpoint(path, model, step=step, optimizer=opt)
"""


def kill_during_saves(folder: Path, tries: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    script = folder / "child.py"
    script.write_text(CHILD)
    loadable, steps = 0, []
    for i in range(tries):
        path = folder / f"run{i}" / "checkpoint"
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        while not path.exists():  # at least one save done, so there is something to lose
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        try:
            _, _, meta = load_model(path.parent)  # the run folder: recovers an interrupted swap too
            loadable += 1
            steps.append(meta["step"])
        except Exception as e:  # noqa: BLE001 (the point is to count any failure)
            print(f"try {i}: not loadable: {type(e).__name__}: {e}")
    print(f"kill -9 during saves: {tries} tries, {loadable} loadable (saves completed before the kill: "
          f"{min(steps, default=0)}..{max(steps, default=0)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("hash", "kill", "both"), default="both")
    p.add_argument("--tries", type=int, default=20)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("hash", "both"):
            hash_cost(Path(tmp) / "hash")
        if args.part in ("kill", "both"):
            (Path(tmp) / "kill").mkdir()
            kill_during_saves(Path(tmp) / "kill", args.tries)


if __name__ == "__main__":
    main()
