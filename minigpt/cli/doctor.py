"""`python -m minigpt doctor`: check the setup (minigpt.doctor does the checks)."""

from __future__ import annotations

from minigpt.doctor import configure, main


def run(args) -> int:
    return main(args)


__all__ = ["configure", "run"]
