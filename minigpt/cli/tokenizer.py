"""`python -m minigpt tokenizer train|compare`: train a SentencePiece tokenizer, compare tokenizers."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from minigpt.cli.common import require, say
from minigpt.corpus import describe_corpus, load_documents, read_text
from minigpt.i18n import tr
from minigpt.tokenizer import format_stats_table, load_tokenizer, tokenizer_stats, train_sentencepiece


def configure(p: argparse.ArgumentParser) -> None:
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


def run(args) -> int:
    return train_command(args) if args.tokenizer_command == "train" else compare_command(args)


def train_command(args) -> int:
    require(args.vocab_size > 0, "--vocab-size must be positive", "--vocab-size は正の数にしてください")
    say(describe_corpus(args.corpus))
    tok = train_sentencepiece(load_documents(args.corpus, "train"), args.out, vocab_size=args.vocab_size,
                              model_type=args.model_type)
    say(tr("wrote {f} ({v} pieces, {t})", "{f} を書き出しました (語彙サイズ {v}、{t})", f=tok.model_file,
           v=tok.vocab_size, t=args.model_type))
    val = "\n".join(load_documents(args.corpus, "val"))
    if val:
        rows = [stats_row(load_tokenizer("gpt2"), val, 48), stats_row(tok, val, 48)]
        say(tr("\non the validation split:", "\n検証用の分割で:"))
        say(format_stats_table(rows))
    return 0


def compare_command(args) -> int:
    if args.text is not None:
        text = args.text
    elif args.file is not None:
        text = read_text(args.file)
    else:
        text = "\n".join(load_documents("embedded", "val"))
    require(bool(text.strip()), "the text to compare is empty; pass --text '...' or --file with some text in it",
            "比べるテキストが空です。--text '...' か、中身のある --file を指定してください")
    require(args.seq_len > 0, "--seq-len must be positive", "--seq-len は正の数にしてください")
    toks = [load_tokenizer("gpt2")]
    if args.sp:
        toks += [load_tokenizer(path) for path in args.sp]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            say(tr("(no --sp given: training a SentencePiece model, vocab 8000, on the embedded corpus's train split)",
                   "(--sp の指定がないので、内蔵コーパスの学習用分割で SentencePiece モデル (語彙サイズ 8000) を学習します)"))
            toks.append(train_sentencepiece(load_documents("embedded", "train"), Path(tmp) / "sp", vocab_size=8000))
    say(format_stats_table([stats_row(t, text, args.seq_len) for t in toks]))
    return 0


def stats_row(tok, text: str, seq_len: int) -> dict:
    s = tokenizer_stats(tok, text, seq_len=seq_len)
    return {"tokenizer": s["tokenizer"], "tokens": s["tokens"], "chars_per_token": s["chars_per_token"],
            "tokens_per_char": s["tokens_per_char"], "partial_token_share": s["partial_token_share"],
            f"fffd_rate_{seq_len}tok_windows": s["fffd_window_rate"]}
