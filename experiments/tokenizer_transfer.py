"""Does a tokenizer transfer? SentencePiece trained on Tatoeba vs on the embedded corpus, measured on
Tatoeba sentences neither has seen.

    python experiments/tokenizer_transfer.py [--tatoeba PATH_OR_URL] [--vocab-sizes 4000 8000]

Held out: Tatoeba's validation split (sentence id % 20 == 19, minigpt.datasets), never used for
training. Tokenizers (SentencePiece unigram, minigpt.tokenizer.train_sentencepiece defaults):

- embedded          the embedded corpus's train split (~200k characters, 13 genres of prose)
- tatoeba           Tatoeba's train split (~3.2M characters of short everyday sentences)
- tatoeba-sized     Tatoeba train sentences (a seeded sample) with as many characters as the embedded
                    train split: the same amount of text, so domain and amount can be told apart
- gpt2              GPT-2's byte-level BPE, for reference (trained on English web text)

Each is measured on the held-out Tatoeba sentences and on the embedded corpus's validation split
(each sentence/document encoded on its own, as minigpt.data does): characters per token (higher
is better: fewer tokens for the same text) and the share of tokens that are byte-fallback pieces
(characters the vocabulary lacks). Writes experiments/results/tokenizer_transfer.csv (numbers
only, no text) and prints the table. Tatoeba: (c) Tatoeba contributors, CC BY 2.0 FR.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from minigpt.corpus import load_documents  # noqa: E402
from minigpt.datasets import load_tatoeba, tatoeba_source  # noqa: E402
from minigpt.tokenizer import format_stats_table, load_tokenizer, train_sentencepiece  # noqa: E402

MIRROR = REPO.parent / "shared" / "data" / "tatoeba" / "jpn_sentences.tsv.bz2"
OUT = REPO / "experiments" / "results" / "tokenizer_transfer.csv"


def sized_sample(docs: list[str], n_chars: int, seed: int = 0) -> list[str]:
    """A seeded random sample of `docs` with about `n_chars` characters."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    out, total = [], 0
    for i in order:
        if total >= n_chars:
            break
        out.append(docs[i])
        total += len(docs[i])
    return out


def measure(tok, docs: list[str]) -> dict:
    ids = tok.encode_batch(docs)
    n_tokens = sum(len(x) for x in ids)
    sp = getattr(tok, "sp", None)
    n_bytes = sum(sp.is_byte(i) for x in ids for i in x) if sp is not None else 0
    n_chars = sum(len(d) for d in docs)
    return {"eval_chars": n_chars, "eval_tokens": n_tokens, "chars_per_token": n_chars / n_tokens,
            "byte_token_share": n_bytes / n_tokens}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tatoeba", default=str(MIRROR) if MIRROR.is_file() else None,
                    help="Tatoeba export: path or URL (default: ../shared/data/tatoeba mirror if present, "
                         "else $MINIGPT_TATOEBA_URL or the official download)")
    ap.add_argument("--vocab-sizes", type=int, nargs="+", default=[4000, 8000])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    source = tatoeba_source(args.tatoeba)
    tatoeba_train = load_tatoeba("train", url=source, progress=False)
    held_out = load_tatoeba("val", url=source, progress=False)
    embedded_train = load_documents("embedded", "train")
    embedded_val = load_documents("embedded", "val")
    embedded_chars = sum(len(d) for d in embedded_train)
    train_sets = {
        "embedded": embedded_train,
        "tatoeba": tatoeba_train,
        "tatoeba-sized": sized_sample(tatoeba_train, embedded_chars),
    }
    evals = {"tatoeba-heldout": held_out, "embedded-val": embedded_val}
    print(f"held out: {len(held_out):,} Tatoeba sentences, {sum(map(len, held_out)):,} characters "
          f"(id % 20 == 19); tatoeba train {sum(map(len, tatoeba_train)):,} characters, "
          f"embedded train {embedded_chars:,}", flush=True)

    rows = []
    gpt2 = load_tokenizer("gpt2")
    for eval_name, docs in evals.items():
        rows.append({"tokenizer": "gpt2", "trained_on": "(OpenAI WebText)", "train_chars": None, "vocab_size":
                     gpt2.vocab_size, "eval_text": eval_name, **measure(gpt2, docs)})
    with tempfile.TemporaryDirectory() as tmp:
        for vocab in args.vocab_sizes:
            for name, docs in train_sets.items():
                t0 = time.perf_counter()
                tok = train_sentencepiece(docs, Path(tmp) / f"{name}-{vocab}", vocab_size=vocab)
                took = time.perf_counter() - t0
                print(f"trained {name} {vocab} in {took:.1f} s", flush=True)
                for eval_name, eval_docs in evals.items():
                    rows.append({"tokenizer": f"sp-{vocab}", "trained_on": name,
                                 "train_chars": sum(len(d) for d in docs), "vocab_size": vocab,
                                 "eval_text": eval_name, **measure(tok, eval_docs)})

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    print()
    print(format_stats_table(rows, ["tokenizer", "trained_on", "train_chars", "eval_text", "eval_tokens",
                                    "chars_per_token", "byte_token_share"]))
    print(f"\nwrote {out}")
    print("Tatoeba sentences: (c) Tatoeba contributors, https://tatoeba.org, CC BY 2.0 FR")


if __name__ == "__main__":
    main()
