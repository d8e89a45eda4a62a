"""Shared helpers for the benchmarks: every script prints ratios measured in one run."""

from __future__ import annotations

import time

import torch

from minigpt.device import device_name, pick_device, synchronize


def timeit(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median seconds of fn() over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        synchronize(pick_device())
        t0 = time.perf_counter()
        fn()
        synchronize(pick_device())
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def device() -> str:
    """The device the benchmarks run on: minigpt.device.pick_device (MINIGPT_DEVICE, then cuda > mps > cpu)."""
    return pick_device().type


def header(title: str) -> None:
    name = device_name(pick_device())
    print(f"== {title}  (torch {torch.__version__}, {name})")
