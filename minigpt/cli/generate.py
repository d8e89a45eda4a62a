"""`python -m minigpt generate`: sample text from a checkpoint, streamed as it is drawn."""

from __future__ import annotations

import argparse
import sys

from minigpt.cli.common import checkpoint_folder
from minigpt.errors import CheckpointError
from minigpt.i18n import tr


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder, or a run folder holding checkpoint/")
    p.add_argument("--prompt", default="", help="the text to continue (default: start a new document)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default 200)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more random (default 0.8)")
    # the defaults are what the capstone's sampling grid chose on its model (docs/capstone.md, "Sampling defaults"):
    # temperature 0.8, neither top-k nor top-p
    p.add_argument("--top-k", type=int, default=0, help="draw from the k most likely tokens only (default 0 = all)")
    p.add_argument("--top-p", type=float, help="draw from the smallest set of tokens with this total probability "
                                               "(default: all tokens)")
    p.add_argument("--seed", type=int, help="random seed: the same seed gives the same text")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context every step (no KV cache)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")


def run(args) -> int:
    # lazy: torch loads only when a command runs (keeps `python -m minigpt --help` fast)
    from minigpt.checkpoint import load_model
    from minigpt.device import pick_device
    from minigpt.generate import check_sampling, generate_text

    top_k = args.top_k or None
    check_sampling(args.temperature, top_k, args.top_p, args.max_new_tokens)  # before loading anything
    device = pick_device(args.device)
    path = checkpoint_folder(args.checkpoint)
    model, tok, meta = load_model(path, device=device)
    if tok is None:
        raise CheckpointError(tr("{p} has no tokenizer recorded in config.json; it cannot turn text into tokens",
                                 "{p} の config.json にトークナイザの記録がないため、テキストをトークンにできません",
                                 p=path))
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    generate_text(model, tok, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                  top_k=top_k, top_p=args.top_p, seed=args.seed, use_cache=not args.no_cache,
                  stream=lambda piece: (sys.stdout.write(piece), sys.stdout.flush()))
    sys.stdout.write("\n")
    return 0
