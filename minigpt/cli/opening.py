"""`python -m minigpt opening`: a five-minute opening for a workshop (minigpt.opening)."""

from __future__ import annotations

from minigpt.opening import opening


def configure(p) -> None:
    p.add_argument("--checkpoint", default=None,
                   help="a checkpoint or run folder (default: runs/demo, then runs/capstone/recipe, then runs/opening)")
    p.add_argument("--train-seconds", type=float, default=30.0,
                   help="without a checkpoint, train a tiny model this long (default: %(default)s)")
    p.add_argument("--no-train", action="store_true", help="never train: say how to get a checkpoint instead")
    p.add_argument("--max-new-tokens", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    opening(args.checkpoint, train_seconds=args.train_seconds, allow_train=not args.no_train,
            max_new_tokens=args.max_new_tokens, seed=args.seed)
    return 0
