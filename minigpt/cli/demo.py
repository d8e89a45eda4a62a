"""`python -m minigpt demo` (`make demo`): tokenizer, a few minutes of training, sampling."""

from __future__ import annotations

import argparse

from minigpt.cli.common import finite, require


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=4.0, help="training time in minutes (default 4)")
    p.add_argument("--out", default="runs/demo", help="output folder, replaced on every run (default runs/demo)")
    p.add_argument("--vocab-size", type=int, default=8000, help="SentencePiece vocabulary size (default 8000)")
    p.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from minigpt.demo import run_demo  # lazy: torch loads only when a command runs (keeps --help fast)

    require(finite(args.minutes) and args.minutes > 0, "--minutes must be a positive number, got {v}",
            "--minutes は正の数にしてください (値: {v})", v=args.minutes)
    summary = run_demo(minutes=args.minutes, out_dir=args.out, vocab_size=args.vocab_size, seed=args.seed,
                       progress=not args.no_progress)
    return 130 if summary.get("interrupted") else 0
