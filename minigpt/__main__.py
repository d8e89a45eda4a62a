"""`python -m minigpt ...`: see minigpt/cli.py for the commands."""

from minigpt.cli import main

raise SystemExit(main())
