"""`python -m minigpt data download|tokenizer|shard|info`: real corpora, their tokenizers and token shards.

    python -m minigpt data download tatoeba            # into $MINIGPT_CACHE; prints the attribution
    python -m minigpt data tokenizer --corpus tatoeba --vocab-size 16000 --out runs/tokenizer/tatoeba16k
    python -m minigpt data shard --corpus tatoeba --tokenizer runs/tokenizer/tatoeba16k.model --out shards/tatoeba
    python -m minigpt data info shards/tatoeba
"""

from __future__ import annotations

import argparse

from minigpt.cli.common import require, say
from minigpt.datasets import CORPORA, _import_datasets, download, fetch_tatoeba, iter_documents
from minigpt.errors import ConfigError
from minigpt.i18n import tr
from minigpt.tokenizer import load_tokenizer, train_sentencepiece


def configure(p: argparse.ArgumentParser) -> None:
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


def run(args) -> int:
    return {"download": _data_download, "tokenizer": _data_tokenizer, "shard": _data_shard,
            "info": _data_info}[args.data_command](args)


def _data_download(args) -> int:
    progress = not args.no_progress
    if args.what == "tatoeba":
        path = fetch_tatoeba(args.url, args.cache, progress, args.sha256)
    elif args.what in ("c4-ja", "wikipedia-ja"):
        try:
            _import_datasets()  # a clear message if `datasets` is missing
        except ImportError as e:
            raise ConfigError(str(e)) from None
        say(tr("{w} is streamed while sharding (python -m minigpt data shard --corpus {w} ...); nothing to "
               "download first", "{w} はシャード作成時にストリーミングで読み込みます (python -m minigpt data shard "
               "--corpus {w} ...)。先にダウンロードするものはありません", w=args.what))
        return 0
    else:
        path = download(args.what, args.cache, progress, sha256=args.sha256)
    say(tr("{p} ({n:,} bytes)", "{p} ({n:,} バイト)", p=path, n=path.stat().st_size))
    return 0


def _data_tokenizer(args) -> int:
    docs, chars = [], 0
    for doc in iter_documents(args.corpus, "train"):
        docs.append(doc)
        chars += len(doc)
        if chars >= args.max_chars:
            break
    say(tr("training SentencePiece ({t}, {v} pieces) on {d:,} documents, {c:,} characters",
           "SentencePiece ({t}、語彙サイズ {v}) を {d:,} 文書、{c:,} 文字で学習します",
           t=args.model_type, v=args.vocab_size, d=len(docs), c=chars))
    tok = train_sentencepiece(docs, args.out, vocab_size=args.vocab_size, model_type=args.model_type)
    val = list(iter_documents(args.corpus, "val", limit=5000))
    if val:
        n_chars = sum(len(d) for d in val)
        n_tokens = sum(len(ids) for ids in tok.encode_batch(val))
        say(tr("on {n:,} validation documents: {r:.3f} characters per token",
               "検証用の {n:,} 文書で: 1 トークンあたり {r:.3f} 文字", n=len(val), r=n_chars / max(n_tokens, 1)))
    say(tr("wrote {f}", "{f} を書き出しました", f=tok.model_file))
    return 0


def _data_shard(args) -> int:
    from minigpt.shards import DEFAULT_SHARD_CHARS, write_shards  # lazy: numpy and torch (keeps --help fast)

    tok = load_tokenizer(args.tokenizer)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    for split in splits:
        require(split in ("train", "val"), "--splits: unknown split {s!r}; use train and/or val",
                "--splits: 不明な分割 {s!r} です。train と val のどちらか (または両方) を指定してください", s=split)
        limit = args.limit if split == "train" else args.val_limit
        docs = iter_documents(args.corpus, split, limit=limit, progress=not args.no_progress)
        summary = write_shards(docs, tok, args.out, split, shard_chars=args.shard_chars or DEFAULT_SHARD_CHARS,
                               workers=args.workers, progress=not args.no_progress)
        say(tr("{s}: {n} shard(s), {t:,} tokens ({dt}), {c:,} characters, {d:,} documents; {w} written, "
               "{k} already done", "{s}: シャード {n} 個、{t:,} トークン ({dt})、{c:,} 文字、{d:,} 文書。"
               "{w} 個を書き、{k} 個は作成済み", s=split, n=summary["shards"], t=summary["tokens"],
               dt=summary["dtype"], c=summary["chars"], d=summary["docs"], w=summary["written"],
               k=summary["skipped"]))
    return 0


def _data_info(args) -> int:
    from minigpt.shards import read_meta  # lazy: numpy (keeps --help fast)

    meta = read_meta(args.path)
    tok = meta["tokenizer"]
    say(tr("{p}: tokenizer {t} (vocab {v}), {dt}", "{p}: トークナイザ {t} (語彙サイズ {v})、{dt}",
           p=args.path, t=tok.get("type"), v=meta["vocab_size"], dt=meta["dtype"]))
    for split, entry in meta["splits"].items():
        shards = entry.get("shards", [])
        if not entry.get("complete"):
            say(tr("  {s}: incomplete ({n} shards done); run `data shard` again",
                   "  {s}: 未完成 (シャード {n} 個まで完了)。`data shard` をもう一度実行してください",
                   s=split, n=sum(1 for r in shards if r)))
            continue
        say(tr("  {s}: {n} shard(s), {t:,} tokens, {c:,} characters, {d:,} documents, {r:.3f} characters per token",
               "  {s}: シャード {n} 個、{t:,} トークン、{c:,} 文字、{d:,} 文書、1 トークンあたり {r:.3f} 文字",
               s=split, n=len(shards), t=entry["tokens"], c=entry["chars"], d=entry["docs"],
               r=entry["chars"] / max(entry["tokens"], 1)))
    return 0
