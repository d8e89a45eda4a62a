"""`python -m minigpt ...` (and `torchrun ... -m minigpt train ...`): see minigpt/cli/ for the commands."""

from minigpt.cli import main

raise SystemExit(main())
