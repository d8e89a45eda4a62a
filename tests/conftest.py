"""Shared pytest settings.

`make test` runs two pytest-xdist workers on a 2-core machine; two torch threads per worker would
oversubscribe the cores (measured: up to 8x slower under load). One thread per process, also for
the subprocesses tests start (they inherit OMP_NUM_THREADS). Set MINIGPT_TEST_THREADS to change it.
"""

import os

_threads = os.environ.get("MINIGPT_TEST_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", _threads)
os.environ.setdefault("MKL_NUM_THREADS", _threads)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(int(_threads))
