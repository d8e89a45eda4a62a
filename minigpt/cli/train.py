"""`python -m minigpt train` (and its alias `train-ddp`): one run builder for 1..N processes.

    python -m minigpt train --preset modern --tokenizer runs/tokenizer/sp8000.model --minutes 5 --out runs/modern
    python -m minigpt train --out runs/modern --resume
    python -m minigpt train --nproc-per-node 2 --shards shards/tatoeba --steps 200 --out runs/ddp
    torchrun --standalone --nproc_per_node 8 -m minigpt train --shards shards/c4ja --recipe gpu-base-c4ja

With ``--nproc-per-node N`` (N > 1) the command starts torchrun, which starts N copies of
``python -m minigpt train`` with the same options; each joins the process group
(minigpt.distributed.setup_distributed) and runs minigpt.train.train. Without torchrun it is one
process. The data is a corpus tokenized in memory (``--corpus``, with ``--tokenizer``) or token
shards (``--shards``, which bring their tokenizer). ``--resume`` takes the model, tokenizer,
settings and data from the checkpoint; options given again override the settings, and data other
than the checkpoint's is refused unless ``--allow-other-data``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from minigpt.cli.common import finite, require
from minigpt.config import PRESETS
from minigpt.errors import ConfigError, DeviceError, MinigptError, TokenizerError
from minigpt.i18n import tr
from minigpt.recipes import RECIPES, get_recipe

# (flags, argparse keywords). One table: it builds the parser, and the launcher turns parsed
# options back into the command line it hands to torchrun.
OPTIONS = [
    (("--shards",), dict(help="a shards folder (python -m minigpt data shard): tokenizer and data come from it")),
    (("--corpus",), dict(help="instead of --shards: 'embedded' (default), 'tatoeba', a .txt file or a folder of .txt "
                              "files, tokenized in memory (small corpora)")),
    (("--tokenizer",), dict(help="with --corpus: 'gpt2' (default) or a SentencePiece .model file")),
    (("--limit",), dict(type=int, help="with --corpus: at most this many training documents")),
    (("--recipe",), dict(choices=sorted(RECIPES), help="a training recipe from minigpt.recipes: model preset and "
                                                       "settings; options given here override it")),
    (("--preset",), dict(choices=sorted(PRESETS), help="model architecture and size (default tiny-modern, or the "
                                                       "recipe's); vocab_size comes from the tokenizer")),
    (("--dropout",), dict(type=float, help="model dropout (default: the preset's)")),
    (("--attn",), dict(choices=("sdpa", "manual"), help="attention: sdpa (default for training: "
                                                        "F.scaled_dot_product_attention) or manual (written out, "
                                                        "as in the notebooks)")),
    (("--precision",), dict(choices=("auto", "bf16", "fp16", "fp32"),
                            help="auto (default): bf16 on a GPU that has it, fp16 + loss scaling on one that does "
                                 "not, fp32 on CPU")),
    (("--out",), dict(help="output folder: metrics.jsonl, loss.png, checkpoint/ (default {default_out})")),
    (("--steps",), dict(type=int, dest="max_steps", metavar="N",
                        help="optimizer steps: the length of the lr schedule (default 1000)")),
    (("--minutes",), dict(type=float, help="stop after this many minutes (evaluates and saves before stopping)")),
    (("--pause-at",), dict(type=int, metavar="STEP", help="stop (and save) after this step; the schedule still "
                                                          "follows --steps. Continue later with --resume")),
    (("--resume",), dict(action="store_true", help="continue the run in --out from its checkpoint (model, "
                                                   "tokenizer, settings and data come from it)")),
    (("--overwrite",), dict(action="store_true", help="start over even if --out already holds a checkpoint")),
    (("--allow-other-data",), dict(action="store_true", help="with --resume: continue on data other than the "
                                                             "checkpoint's (refused otherwise)")),
    (("--batch-size",), dict(type=int, help="sequences per micro-batch per process (default 16)")),
    (("--grad-accum",), dict(type=int, dest="grad_accum_steps", metavar="N",
                             help="micro-batches per step per process (default 1)")),
    (("--batch-tokens",), dict(type=int, help="tokens per optimizer step over all processes (sets --grad-accum)")),
    (("--seq-len",), dict(type=int, help="tokens per sequence (default: the model's block_size)")),
    (("--lr",), dict(type=float, help="peak learning rate (default 1e-3)")),
    (("--min-lr",), dict(type=float, help="learning rate at the end of the cosine (default lr/10)")),
    (("--warmup",), dict(type=int, dest="warmup_steps", metavar="N", help="warmup steps (default 5%% of the steps)")),
    (("--eval-interval",), dict(type=int, help="evaluate and save every N steps (default steps/10)")),
    (("--eval-iters",), dict(type=int, help="validation batches per evaluation (default 10)")),
    (("--log-interval",), dict(type=int, help="a metrics line every N steps (default 10)")),
    (("--seed",), dict(type=int, help="random seed (default 1337): the same seed gives the same weights; process r "
                                      "draws data with seed + 1000 r")),
    (("--device",), dict(help="auto (default: MINIGPT_DEVICE, then cuda > mps > cpu; cuda:LOCAL_RANK under "
                              "torchrun), cpu, cuda, cuda:N or mps")),
    (("--compile",), dict(action=argparse.BooleanOptionalAction, help="torch.compile the model (default: no, or "
                                                                      "the recipe's)")),
    (("--no-progress",), dict(action="store_true", help="no progress bar")),
    (("--no-plot",), dict(action="store_true", help="do not write loss.png")),
    (("--write-checksums",), dict(action="store_true", help="every process writes OUT/params.rank{r}.sha256 at the "
                                                            "end (to check that the copies stayed identical)")),
    (("--no-final-barrier",), dict(action="store_true", help=argparse.SUPPRESS)),  # bench/torchrun_clean_exit.py
]
# options that are TrainConfig fields of the same name
TRAIN_FIELDS = ("max_steps", "batch_size", "grad_accum_steps", "batch_tokens", "seq_len", "lr", "min_lr",
                "warmup_steps", "eval_interval", "eval_iters", "log_interval", "seed", "device", "compile",
                "precision")


def _configure(p: argparse.ArgumentParser, default_out: str, launcher: bool = True) -> None:
    for flags, kwargs in OPTIONS:
        kwargs = dict(kwargs)
        if flags[0] == "--out":
            kwargs.update(default=default_out, help=kwargs["help"].format(default_out=default_out))
        p.add_argument(*flags, **kwargs)
    if launcher:
        p.add_argument("--nproc-per-node", type=int, default=1,
                       help="processes to start with torchrun (default 1: this process, no torchrun)")


def configure_train(p: argparse.ArgumentParser) -> None:
    _configure(p, "runs/default")


def configure_train_ddp(p: argparse.ArgumentParser) -> None:
    _configure(p, "runs/ddp")


def torchrun_command(args) -> list[str]:
    """The torchrun command line that starts args.nproc_per_node copies of `train` with the same options."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc_per_node}",
           "-m", "minigpt", "train"]
    for flags, kwargs in OPTIONS:
        dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        value = getattr(args, dest)
        if kwargs.get("action") == "store_true":
            cmd += [flags[0]] if value else []
        elif kwargs.get("action") is argparse.BooleanOptionalAction:
            cmd += [] if value is None else [flags[0] if value else "--no-" + flags[0][2:]]
        elif value is not None:
            cmd += [flags[0], str(value)]
    return cmd


def run(args) -> int:
    """`minigpt train`: start torchrun when --nproc-per-node > 1, else train in this process (which is
    also what each process torchrun starts does)."""
    nproc = getattr(args, "nproc_per_node", 1)
    require(nproc >= 1, "--nproc-per-node must be at least 1, got {n}", "--nproc-per-node は 1 以上にしてください ({n})",
            n=nproc)
    if nproc > 1:
        cmd = torchrun_command(args)
        print("+ " + " ".join(cmd[1:]), flush=True)
        env = {**os.environ}
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        return subprocess.run(cmd, env=env).returncode

    # lazy: torch loads only when a command runs (keeps `python -m minigpt --help` fast)
    from minigpt.distributed import rank_print, setup_distributed, shutdown

    check_options(args)
    recipe = get_recipe(args.recipe) if args.recipe else None
    device = args.device or (recipe["train"].get("device") if recipe else None) or "auto"
    try:
        info = setup_distributed(device)
    except DeviceError:
        if recipe and not args.device:
            raise DeviceError(tr("recipe {r} is meant for CUDA GPUs and none is available here; pass --device cpu to "
                                 "run it anyway (slowly), or use a GPU machine",
                                 "レシピ {r} は CUDA GPU 向けですが、ここには GPU がありません。それでも (遅く) 動かすなら "
                                 "--device cpu を付けるか、GPU のあるマシンを使ってください", r=args.recipe)) from None
        raise
    try:
        status = train_here(args, info, recipe)
    except MinigptError as e:
        if info.world_size == 1:
            raise  # minigpt.cli.main prints it
        if os.environ.get("MINIGPT_DEBUG"):
            raise
        rank_print(f"error: {e}", file=sys.stderr)
        shutdown(barrier_first=False)
        return 2
    shutdown(barrier_first=not args.no_final_barrier)
    return status


def check_options(args) -> None:
    """One-line errors for values argparse lets through (NaN, infinity, zero, negatives), before anything loads."""
    if args.minutes is not None:
        require(finite(args.minutes) and args.minutes > 0, "--minutes must be a positive number, got {v}",
                "--minutes は正の数にしてください (値: {v})", v=args.minutes)
    if args.lr is not None:
        require(finite(args.lr) and args.lr > 0, "--lr must be a positive finite number, got {v}; try --lr 1e-3",
                "--lr は正の有限な数にしてください (値: {v})。例: --lr 1e-3", v=args.lr)
    if args.min_lr is not None:
        require(finite(args.min_lr) and args.min_lr >= 0, "--min-lr must be a finite number >= 0, got {v}",
                "--min-lr は 0 以上の有限な数にしてください (値: {v})", v=args.min_lr)
    if args.dropout is not None:
        require(finite(args.dropout) and 0 <= args.dropout < 1, "--dropout must be in [0, 1), got {v}",
                "--dropout は 0 以上 1 未満にしてください (値: {v})", v=args.dropout)
    for flag, value in (("--steps", args.max_steps), ("--batch-size", args.batch_size),
                        ("--grad-accum", args.grad_accum_steps), ("--batch-tokens", args.batch_tokens),
                        ("--seq-len", args.seq_len), ("--eval-interval", args.eval_interval),
                        ("--eval-iters", args.eval_iters), ("--log-interval", args.log_interval),
                        ("--pause-at", args.pause_at)):
        if value is not None:
            require(value > 0, "{f} must be a positive integer, got {v}", "{f} は正の整数にしてください (値: {v})",
                    f=flag, v=value)
    if args.warmup_steps is not None:
        require(args.warmup_steps >= 0, "--warmup must be >= 0, got {v}", "--warmup は 0 以上にしてください (値: {v})",
                v=args.warmup_steps)
    out = Path(args.out)
    require(not (out.exists() and not out.is_dir()), "--out {d} is a file; a run needs a folder there: pass another "
            "--out", "--out {d} はファイルです。学習結果はフォルダに書くので、別の --out を指定してください", d=out)
    if args.shards:
        require(not (args.corpus or args.tokenizer), "--shards brings its own data and tokenizer: drop "
                "--corpus/--tokenizer", "--shards はデータとトークナイザを含みます: --corpus/--tokenizer を外してください")
    if args.tokenizer and args.tokenizer != "gpt2" and not Path(args.tokenizer).is_file():
        raise TokenizerError(tr("SentencePiece model not found: {p}; train one with `python -m minigpt tokenizer "
                                "train --out ...` or use --tokenizer gpt2",
                                "SentencePiece モデルが見つかりません: {p}。`python -m minigpt tokenizer train --out ...` "
                                "で学習するか、--tokenizer gpt2 を使ってください", p=args.tokenizer))


def train_here(args, info, recipe: dict | None) -> int:
    """Build the run (tokenizer, data, model, settings) in this process and train it."""
    # lazy: torch loads only when a command runs (keeps `python -m minigpt --help` fast)
    import torch

    from minigpt.checkpoint import has_checkpoint, read_config, tokenizer_spec
    from minigpt.config import GPTConfig, get_preset
    from minigpt.distributed import rank_print
    from minigpt.model import GPT
    from minigpt.tokenizer import load_tokenizer
    from minigpt.train import TrainConfig, train

    out = Path(args.out)
    ckpt = out / "checkpoint"
    explicit = {k: getattr(args, k) for k in TRAIN_FIELDS if getattr(args, k) is not None}
    if args.minutes is not None:
        explicit["time_limit_s"] = args.minutes * 60
    if args.no_plot:
        explicit["plot"] = False
    progress = not args.no_progress

    if args.resume:
        if not has_checkpoint(ckpt):
            raise ConfigError(tr("nothing to resume in {o}: no checkpoint at {c}. Start without --resume, or pass the "
                                 "--out folder of the run to continue",
                                 "{o} には再開できるものがありません: {c} にチェックポイントがありません。--resume なしで"
                                 "始めるか、続けたい学習の --out フォルダを指定してください", o=out, c=ckpt))
        saved = read_config(ckpt)
        tok = load_tokenizer(tokenizer_spec(ckpt, saved), base_dir=ckpt)
        model_config = GPTConfig.from_dict(saved["model_config"])
        if args.attn:
            model_config.attn_impl = args.attn  # how attention is computed, not what the weights mean
        model = GPT(model_config)  # its weights come from the checkpoint
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        base = {k: v for k, v in (saved.get("train_config") or {}).items() if k in known}
        base.pop("time_limit_s", None)  # a time limit is for one session, not for the run
        cfg = TrainConfig(**{**base, **explicit, "device": str(info.device), "out_dir": str(out),
                             "progress": progress})
        data, data_name, data_id = load_data(args, info, tok, (saved.get("info") or {}).get("data"))
        rank_print(tr("resuming {o} from step {s} of {n} on {w} process(es)",
                      "{o} をステップ {s}/{n} から {w} プロセスで再開します",
                      o=out, s=saved.get("step"), n=cfg.max_steps, w=info.world_size))
    else:
        if has_checkpoint(ckpt) and not args.overwrite:
            step = read_config(ckpt).get("step")
            raise ConfigError(tr("{o} already holds a checkpoint (step {s}): pass --resume to continue it, --overwrite "
                                 "to start over, or choose another --out",
                                 "{o} にはすでにチェックポイント (ステップ {s}) があります: 続けるなら --resume、"
                                 "最初からなら --overwrite を付けるか、別の --out を指定してください", o=out, s=step))
        recipe = recipe or {"preset": "tiny-modern", "model": {}, "train": {}}
        tok = None if args.shards else load_tokenizer(args.tokenizer or "gpt2")
        data, data_name, data_id = load_data(args, info, tok, None)
        tok = data.tokenizer
        overrides = {**recipe["model"], "attn_impl": args.attn or "sdpa"}  # SDPA: the fast path for training
        if args.dropout is not None:
            overrides["dropout"] = args.dropout
        preset = args.preset or recipe["preset"]
        model_cfg = get_preset(preset, vocab_size=tok.vocab_size, **overrides)
        params = {**recipe["train"], **explicit}
        torch.manual_seed(params.get("seed", TrainConfig.seed))  # before the model: the same seed, the same weights
        model = GPT(model_cfg)
        steps = params.setdefault("max_steps", 1000)
        params.setdefault("seq_len", model_cfg.block_size)
        params.setdefault("warmup_steps", max(1, steps // 20))
        params.setdefault("eval_interval", max(1, steps // 10))
        if "min_lr" not in params and "lr" in params:
            params["min_lr"] = params["lr"] / 10
        params["device"] = str(info.device)
        cfg = TrainConfig(**params, out_dir=str(out), progress=progress)
        rank_print(tr("model: {p}, {n:,} parameters, attention {a}; tokenizer {t}; {w} process(es) on {d}{b}",
                      "モデル: {p}、パラメータ {n:,} 個、アテンション {a}。トークナイザ {t}。{d} で {w} プロセス{b}",
                      p=preset, n=model.num_params(), a=model_cfg.attn_impl, t=tok.name, w=info.world_size,
                      d=info.device.type, b=f" ({info.backend})" if info.backend else ""))
    accum = cfg.accum_for(info.world_size)
    rank_print(tr("data: {data}\n{n:,} tokens per step = {b} x {t} x {a} micro-batch(es) x {w} process(es)",
                  "データ: {data}\n1 ステップのトークン数 {n:,} = {b} x {t} x {a} マイクロバッチ x {w} プロセス",
                  data=data, n=cfg.batch_size * cfg.seq_len * accum * info.world_size, b=cfg.batch_size,
                  t=cfg.seq_len, a=accum, w=info.world_size))
    result = train(model, data, cfg, resume=args.resume, info=info, until_step=args.pause_at, tokenizer=tok,
                   data_name=data_name, data_id=data_id, allow_other_data=args.allow_other_data,
                   write_checksums=args.write_checksums)
    rank_print(result_line(result, info.world_size))
    return 130 if result.interrupted else 0


def result_line(r, world_size: int = 1) -> str:
    """The last line of a run: "done (<why it stopped>): step N, ..." (the words after "done" stay English:
    scripts read them)."""
    parts = [f"step {r.step}", f"{r.elapsed_s:.1f} s",
             f"{r.tokens_per_s:,.0f} tokens/s" + (tr(" (all processes)", " (全プロセス)") if world_size > 1 else "")]
    if r.mfu is not None:
        parts.append(f"MFU {r.mfu:.1%}")
    if r.val_loss is not None:
        parts += [f"val loss {r.val_loss:.3f}", f"val ppl {r.val_ppl:.1f}", f"val bits/char {r.val_bpc:.3f}"]
    if r.checkpoint:
        parts.append(tr("checkpoint {c}", "チェックポイント {c}", c=r.checkpoint))
    return f"done ({r.stopped}): " + ", ".join(parts)


def load_data(args, info, tok, saved: dict | None):
    """This process's TokenData, the data's name and its fingerprint (of the whole data, before the
    training stream is split among the processes). On --resume without --corpus/--shards the data
    recorded in the checkpoint is used."""
    # lazy: torch loads only when a command runs (keeps `python -m minigpt --help` fast)
    from minigpt.data import make_token_data
    from minigpt.datasets import iter_documents
    from minigpt.distributed import main_process_first
    from minigpt.shards import _same_tokenizer, load_shard_data
    from minigpt.train import data_fingerprint

    shards, corpus, limit = args.shards, args.corpus, args.limit
    if saved and not (shards or corpus):  # --resume: the checkpoint's data
        if saved.get("kind") == "shards":
            shards = saved.get("name")
        else:
            corpus, limit = saved.get("name"), limit if limit is not None else saved.get("limit")
    if shards:
        data = load_shard_data(shards, rank=info.rank, world_size=info.world_size)
        if tok is not None:
            if not _same_tokenizer(tok.spec(), data.tokenizer.spec()):
                raise TokenizerError(tr("the checkpoint's tokenizer is not the one that made {s}: pass the shards the "
                                        "run was trained on", "チェックポイントのトークナイザは {s} を作ったものではありません: "
                                        "学習に使ったシャードを指定してください", s=shards))
            data.tokenizer = tok
        name = {"kind": "shards", "name": str(shards)}
        return data, str(shards), {**data_fingerprint(data), **name}

    corpus = corpus or "embedded"
    with main_process_first():  # rank 0 downloads into the cache first; the others then find it there
        train_docs = list(iter_documents(corpus, "train", limit=limit, progress=info.is_main))
        val_docs = list(iter_documents(corpus, "val", progress=info.is_main))
    data = make_token_data(tok, train_docs, val_docs)
    data_id = {**data_fingerprint(data), "kind": "corpus", "name": str(corpus),
               **({"limit": limit} if limit is not None else {})}
    if info.world_size > 1:  # each process trains on its own contiguous part of the stream
        n = len(data.train)
        data.train = data.train[n * info.rank // info.world_size: n * (info.rank + 1) // info.world_size]
    return data, str(corpus), data_id
