"""`make gpu-check`: everything that needs a CUDA GPU, in one prepared run of at most 10 minutes.

    python tools/gpu_check.py              # on a machine with a CUDA GPU
    python tools/gpu_check.py --dry-run    # anywhere: print the plan and check that it can start

Parts, each with its own time limit (the sum stays under 10 minutes on one GPU):

1. the tests marked `gpu` (pytest -m gpu);
2. every exercise checker on CUDA (MINIGPT_CHECK_DEVICE=cuda): its reference must pass and each of
   its registered wrong implementations must be rejected (minigpt.check.all_exercises());
3. the solution notebooks on CUDA, laxly (nbval-lax: they must run; their stored outputs come from
   the CPU and are not compared); the English edition (solutions/ja runs the same code);
4. a 3-minute bf16 training of the `gpu-base` preset (torch.compile, SDPA) on Tatoeba shards
   (--shards, default shards/tatoeba; the embedded corpus with GPT-2's tokenizer if there are none),
   reporting tokens/s and MFU (minigpt.device.PEAK_FLOPS; none for a GPU not in the table).

Writes experiments/results/gpu_check_<gpu-name>.json with what each part gave, and exits 1 if a part
failed. Until it has run on a GPU, the docs say "not measured yet".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Seconds each part may take; for the training: beyond --train-minutes (start-up, compilation, the final
# evaluation and save). 60 + 60 + 150 + 3 * 60 + 120 = 570 s: under 10 minutes with the imports.
BUDGET = {"gpu tests": 60, "checkers": 60, "notebooks": 150, "training": 120}


def plan(args) -> list[str]:
    shards = Path(args.shards)
    data = f"shards {shards}" if (shards / "meta.json").is_file() else "the embedded corpus (no shards found)"
    return [
        f"1. pytest -m gpu tests/                        (at most {BUDGET['gpu tests']} s)",
        f"2. every exercise checker on cuda: reference passes, wrong implementations fail "
        f"(at most {BUDGET['checkers']} s)",
        f"3. solution notebooks on cuda, nbval-lax       (at most {BUDGET['notebooks']} s)",
        f"4. train gpu-base, bf16, torch.compile, {args.train_minutes:g} min on {data}; tokens/s and MFU "
        f"(at most {args.train_minutes * 60 + BUDGET['training']:.0f} s)",
        f"   results -> {args.results_dir}/gpu_check_<gpu-name>.json",
    ]


def run(cmd: list[str], timeout: int, env: dict | None = None) -> dict:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)
        status, tail = proc.returncode, (proc.stdout + proc.stderr)[-4000:]
    except subprocess.TimeoutExpired as e:
        status, tail = "timeout", ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes)
                                   else (e.stdout or ""))[-4000:]
    return {"command": " ".join(cmd), "status": status, "ok": status == 0,
            "seconds": round(time.perf_counter() - t0, 1), "tail": tail}


def check_exercises(device) -> dict:
    """Each exercise's reference passes on `device`; each registered wrong implementation is rejected."""
    from minigpt.check import all_exercises, run_exercise

    t0 = time.perf_counter()
    problems, n_wrong = [], 0
    exercises = all_exercises()
    for ex in exercises:
        result = run_exercise(ex, ex.reference, device=device)
        if not result.passed or result.device != device.type:
            problems.append(f"{ex.name}: the reference did not pass on {device.type}: {result.report[:300]}")
        for wrong in ex.wrong:
            n_wrong += 1
            if run_exercise(ex, wrong, device=device).passed:
                problems.append(f"{ex.name}: the wrong implementation {getattr(wrong, '__name__', wrong)} passed")
    return {"ok": not problems, "exercises": len(exercises), "wrong_implementations": n_wrong,
            "problems": problems, "seconds": round(time.perf_counter() - t0, 1)}


def training(args, out: Path) -> dict:
    shards = Path(args.shards)
    data = ["--shards", str(shards)] if (shards / "meta.json").is_file() else ["--corpus", "embedded",
                                                                               "--tokenizer", "gpt2"]
    cmd = [sys.executable, "-m", "minigpt", "train", "--preset", "gpu-base", *data, "--precision", "bf16",
           "--attn", "sdpa", "--compile", "--device", "cuda", "--batch-size", str(args.batch_size), "--seq-len",
           "1024", "--steps", "100000", "--minutes", str(args.train_minutes), "--eval-interval", "100000",
           "--eval-iters", "2", "--log-interval", "10", "--no-progress", "--no-plot", "--out", str(out)]
    result = run(cmd, timeout=int(args.train_minutes * 60) + BUDGET["training"])
    records = []
    if (out / "metrics.jsonl").is_file():
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speeds = [r for r in records if r.get("kind") == "train" and "tokens_per_s" in r]
    steady = speeds[len(speeds) // 2:]  # the second half: after compilation and warm-up
    result["data"] = " ".join(data)
    result["steps"] = max((r["step"] for r in speeds), default=0)
    result["tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in steady) if steady else None
    mfus = [r["mfu"] for r in steady if "mfu" in r]
    result["mfu"] = statistics.median(mfus) if mfus else None  # None: this GPU is not in PEAK_FLOPS
    result["ok"] = result["ok"] and result["tokens_per_s"] is not None
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="print the plan and check the imports; needs no GPU")
    ap.add_argument("--shards", default=str(REPO / "shards" / "tatoeba"), help="Tatoeba shards for the training")
    ap.add_argument("--train-minutes", type=float, default=3.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--results-dir", default=str(REPO / "experiments" / "results"))
    ap.add_argument("--skip", action="append", default=[], choices=sorted(BUDGET), help="leave a part out")
    args = ap.parse_args(argv)

    print("gpu-check plan:\n  " + "\n  ".join(plan(args)), flush=True)
    import torch

    from minigpt.check import all_exercises
    from minigpt.device import device_name, peak_flops_for_name

    n = len(all_exercises())
    if args.dry_run:
        nbval = subprocess.run([sys.executable, "-c", "import nbval"], capture_output=True).returncode == 0
        print(f"dry run: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, {n} exercises, "
              f"nbval {'installed' if nbval else 'MISSING'}; nothing was run", flush=True)
        return 0 if nbval else 1
    if not torch.cuda.is_available():
        print("error: gpu-check needs a CUDA GPU and this torch sees none (use --dry-run to check the plan)",
              file=sys.stderr)
        return 2

    cuda = torch.device("cuda")
    gpu = device_name(cuda)
    results = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
               "bf16_supported": torch.cuda.is_bf16_supported(), "peak_bf16_flops": peak_flops_for_name(gpu, "bf16"),
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "parts": {}}
    t0 = time.perf_counter()
    parts = results["parts"]
    if "gpu tests" not in args.skip:
        parts["gpu tests"] = run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"], BUDGET["gpu tests"])
        print(f"1. gpu tests: {parts['gpu tests']['status']} ({parts['gpu tests']['seconds']} s)", flush=True)
    if "checkers" not in args.skip:
        os.environ["MINIGPT_CHECK_DEVICE"] = "cuda"
        parts["checkers"] = check_exercises(cuda)
        c = parts["checkers"]
        print(f"2. checkers on cuda: {c['exercises']} exercises, {c['wrong_implementations']} wrong implementations, "
              f"{len(c['problems'])} problem(s) ({c['seconds']} s)", flush=True)
    if "notebooks" not in args.skip:
        jobs = str(max(1, min(4, (os.cpu_count() or 1) // 2)))  # the notebooks side by side, one kernel each
        parts["notebooks"] = run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-n", jobs, "--dist",
                                  "loadfile", "--nbval-lax", "--nbval-current-env",
                                  *sorted(str(p.relative_to(REPO)) for p in (REPO / "solutions").glob("*.ipynb"))],
                                 BUDGET["notebooks"],
                                 env={"MINIGPT_CI": "1", "MINIGPT_DEVICE": "cuda", "MINIGPT_CHECK_DEVICE": "cuda"})
        print(f"3. notebooks on cuda (lax): {parts['notebooks']['status']} ({parts['notebooks']['seconds']} s)",
              flush=True)
    if "training" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            parts["training"] = training(args, Path(tmp) / "run")
        tr_ = parts["training"]
        mfu = f"{tr_['mfu']:.1%}" if tr_["mfu"] is not None else "n/a (GPU not in minigpt.device.PEAK_FLOPS)"
        tps = f"{tr_['tokens_per_s']:,.0f}" if tr_["tokens_per_s"] else "n/a"
        print(f"4. gpu-base bf16 training: {tr_['steps']} steps, {tps} tokens/s, MFU {mfu} ({tr_['seconds']} s)",
              flush=True)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["ok"] = all(p["ok"] for p in parts.values())
    slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower()
    path = Path(args.results_dir) / f"gpu_check_{slug}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{'all parts passed' if results['ok'] else 'FAILED: see ' + str(path)} in {results['seconds']:.0f} s; "
          f"wrote {path}", flush=True)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
