"""The command line: `python -m minigpt <command>` (or `minigpt <command>` once installed).

    python -m minigpt tokenizer train --vocab-size 8000 --out runs/tokenizer/sp8000
    python -m minigpt tokenizer compare --text "駅前の古い喫茶店が、来月で閉店するらしい。"
    python -m minigpt train --preset modern --tokenizer runs/tokenizer/sp8000.model --minutes 5 --out runs/modern
    python -m minigpt train --out runs/modern --resume
    torchrun --standalone --nproc_per_node 2 -m minigpt train --shards shards/tatoeba --out runs/ddp
    python -m minigpt generate --checkpoint runs/modern --prompt "昔々" --seed 0
    python -m minigpt demo

The command line sits beside the library: it imports minigpt's modules, and no module of the
library imports it. One module per command group (train, data, tokenizer, generate, export, demo,
doctor); each has `configure(parser)` and `run(args)`, listed in COMMANDS below. To add one, write
those two functions and call `register`.

Errors a user can fix (minigpt.errors.MinigptError) print one line, ``error: ...``, and exit with
status 2; anything else is a bug and keeps its traceback. MINIGPT_DEBUG=1 shows the traceback of a
user error too.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Callable

from minigpt.cli import data, demo, doctor, export, generate, opening, progress, tokenizer, train
from minigpt.errors import MinigptError
from minigpt.i18n import tr


@dataclass
class Command:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]  # adds the command's arguments
    run: Callable[[argparse.Namespace], int | None]  # returns the exit status (None = 0)
    description: str | None = None


COMMANDS: dict[str, Command] = {}


def register(name: str, help: str, configure, run, description: str | None = None) -> None:
    """Add a subcommand: `register("doctor", "check the setup", configure, run)`."""
    COMMANDS[name] = Command(help, configure, run, description)


register("tokenizer", "train a SentencePiece tokenizer, or compare tokenizers on a text",
         tokenizer.configure, tokenizer.run)
register("train", "train a GPT on a corpus or shards, on 1..N processes (Ctrl-C saves a checkpoint you can "
                  "--resume)", train.configure_train, train.run)
register("generate", "generate text from a checkpoint, streamed as it is sampled", generate.configure, generate.run)
register("demo", "tokenizer + a few minutes of training + sampling, end to end on CPU", demo.configure, demo.run)
register("doctor", "check the setup: Python, torch and its device, packages, font, corpus, write access",
         doctor.configure, doctor.run)
register("export", "save a checkpoint as a transformers model folder (AutoModelForCausalLM, AutoTokenizer)",
         export.configure, export.run)
register("data", "real corpora: download, train a tokenizer, tokenize into shards", data.configure, data.run)
register("progress", "which exercises of your notebooks are done, failing or not started (--collect: a teacher's "
                     "table of many learners)", progress.configure, progress.run)
register("opening", "a five-minute opening for teachers: GPT-2 vs SentencePiece on Japanese, then a trained "
                    "model writing Japanese (under a minute on a CPU)", opening.configure, opening.run)
register("train-ddp", "the same as `train`, with runs/ddp as the default --out (kept for older commands)",
         train.configure_train_ddp, train.run)


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line too: ``error: ...`` and exit status 2 (the usage is in --help)."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} ({tr('see --help', '--help を参照してください')})\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m minigpt",
        description="minigpt: build a modern Japanese GPT from scratch. Run a command with --help for its options.",
        epilog="examples:\n"
               "  python -m minigpt demo\n"
               "  python -m minigpt tokenizer compare --text \"駅前の古い喫茶店が閉店する。\"\n"
               "  python -m minigpt train --preset modern --tokenizer runs/demo/tokenizer/sp.model --minutes 5 "
               "--out runs/modern\n"
               "  torchrun --standalone --nproc_per_node 2 -m minigpt train --shards shards/tatoeba --out runs/ddp\n"
               "  python -m minigpt generate --checkpoint runs/modern --prompt 昔々 --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.description or cmd.help[:1].upper() + cmd.help[1:])
        cmd.configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits with status 2 on a bad option
    try:
        status = COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print(tr("\ninterrupted", "\n中断しました"), file=sys.stderr)
        return 130
    except MinigptError as e:
        if os.environ.get("MINIGPT_DEBUG"):
            raise
        print(f"error: {str(e) or type(e).__name__}", file=sys.stderr)
        return 2
    return int(status or 0)


if __name__ == "__main__":
    raise SystemExit(main())
