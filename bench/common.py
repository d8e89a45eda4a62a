"""Shared helpers for the benchmarks: every script prints ratios measured in one run."""

from __future__ import annotations

import time

import torch


def timeit(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median seconds of fn() over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def header(title: str) -> None:
    dev = device()
    name = torch.cuda.get_device_name() if dev == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"== {title}  (torch {torch.__version__}, {name})")
