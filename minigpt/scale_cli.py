"""The command line of the scaling modules: ``python -m minigpt data ...`` and ``python -m minigpt train-ddp``.

    python -m minigpt data download tatoeba            # into $MINIGPT_CACHE; prints the attribution
    python -m minigpt data tokenizer --corpus tatoeba --vocab-size 16000 --out runs/tokenizer/tatoeba16k
    python -m minigpt data shard --corpus tatoeba --tokenizer runs/tokenizer/tatoeba16k.model --out shards/tatoeba
    python -m minigpt data info shards/tatoeba
    python -m minigpt train-ddp --nproc-per-node 2 --shards shards/tatoeba --steps 200 --out runs/ddp
    torchrun --standalone --nproc_per_node 8 -m minigpt.train_ddp --shards shards/c4ja --recipe gpu-base-c4ja

Light to import (no torch at import time). minigpt.cli adds these commands with
``register_commands(register)``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def _user_error(message: str) -> Exception:
    try:
        from minigpt.cli import UserError
    except ImportError:  # pragma: no cover
        return ValueError(message)
    return UserError(message)


# --------------------------------------------------------------------------- data
def configure_data(p: argparse.ArgumentParser) -> None:
    from minigpt.datasets import CORPORA

    corpora = ", ".join(f"{k} ({v})" for k, v in CORPORA.items())
    sub = p.add_subparsers(dest="data_command", metavar="{download,tokenizer,shard,info}", required=True)
    d = sub.add_parser("download", help="download a corpus (or any URL) into the cache",
                       description="Download Tatoeba's Japanese export (or any http(s) URL) into the cache, resuming "
                                   "a partial download. $MINIGPT_TATOEBA_URL or --url replace the source with a "
                                   "mirror URL or a local path. C4-ja and Wikipedia are streamed when sharded.")
    d.add_argument("what", help="'tatoeba', 'c4-ja', 'wikipedia-ja', or a URL")
    d.add_argument("--url", help="mirror URL or local path to use instead of the official Tatoeba export")
    d.add_argument("--cache", help="cache folder (default $MINIGPT_CACHE or ~/.cache/minigpt)")
    d.add_argument("--sha256", help="the expected sha256 of the file, if you know it")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")

    t = sub.add_parser("tokenizer", help="train a SentencePiece tokenizer on a real corpus",
                       description="Train SentencePiece on the first --max-chars characters of a corpus's train split.")
    t.add_argument("--corpus", required=True, help=f"one of: {corpora}; or a .txt file / folder")
    t.add_argument("--vocab-size", type=int, default=16000, help="number of pieces (default 16000)")
    t.add_argument("--type", dest="model_type", choices=("unigram", "bpe"), default="unigram")
    t.add_argument("--max-chars", type=int, default=20_000_000, help="train on at most this many characters")
    t.add_argument("--out", required=True, help="model prefix: writes OUT.model")

    s = sub.add_parser("shard", help="tokenize a corpus into memory-mapped token shards",
                       description="Tokenize the train and val splits of a corpus, in parallel, into shards "
                                   "OUT/{split}_NNNNNN.bin plus OUT/meta.json. Re-running skips finished shards.")
    s.add_argument("--corpus", required=True, help=f"one of: {corpora}; or a .txt file / folder")
    s.add_argument("--tokenizer", required=True, help="'gpt2' or a SentencePiece .model file")
    s.add_argument("--out", required=True, help="the shards folder")
    s.add_argument("--workers", type=int, help="tokenizer processes (default: CPU count, at most 8)")
    s.add_argument("--shard-chars", type=int, help="characters of text per shard (default 20,000,000)")
    s.add_argument("--limit", type=int, help="at most this many training documents (e.g. a slice of C4)")
    s.add_argument("--val-limit", type=int, help="at most this many validation documents")
    s.add_argument("--splits", default="train,val", help="which splits (default train,val)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")

    i = sub.add_parser("info", help="describe a shards folder")
    i.add_argument("path", help="the shards folder")


def run_data(args) -> int:
    from minigpt.datasets import DownloadError

    try:
        return {"download": _data_download, "tokenizer": _data_tokenizer, "shard": _data_shard,
                "info": _data_info}[args.data_command](args)
    except (DownloadError, ImportError) as e:
        raise _user_error(str(e)) from None


def _data_download(args) -> int:
    from minigpt.datasets import download, fetch_tatoeba

    progress = not args.no_progress
    if args.what == "tatoeba":
        path = fetch_tatoeba(args.url, args.cache, progress, args.sha256)
    elif args.what in ("c4-ja", "wikipedia-ja"):
        from minigpt.datasets import _import_datasets

        _import_datasets()  # a clear message if `datasets` is missing
        print(f"{args.what} is streamed while sharding (python -m minigpt data shard --corpus {args.what} ...); "
              "nothing to download first")
        return 0
    else:
        path = download(args.what, args.cache, progress, sha256=args.sha256)
    print(f"{path} ({path.stat().st_size:,} bytes)")
    return 0


def _data_tokenizer(args) -> int:
    from minigpt.datasets import iter_documents
    from minigpt.tokenizer import train_sentencepiece

    docs, chars = [], 0
    for doc in iter_documents(args.corpus, "train"):
        docs.append(doc)
        chars += len(doc)
        if chars >= args.max_chars:
            break
    print(f"training SentencePiece ({args.model_type}, {args.vocab_size} pieces) on {len(docs):,} documents, "
          f"{chars:,} characters")
    tok = train_sentencepiece(docs, args.out, vocab_size=args.vocab_size, model_type=args.model_type)
    val = list(iter_documents(args.corpus, "val", limit=5000))
    if val:
        n_chars = sum(len(d) for d in val)
        n_tokens = sum(len(ids) for ids in tok.encode_batch(val))
        print(f"on {len(val):,} validation documents: {n_chars / max(n_tokens, 1):.3f} characters per token")
    print(f"wrote {tok.model_file}")
    return 0


def _data_shard(args) -> int:
    from minigpt.datasets import iter_documents
    from minigpt.shards import DEFAULT_SHARD_CHARS, write_shards
    from minigpt.tokenizer import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    for split in splits:
        if split not in ("train", "val"):
            raise _user_error(f"--splits: unknown split {split!r}; use train and/or val")
        limit = args.limit if split == "train" else args.val_limit
        docs = iter_documents(args.corpus, split, limit=limit, progress=not args.no_progress)
        summary = write_shards(docs, tok, args.out, split, shard_chars=args.shard_chars or DEFAULT_SHARD_CHARS,
                               workers=args.workers, progress=not args.no_progress)
        print(f"{split}: {summary['shards']} shard(s), {summary['tokens']:,} tokens ({summary['dtype']}), "
              f"{summary['chars']:,} characters, {summary['docs']:,} documents; "
              f"{summary['written']} written, {summary['skipped']} already done")
    return 0


def _data_info(args) -> int:
    from minigpt.shards import read_meta

    meta = read_meta(args.path)
    tok = meta["tokenizer"]
    print(f"{args.path}: tokenizer {tok.get('type')} (vocab {meta['vocab_size']}), {meta['dtype']}")
    for split, entry in meta["splits"].items():
        shards = entry.get("shards", [])
        if not entry.get("complete"):
            print(f"  {split}: incomplete ({sum(1 for r in shards if r)} shards done); run `data shard` again")
            continue
        print(f"  {split}: {len(shards)} shard(s), {entry['tokens']:,} tokens, {entry['chars']:,} characters, "
              f"{entry['docs']:,} documents, {entry['chars'] / max(entry['tokens'], 1):.3f} characters per token")
    return 0


# --------------------------------------------------------------------------- train-ddp
# (flags, argparse keywords). One table: it builds the parser, and the launcher turns parsed
# options back into the command line it hands to torchrun.
_TRAIN_DDP_OPTIONS = [
    (("--shards",), dict(help="a shards folder (python -m minigpt data shard): tokenizer and data come from it")),
    (("--corpus",), dict(help="instead of --shards: 'embedded', 'tatoeba', a .txt file or folder, tokenized in "
                              "memory by every rank (small corpora only; default embedded)")),
    (("--tokenizer",), dict(help="with --corpus: 'gpt2' or a SentencePiece .model file (default gpt2)")),
    (("--limit",), dict(type=int, help="with --corpus: at most this many training documents")),
    (("--recipe",), dict(help="a training recipe from minigpt.recipes (gpu-base-c4ja, gpu-base-tatoeba): model "
                              "preset and settings; options given here override it")),
    (("--preset",), dict(help="model preset (default tiny-modern, or the recipe's); vocab_size comes from "
                              "the tokenizer")),
    (("--dropout",), dict(type=float, help="model dropout (default: the preset's)")),
    (("--out",), dict(default="runs/ddp", help="output folder: metrics.jsonl, loss.png, checkpoint/ "
                                               "(default runs/ddp)")),
    (("--steps",), dict(type=int, dest="max_steps", metavar="N", help="optimizer steps (default 1000)")),
    (("--minutes",), dict(type=float, help="stop after this many minutes (all ranks agree; saves first)")),
    (("--pause-at",), dict(type=int, help="stop (and save) after this step; the schedule still follows --steps. "
                                          "Continue later with --resume")),
    (("--resume",), dict(action="store_true", help="continue the run in --out from its checkpoint")),
    (("--overwrite",), dict(action="store_true", help="start over even if --out holds a checkpoint")),
    (("--batch-size",), dict(type=int, help="sequences per micro-batch per rank (default 16)")),
    (("--grad-accum",), dict(type=int, dest="grad_accum_steps", metavar="N",
                             help="micro-batches per step per rank (default 1)")),
    (("--batch-tokens",), dict(type=int, help="tokens per optimizer step over all ranks (sets --grad-accum)")),
    (("--seq-len",), dict(type=int, help="tokens per sequence (default: the model's block_size)")),
    (("--lr",), dict(type=float, help="peak learning rate (default 1e-3)")),
    (("--min-lr",), dict(type=float, help="final learning rate (default lr/10)")),
    (("--warmup",), dict(type=int, dest="warmup_steps", metavar="N", help="warmup steps (default 5%% of the steps)")),
    (("--eval-interval",), dict(type=int, help="evaluate and save every N steps (default steps/10)")),
    (("--eval-iters",), dict(type=int, help="validation batches per evaluation (default 10)")),
    (("--log-interval",), dict(type=int, help="a metrics line every N steps (default 10)")),
    (("--seed",), dict(type=int, help="random seed (default 1337); rank r draws data with seed + 1000 r")),
    (("--device",), dict(help="auto (default: cuda:LOCAL_RANK if there are GPUs, else cpu), cuda or cpu")),
    (("--compile",), dict(action=argparse.BooleanOptionalAction, help="torch.compile the model (default: no, or "
                                                                      "the recipe's)")),
    (("--tf32",), dict(action=argparse.BooleanOptionalAction, help="TF32 for float32 matmuls on CUDA (default: yes)")),
    (("--no-progress",), dict(action="store_true", help="no progress bar")),
    (("--no-plot",), dict(action="store_true", help="do not write loss.png")),
    (("--write-checksums",), dict(action="store_true", help="every rank writes OUT/params.rank{r}.sha256 at the end "
                                                            "(to check that the copies stayed identical)")),
    (("--no-final-barrier",), dict(action="store_true", help=argparse.SUPPRESS)),  # bench/torchrun_clean_exit.py
]
_TRAIN_FIELDS = ("max_steps", "batch_size", "grad_accum_steps", "batch_tokens", "seq_len", "lr", "min_lr",
                 "warmup_steps", "eval_interval", "eval_iters", "log_interval", "seed", "device")


def configure_train_ddp(p: argparse.ArgumentParser, launcher: bool = True) -> None:
    for flags, kwargs in _TRAIN_DDP_OPTIONS:
        p.add_argument(*flags, **kwargs)
    if launcher:
        p.add_argument("--nproc-per-node", type=int, default=1,
                       help="processes to start with torchrun (default 1: this process, no torchrun)")


def _torchrun_command(args) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc_per_node}",
           "-m", "minigpt.train_ddp"]
    for flags, kwargs in _TRAIN_DDP_OPTIONS:
        dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        value = getattr(args, dest)
        if kwargs.get("action") == "store_true":
            cmd += [flags[0]] if value else []
        elif kwargs.get("action") is argparse.BooleanOptionalAction:
            cmd += [] if value is None else [flags[0] if value else "--no-" + flags[0][2:]]
        elif value is not None:
            cmd += [flags[0], str(value)]
    return cmd


def run_train_ddp(args, launcher: bool = True) -> int:
    """`minigpt train-ddp`: start torchrun when --nproc-per-node > 1, else train in this process
    (which is also what each process torchrun starts does)."""
    if launcher and args.nproc_per_node > 1:
        cmd = _torchrun_command(args)
        print("+ " + " ".join(cmd[1:]), flush=True)
        env = {**os.environ}
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc_per_node)))
        return subprocess.run(cmd, env=env).returncode

    from minigpt.checkpoint import CheckpointError
    from minigpt.corpus import CorpusError
    from minigpt.datasets import DownloadError
    from minigpt.distributed import rank_print, setup_distributed, shutdown

    info = setup_distributed(args.device or "auto")
    try:
        status = _train_ddp_here(args, info)
    except (CheckpointError, CorpusError, DownloadError, ValueError, FileNotFoundError, ImportError) as e:
        if os.environ.get("MINIGPT_DEBUG"):
            raise
        rank_print(f"error: {e}", file=sys.stderr)
        shutdown(barrier_first=False)
        return 2
    shutdown(barrier_first=not args.no_final_barrier)
    return status


def _train_ddp_here(args, info) -> int:
    import dataclasses

    from minigpt.checkpoint import has_checkpoint, read_config, tokenizer_spec
    from minigpt.config import GPTConfig, get_preset
    from minigpt.distributed import rank_print
    from minigpt.model import GPT
    from minigpt.recipes import get_recipe
    from minigpt.tokenizer import load_tokenizer
    from minigpt.train_ddp import DDPTrainConfig, train_ddp

    out = Path(args.out)
    ckpt = out / "checkpoint"
    explicit = {k: getattr(args, k) for k in _TRAIN_FIELDS if getattr(args, k) is not None}
    explicit.update({k: getattr(args, k) for k in ("compile", "tf32") if getattr(args, k) is not None})
    if args.minutes is not None:
        if args.minutes <= 0:
            raise ValueError("--minutes must be positive")
        explicit["time_limit_s"] = args.minutes * 60
    progress = not args.no_progress
    if args.no_plot:
        explicit["plot"] = False

    if args.resume:
        if not has_checkpoint(ckpt):
            raise ValueError(f"nothing to resume in {out}: no checkpoint at {ckpt}; start without --resume")
        saved = read_config(ckpt)
        tok = load_tokenizer(tokenizer_spec(ckpt, saved), base_dir=ckpt)
        model = GPT(GPTConfig.from_dict(saved["model_config"]))
        known = {f.name for f in dataclasses.fields(DDPTrainConfig)}
        base = {k: v for k, v in (saved.get("train_config") or {}).items() if k in known}
        base.pop("time_limit_s", None)
        cfg = DDPTrainConfig(**{**base, **explicit, "out_dir": str(out), "progress": progress})
        _check_device(cfg.device, info, None)
        data = _load_data(args, info, tok)
        rank_print(f"resuming {out} from step {saved.get('step')} of {cfg.max_steps} on {info.world_size} process(es)")
    else:
        if has_checkpoint(ckpt) and not args.overwrite:
            raise ValueError(f"{out} already holds a checkpoint: pass --resume to continue it, --overwrite to start "
                             "over, or choose another --out")
        recipe = get_recipe(args.recipe) if args.recipe else {"preset": "tiny-modern", "model": {}, "train": {}}
        data = _load_data(args, info, None)
        tok = data.tokenizer
        overrides = dict(recipe["model"])
        if args.dropout is not None:
            overrides["dropout"] = args.dropout
        model_cfg = get_preset(args.preset or recipe["preset"], vocab_size=tok.vocab_size, **overrides)
        params = {**recipe["train"], **explicit}
        _check_device(params.get("device"), info, args.recipe)
        import torch

        torch.manual_seed(params.get("seed", DDPTrainConfig.seed))  # the same initial weights on every run
        model = GPT(model_cfg)
        steps = params.get("max_steps", 1000)
        params.setdefault("max_steps", steps)
        params.setdefault("seq_len", model_cfg.block_size)
        params.setdefault("warmup_steps", max(1, steps // 20))
        params.setdefault("eval_interval", max(1, steps // 10))
        if "min_lr" not in params and "lr" in params:
            params["min_lr"] = params["lr"] / 10
        cfg = DDPTrainConfig(**params, out_dir=str(out), progress=progress)
        rank_print(f"model: {args.preset or recipe['preset']}, {model.num_params():,} parameters; tokenizer "
                   f"{tok.name}; {info.world_size} process(es) on {info.device.type}"
                   + (f" ({info.backend})" if info.backend else ""))
    accum = cfg.accum_for(info.world_size)
    rank_print(f"data: {data}\n{cfg.batch_size * cfg.seq_len * accum * info.world_size:,} tokens per step "
               f"= {cfg.batch_size} x {cfg.seq_len} x {accum} micro-batches x {info.world_size} process(es)")
    result = train_ddp(model, data, cfg, info, resume=args.resume, until_step=args.pause_at, tokenizer=tok,
                       write_checksums=args.write_checksums)
    parts = [f"step {result.step}", f"{result.elapsed_s:.1f} s", f"{result.tokens_per_s:,.0f} tokens/s (all ranks)"]
    if result.val_loss is not None:
        parts += [f"val loss {result.val_loss:.3f}", f"val bits/char {result.val_bpc:.3f}"]
    if result.checkpoint:
        parts.append(f"checkpoint {result.checkpoint}")
    rank_print(f"done ({result.stopped}): " + ", ".join(parts))
    return 130 if result.stopped == "interrupted" else 0


def _check_device(wanted: str | None, info, recipe: str | None) -> None:
    if wanted == "cuda" and info.device.type != "cuda":
        raise ValueError(f"{'recipe ' + recipe if recipe else 'this run'} is meant for CUDA GPUs and none is "
                         "available here; pass --device cpu to run it anyway (slowly), or use a GPU machine")


def _load_data(args, info, tok):
    """This rank's TokenData: shards (split among ranks), or a corpus tokenized in memory."""
    if args.shards:
        from minigpt.shards import _same_tokenizer, load_shard_data

        if args.corpus or args.tokenizer:
            raise ValueError("--shards brings its own data and tokenizer: drop --corpus/--tokenizer")
        data = load_shard_data(args.shards, rank=info.rank, world_size=info.world_size)
        if tok is not None:
            if not _same_tokenizer(tok.spec(), data.tokenizer.spec()):
                raise ValueError(f"the checkpoint's tokenizer is not the one that made {args.shards}")
            data.tokenizer = tok
        return data

    from minigpt.data import make_token_data
    from minigpt.datasets import iter_documents
    from minigpt.distributed import main_process_first
    from minigpt.tokenizer import load_tokenizer

    corpus = args.corpus or "embedded"
    if tok is None:
        tok = load_tokenizer(args.tokenizer or "gpt2")
    with main_process_first():  # rank 0 downloads into the cache first; the others then find it there
        train = list(iter_documents(corpus, "train", limit=args.limit, progress=info.is_main))
        val = list(iter_documents(corpus, "val", progress=info.is_main))
    data = make_token_data(tok, train, val)
    if info.world_size > 1:  # each rank trains on its own contiguous part of the stream
        n = len(data.train)
        data.train = data.train[n * info.rank // info.world_size: n * (info.rank + 1) // info.world_size]
    return data


# --------------------------------------------------------------------------- registration
def register_commands(register) -> None:
    """Add `data` and `train-ddp` to minigpt.cli: `register_commands(register)`."""
    register("data", "real corpora: download, train a tokenizer, tokenize into shards",
             configure_data, run_data)
    register("train-ddp", "train on several processes/GPUs with DDP (torchrun), from shards or a corpus",
             configure_train_ddp, run_train_ddp)
