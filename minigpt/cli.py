"""The command line: `python -m minigpt <command>` (or `minigpt <command>` once installed).

    python -m minigpt tokenizer train --vocab-size 8000 --out runs/tokenizer/sp8000
    python -m minigpt tokenizer compare --text "駅前の古い喫茶店が、来月で閉店するらしい。"
    python -m minigpt train --preset modern --tokenizer runs/tokenizer/sp8000.model --minutes 5 --out runs/modern
    python -m minigpt train --out runs/modern --resume
    python -m minigpt generate --checkpoint runs/modern --prompt "昔々" --seed 0
    python -m minigpt demo

Every command is one entry of COMMANDS (name -> Command): to add one, write a function that
adds its arguments to an argparse parser and a function that runs it, then call `register`.
User errors (a missing file, a bad option, a damaged checkpoint) print one line starting with
"error:" and exit with status 2; set MINIGPT_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class UserError(Exception):
    """A mistake in how a command was called; printed as one line, exit status 2."""


@dataclass
class Command:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]  # adds the command's arguments
    run: Callable[[argparse.Namespace], int | None]  # returns the exit status (None = 0)
    description: str | None = None


COMMANDS: dict[str, Command] = {}


def register(name: str, help: str, configure, run, description: str | None = None) -> None:
    """Add a subcommand (e.g. the lead's `doctor`): `register("doctor", "check the setup", cfg, run)`."""
    COMMANDS[name] = Command(help, configure, run, description)


def _print(*args, **kwargs):
    print(*args, **kwargs, flush=True)


# --------------------------------------------------------------------------- tokenizer
def _configure_tokenizer(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="tokenizer_command", metavar="{train,compare}", required=True)
    t = sub.add_parser("train", help="train a SentencePiece tokenizer on a corpus",
                       description="Train a SentencePiece model on the train split of a corpus and write "
                                   "OUT.model. Prints its statistics on the validation split.")
    t.add_argument("--corpus", default="embedded",
                   help="'embedded' (the corpus shipped with minigpt), a .txt file or a folder of .txt files")
    t.add_argument("--vocab-size", type=int, default=8000, help="number of pieces (default: 8000)")
    t.add_argument("--type", dest="model_type", choices=("unigram", "bpe"), default="unigram",
                   help="SentencePiece algorithm (default: unigram)")
    t.add_argument("--out", default="runs/tokenizer/sp",
                   help="model prefix: writes OUT.model (default: runs/tokenizer/sp)")
    c = sub.add_parser("compare", help="compare GPT-2's BPE and a SentencePiece model on a text",
                       description="Print characters per token and the U+FFFD rate of windows of --seq-len "
                                   "tokens for GPT-2 and a SentencePiece model. Without --text or --file the "
                                   "embedded corpus's validation split is measured.")
    src = c.add_mutually_exclusive_group()
    src.add_argument("--text", help="the text to measure")
    src.add_argument("--file", help="a UTF-8 text file to measure")
    c.add_argument("--sp", action="append", metavar="MODEL",
                   help="a SentencePiece .model file (repeatable); default: train one on the embedded corpus")
    c.add_argument("--seq-len", type=int, default=48, help="window length in tokens for the U+FFFD rate (default: 48)")


def _run_tokenizer(args) -> int:
    from minigpt.corpus import describe_corpus, load_documents
    from minigpt.tokenizer import format_stats_table, load_tokenizer, tokenizer_stats, train_sentencepiece

    if args.tokenizer_command == "train":
        if args.vocab_size <= 0:
            raise UserError("--vocab-size must be positive")
        _print(describe_corpus(args.corpus))
        tok = train_sentencepiece(load_documents(args.corpus, "train"), args.out, vocab_size=args.vocab_size,
                                  model_type=args.model_type)
        _print(f"wrote {tok.model_file} ({tok.vocab_size} pieces, {args.model_type})")
        val = "\n".join(load_documents(args.corpus, "val"))
        if val:
            rows = [_stats_row(load_tokenizer("gpt2"), val, 48), _stats_row(tok, val, 48)]
            _print("\non the validation split:")
            _print(format_stats_table(rows))
        return 0

    # compare
    from minigpt.corpus import read_text

    if args.text is not None:
        text = args.text
    elif args.file is not None:
        text = read_text(args.file)
    else:
        text = "\n".join(load_documents("embedded", "val"))
    if not text.strip():
        raise UserError("the text to compare is empty; pass --text '...' or --file with some text in it")
    if args.seq_len <= 0:
        raise UserError("--seq-len must be positive")
    toks = [load_tokenizer("gpt2")]
    if args.sp:
        toks += [load_tokenizer(path) for path in args.sp]
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            _print("(no --sp given: training a SentencePiece model, vocab 8000, on the embedded corpus's train split)")
            toks.append(train_sentencepiece(load_documents("embedded", "train"), Path(tmp) / "sp", vocab_size=8000))
    _print(format_stats_table([_stats_row(t, text, args.seq_len) for t in toks]))
    return 0


def _stats_row(tok, text: str, seq_len: int) -> dict:
    from minigpt.tokenizer import tokenizer_stats

    s = tokenizer_stats(tok, text, seq_len=seq_len)
    return {"tokenizer": s["tokenizer"], "tokens": s["tokens"], "chars_per_token": s["chars_per_token"],
            "tokens_per_char": s["tokens_per_char"], "partial_token_share": s["partial_token_share"],
            f"fffd_rate_{seq_len}tok_windows": s["fffd_window_rate"]}


# --------------------------------------------------------------------------- train
def _configure_train(p: argparse.ArgumentParser) -> None:
    from minigpt.config import PRESETS

    p.add_argument("--preset", default="tiny-modern", choices=sorted(PRESETS),
                   help="model architecture and size (default: tiny-modern); vocab_size comes from the tokenizer")
    p.add_argument("--tokenizer", default="gpt2", help="'gpt2' or a SentencePiece .model file (default: gpt2)")
    p.add_argument("--corpus", default="embedded", help="'embedded', a .txt file or a folder of .txt files")
    p.add_argument("--out", default="runs/default", help="output folder: metrics.jsonl, loss.png, checkpoint/")
    p.add_argument("--steps", type=int, help="number of training steps (the length of the lr schedule; default 1000)")
    p.add_argument("--minutes", type=float, help="stop after this many minutes (evaluates and saves before stopping)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (model, tokenizer and settings come from it)")
    p.add_argument("--overwrite", action="store_true", help="start over even if --out already holds a checkpoint")
    p.add_argument("--batch-size", type=int, help="sequences per step (default 16)")
    p.add_argument("--seq-len", type=int, help="tokens per sequence (default: the model's block_size)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    p.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine (default lr/10)")
    p.add_argument("--warmup", type=int, dest="warmup_steps", help="warmup steps (default: 5%% of the steps)")
    p.add_argument("--eval-interval", type=int, help="evaluate and save every N steps (default: steps/10)")
    p.add_argument("--eval-iters", type=int, help="validation batches per evaluation (default 10)")
    p.add_argument("--seed", type=int, help="random seed (default 1337)")
    p.add_argument("--device", help="auto (default), cpu, cuda or mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_train(args) -> int:
    import dataclasses

    from minigpt.checkpoint import has_checkpoint, read_config, tokenizer_spec
    from minigpt.config import GPTConfig, get_preset
    from minigpt.data import prepare_data
    from minigpt.model import GPT
    from minigpt.tokenizer import load_tokenizer
    from minigpt.train import TrainConfig, train

    out = Path(args.out)
    ckpt = out / "checkpoint"
    explicit = {name: getattr(args, name) for name in
                ("batch_size", "seq_len", "lr", "min_lr", "warmup_steps", "eval_interval", "eval_iters", "seed",
                 "device") if getattr(args, name) is not None}
    if args.steps is not None:
        explicit["max_steps"] = args.steps
    if args.minutes is not None:
        if args.minutes <= 0:
            raise UserError("--minutes must be positive")
        explicit["time_limit_s"] = args.minutes * 60

    if args.resume:
        if not has_checkpoint(ckpt):
            raise UserError(f"nothing to resume in {out}: no checkpoint at {ckpt}. Start without --resume, "
                            "or pass the --out folder of the run to continue")
        saved = read_config(ckpt)
        tok = load_tokenizer(tokenizer_spec(ckpt, saved), base_dir=ckpt)
        model = GPT(GPTConfig.from_dict(saved["model_config"]))
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        base = {k: v for k, v in (saved.get("train_config") or {}).items() if k in known}
        base.pop("time_limit_s", None)  # a time limit is for one session, not for the run
        cfg = TrainConfig(**{**base, **explicit, "out_dir": str(out), "progress": not args.no_progress})
        _print(f"resuming {out} from step {saved.get('step')} of {cfg.max_steps}")
    else:
        if has_checkpoint(ckpt) and not args.overwrite:
            step = read_config(ckpt).get("step")
            raise UserError(f"{out} already holds a checkpoint (step {step}): pass --resume to continue it, "
                            "--overwrite to start over, or choose another --out")
        tok = load_tokenizer(args.tokenizer)
        model_cfg = get_preset(args.preset, vocab_size=tok.vocab_size)
        model = GPT(model_cfg)
        steps = explicit.get("max_steps", 1000)
        defaults = dict(max_steps=steps, seq_len=model_cfg.block_size, warmup_steps=max(1, steps // 20),
                        eval_interval=max(1, steps // 10))
        params = {**defaults, **explicit}
        if "min_lr" not in params and "lr" in params:
            params["min_lr"] = params["lr"] / 10
        cfg = TrainConfig(**params, out_dir=str(out), progress=not args.no_progress)
        _print(f"model: {args.preset}, {model.num_params():,} parameters; tokenizer: {tok.name}")

    data = prepare_data(args.corpus, tok)
    _print(f"data: {data}")
    result = train(model, data, cfg, resume=args.resume, tokenizer=tok)
    _print(_result_line(result))
    return 130 if result.interrupted else 0


def _result_line(r) -> str:
    parts = [f"step {r.step}", f"{r.elapsed_s:.1f} s", f"{r.tokens_per_s:,.0f} tokens/s"]
    if r.val_loss is not None:
        parts += [f"val loss {r.val_loss:.3f}", f"val ppl {r.val_ppl:.1f}", f"val bits/char {r.val_bpc:.3f}"]
    if r.checkpoint:
        parts.append(f"checkpoint {r.checkpoint}")
    return f"done ({r.stopped}): " + ", ".join(parts)


# --------------------------------------------------------------------------- generate
def _configure_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder, or a run folder holding checkpoint/")
    p.add_argument("--prompt", default="", help="the text to continue (default: start a new document)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default 200)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more random (default 0.8)")
    p.add_argument("--top-k", type=int, default=50, help="draw from the k most likely tokens only (0 = all; default 50)")
    p.add_argument("--top-p", type=float, help="draw from the smallest set of tokens with this total probability")
    p.add_argument("--seed", type=int, help="random seed: the same seed gives the same text")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context every step (no KV cache)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")


def _run_generate(args) -> int:
    from minigpt.checkpoint import load_model
    from minigpt.generate import generate_text
    from minigpt.train import resolve_device

    if args.max_new_tokens < 0:
        raise UserError("--max-new-tokens must be >= 0")
    path = Path(args.checkpoint)
    if not (path / "config.json").exists() and (path / "checkpoint").is_dir():
        path = path / "checkpoint"
    model, tok, meta = load_model(path, device=resolve_device(args.device))
    if tok is None:
        raise UserError(f"{path} has no tokenizer recorded in config.json; it cannot turn text into tokens")
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    generate_text(model, tok, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                  top_k=args.top_k or None, top_p=args.top_p, seed=args.seed, use_cache=not args.no_cache,
                  stream=lambda piece: (sys.stdout.write(piece), sys.stdout.flush()))
    sys.stdout.write("\n")
    return 0


# --------------------------------------------------------------------------- demo
def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=4.0, help="training time in minutes (default 4)")
    p.add_argument("--out", default="runs/demo", help="output folder, replaced on every run (default runs/demo)")
    p.add_argument("--vocab-size", type=int, default=8000, help="SentencePiece vocabulary size (default 8000)")
    p.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_demo(args) -> int:
    from minigpt.demo import run_demo

    if args.minutes <= 0:
        raise UserError("--minutes must be positive")
    summary = run_demo(minutes=args.minutes, out_dir=args.out, vocab_size=args.vocab_size, seed=args.seed,
                       progress=not args.no_progress)
    return 130 if summary.get("interrupted") else 0


register("tokenizer", "train a SentencePiece tokenizer, or compare tokenizers on a text",
         _configure_tokenizer, _run_tokenizer)
register("train", "train a GPT on a corpus (Ctrl-C saves a checkpoint you can --resume)",
         _configure_train, _run_train)
register("generate", "generate text from a checkpoint, streamed as it is sampled", _configure_generate, _run_generate)
register("demo", "tokenizer + a few minutes of training + sampling, end to end on CPU", _configure_demo, _run_demo)

from minigpt import doctor as _doctor  # noqa: E402  (light: imports torch only when it runs)

register("doctor", "check the setup: Python, torch and its device, packages, font, corpus, write access",
         _doctor.configure, _doctor.main)

from minigpt.export import cmd_export, configure_export  # noqa: E402  (light: torch loads only when it runs)

register("export", "save a checkpoint as a transformers model folder (AutoModelForCausalLM, AutoTokenizer)",
         configure_export, cmd_export)

from minigpt.scale_cli import register_commands as _register_scale_commands  # noqa: E402  (light: no torch)

_register_scale_commands(register)  # `data` (download, tokenizer, shard, info) and `train-ddp`


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minigpt",
        description="minigpt: build a modern Japanese GPT from scratch. Run a command with --help for its options.",
        epilog="examples:\n"
               "  python -m minigpt demo\n"
               "  python -m minigpt tokenizer compare --text \"駅前の古い喫茶店が閉店する。\"\n"
               "  python -m minigpt train --preset modern --tokenizer runs/demo/tokenizer/sp.model --minutes 5 "
               "--out runs/modern\n"
               "  python -m minigpt generate --checkpoint runs/modern --prompt 昔々 --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.description or cmd.help[:1].upper() + cmd.help[1:])
        cmd.configure(p)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from minigpt.checkpoint import CheckpointError
    from minigpt.corpus import CorpusError

    return (UserError, CheckpointError, CorpusError, ValueError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError, PermissionError, FloatingPointError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits with status 2 on a bad option
    try:
        status = COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        if os.environ.get("MINIGPT_DEBUG"):
            raise
        message = str(e) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    return int(status or 0)


if __name__ == "__main__":
    raise SystemExit(main())
